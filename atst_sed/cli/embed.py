"""``atst-sed embed``: the frontend features and ATST frame embeddings of one audio file, as ``.npz``.

Audio longer than the encoder's 10 s positional table is cut, as audiossl's embedding API does, into
consecutive 1001-frame chunks of the whole file's features (no overlap); each chunk is encoded on its
own and the chunks' tokens are concatenated. Unlike audiossl, the reported timestamps are exact
(each chunk starts at its own first mel frame, so there is no 10 ms drift per chunk). For
overlapping windows with edge-discounted scores use ``atst-sed detect``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # heavy imports stay inside run() so that `atst-sed --help` is fast
    import numpy as np
    import torch

    from atst_sed.models.encoder import ATSTEncoder

log = logging.getLogger(__name__)

CHUNK_FRAMES = 1001  # 10 s of mel frames: the encoder's 250-token positional table (+1 dropped frame)
MIN_SAMPLES = 640  # one token (4 mel frames = 480 samples) and more than the STFT's 512-sample reflect pad

DESCRIPTION = """\
Write the normalised log-mel features and the ATST frame embeddings of AUDIO to OUT.npz.

Arrays in the file (float32 unless noted; T = mel frames, N = tokens, D = encoder width):
  features         (64, T)      normalised log-mel of the whole file: exactly what the encoder sees
  embeddings       (N, D)       last block, after the final norm  [--blocks last]
                   (L, N, D)    every block, each after the final norm, L = depth (12)  [--blocks all]
  cls              (C, D) / (L, C, D)  ATST-Clip only: the CLS output of each chunk
  blocks           (L,) int64   block index of each embedding layer (0-based)
  timestamps       (N,) float64 start time of each token in seconds (40 ms tokens)
  token_frames     (N,) int64   first mel frame of each token (10 ms frames)
  token_chunk      (N,) int64   which 1001-frame chunk each token comes from
  chunk_frames     (C, 2) int64 [start, end) mel frames of each chunk
  sample_rate, hop_seconds, token_seconds, duration (seconds)   scalars

Audio longer than 10.01 s is split into consecutive 1001-frame chunks (as audiossl's embedding API
does); each chunk is encoded separately, trailing frames that do not fill a 40 ms token are dropped.
audiossl's get_timestamp_embedding output (1, N, 12*D) is embeddings (--blocks all) moved to (N, 12*D):
  np.moveaxis(embeddings, 0, 1).reshape(N, -1); its timestamps (40*t ms) ignore the 10 ms lost per chunk.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "embed",
        help="write log-mel features and ATST frame embeddings of an audio file (.npz)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("audio", metavar="AUDIO", help="audio file (wav, flac, ogg, mp3, …; any rate / channels)")
    p.add_argument("--checkpoint", required=True, metavar="CKPT",
                   help="atst-sed checkpoint or a published ATST-Frame / ATST-Clip checkpoint")
    p.add_argument("-o", "--output", required=True, metavar="OUT.npz", help="output file (written atomically)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto = cuda when available (bf16 autocast), else cpu (fp32)")
    p.add_argument("--blocks", choices=("last", "all"), default="last",
                   help="last block only (N, D), or every block stacked (L, N, D)")
    p.add_argument("--batch-size", type=int, default=16, metavar="N", help="chunks encoded per forward pass")
    p.set_defaults(func=run)


def resolve_device(name: str) -> "torch.device":
    """``auto`` → cuda if available, else cpu; an unavailable ``cuda`` is a clear error."""
    import torch

    from atst_sed.errors import AtstSedError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise AtstSedError("--device cuda was requested but no CUDA device is available")
    return torch.device(name)


def chunk_bounds(n_frames: int, chunk_frames: int = CHUNK_FRAMES) -> list[tuple[int, int]]:
    """[start, end) mel frames of consecutive chunks; chunks too short for one token are dropped."""
    from atst_sed.features import FRAMES_PER_TOKEN

    bounds = [(s, min(s + chunk_frames, n_frames)) for s in range(0, n_frames, chunk_frames)]
    return [(s, e) for s, e in bounds if e - s >= FRAMES_PER_TOKEN]


def embed_features(
    features: "torch.Tensor",
    encoder: "ATSTEncoder",
    all_blocks: bool = False,
    batch_size: int = 16,
) -> dict[str, "np.ndarray"]:
    """Encode normalised log-mel ``features`` (64, T) of one file, chunk by chunk.

    Returns numpy arrays ``embeddings`` ((N, D) or (L, N, D)), ``cls`` (ATST-Clip only), ``blocks``,
    ``timestamps`` (seconds), ``token_frames``, ``token_chunk`` and ``chunk_frames``. Runs on
    ``features.device``; on cuda under bf16 autocast (outputs returned as float32).
    """
    import numpy as np
    import torch
    import torch.nn.functional as F

    from atst_sed.errors import AtstSedError
    from atst_sed.features import FRAMES_PER_TOKEN, HOP_SAMPLES, SAMPLE_RATE, frames_to_tokens, token_to_seconds

    n_frames = features.shape[-1]
    bounds = chunk_bounds(n_frames)
    if not bounds:
        raise AtstSedError(f"audio is shorter than one 40 ms token ({n_frames} mel frames)")
    depth = encoder.config.depth
    layers = list(range(depth)) if all_blocks else None
    device = features.device
    frames_out: list[torch.Tensor] = []  # per chunk: (L, n_i, D)
    cls_out: list[torch.Tensor] = []  # per chunk: (L, D)
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        for first in range(0, len(bounds), batch_size):
            group = bounds[first : first + batch_size]
            lengths = torch.tensor([e - s for s, e in group], device=device)
            width = int(lengths.max())
            batch = torch.stack([F.pad(features[:, s:e], (0, width - (e - s))) for s, e in group])
            outs = encoder(batch, frame_lengths=lengths, layers=layers)
            outs = outs if isinstance(outs, list) else [outs]
            for i, n in enumerate(frames_to_tokens(lengths).tolist()):
                frames_out.append(torch.stack([o.frames[i, :n].float() for o in outs]).cpu())
                if outs[0].cls is not None:
                    cls_out.append(torch.stack([o.cls[i].float() for o in outs]).cpu())
    embeddings = torch.cat(frames_out, dim=1).numpy()  # (L, N, D)
    token_frames = np.concatenate(
        [s + FRAMES_PER_TOKEN * np.arange(frames_to_tokens(e - s), dtype=np.int64) for s, e in bounds]
    )
    token_chunk = np.concatenate(
        [np.full(frames_to_tokens(e - s), i, dtype=np.int64) for i, (s, e) in enumerate(bounds)]
    )
    chunk_start_s = np.array([s * HOP_SAMPLES / SAMPLE_RATE for s, _ in bounds])
    within = token_frames - np.array([s for s, _ in bounds], dtype=np.int64)[token_chunk]
    timestamps = chunk_start_s[token_chunk] + token_to_seconds(within // FRAMES_PER_TOKEN)
    out = {
        "embeddings": embeddings if all_blocks else embeddings[0],
        "blocks": np.arange(depth, dtype=np.int64) if all_blocks else np.array([depth - 1], dtype=np.int64),
        "timestamps": timestamps.astype(np.float64),
        "token_frames": token_frames,
        "token_chunk": token_chunk,
        "chunk_frames": np.array(bounds, dtype=np.int64).reshape(-1, 2),
    }
    if cls_out:
        cls = torch.stack(cls_out, dim=1).numpy()  # (L, C, D)
        out["cls"] = cls if all_blocks else cls[0]
    return out


def write_npz_atomic(path: Path, arrays: dict[str, "np.ndarray"]) -> None:
    """``np.savez`` to a temporary file beside ``path``, then rename (nothing half-written)."""
    import numpy as np

    from atst_sed.fileio import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from atst_sed.audio import load_audio
    from atst_sed.errors import AtstSedError, InputError
    from atst_sed.features import HOP_SAMPLES, SAMPLE_RATE, TOKEN_SECONDS, LogMelFrontend
    from atst_sed.models.checkpoint import load_checkpoint

    if args.batch_size < 1:
        raise AtstSedError("--batch-size must be at least 1")
    device = resolve_device(args.device)
    loaded = load_checkpoint(args.checkpoint)
    wave = load_audio(args.audio)
    if wave.shape[0] < MIN_SAMPLES:
        raise InputError(args.audio, f"too short to embed: {wave.shape[0] / SAMPLE_RATE:.3f} s "
                                     f"(needs at least {MIN_SAMPLES / SAMPLE_RATE:.3f} s for one 40 ms token)")
    encoder = loaded.encoder.to(device).eval()
    frontend = LogMelFrontend(loaded.frontend).to(device)
    with torch.inference_mode():
        features = frontend(wave.to(device))  # (64, T), always float32
    arrays = embed_features(features, encoder, all_blocks=args.blocks == "all", batch_size=args.batch_size)
    arrays = {
        "features": features.cpu().numpy().astype(np.float32),
        **arrays,
        "sample_rate": np.int64(SAMPLE_RATE),
        "hop_seconds": np.float64(HOP_SAMPLES / SAMPLE_RATE),
        "token_seconds": np.float64(TOKEN_SECONDS),
        "duration": np.float64(wave.shape[0] / SAMPLE_RATE),
    }
    out = Path(args.output)
    write_npz_atomic(out, arrays)
    emb = arrays["embeddings"]
    log.info("%s: %d frames, %d tokens × %d (%s) → %s", args.audio, features.shape[-1], emb.shape[-2], emb.shape[-1],
             "all blocks" if args.blocks == "all" else "last block", out)
    return 0
