"""Frame embeddings of whole recordings: consecutive 10 s chunks through an ATST encoder.

Audio longer than the encoder's positional table is cut, as audiossl's embedding API does, into
consecutive 1001-frame chunks of the whole file's features (no overlap); each chunk is encoded on its
own and the chunks' tokens are concatenated. Unlike audiossl, the reported timestamps are exact
(each chunk starts at its own first mel frame, so there is no 10 ms drift per chunk). For
overlapping windows with edge-discounted scores use :class:`atst_sed.inference.detector.Detector`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from atst_sed.errors import AtstSedError
from atst_sed.features import FRAMES_PER_TOKEN, HOP_SAMPLES, SAMPLE_RATE, frames_to_tokens, token_to_seconds
from atst_sed.models.encoder import ATSTEncoder

CHUNK_FRAMES = 1001  # 10 s of mel frames: the encoder's 250-token positional table (+1 dropped frame)
MIN_SAMPLES = 640  # one token (4 mel frames = 480 samples) and more than the STFT's 512-sample reflect pad


def chunk_bounds(n_frames: int, chunk_frames: int = CHUNK_FRAMES) -> list[tuple[int, int]]:
    """[start, end) mel frames of consecutive chunks; chunks too short for one token are dropped."""
    bounds = [(s, min(s + chunk_frames, n_frames)) for s in range(0, n_frames, chunk_frames)]
    return [(s, e) for s, e in bounds if e - s >= FRAMES_PER_TOKEN]


def embed_features(
    features: torch.Tensor,
    encoder: ATSTEncoder,
    all_blocks: bool = False,
    batch_size: int = 16,
) -> dict[str, np.ndarray]:
    """Encode normalised log-mel ``features`` (64, T) of one file, chunk by chunk.

    Returns numpy arrays ``embeddings`` ((N, D) or (L, N, D)), ``cls`` (ATST-Clip only), ``blocks``,
    ``timestamps`` (seconds), ``token_frames``, ``token_chunk`` and ``chunk_frames``. Runs on
    ``features.device``; on cuda under bf16 autocast (outputs returned as float32).
    """
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
