"""``atst-sed embed``: the frontend features and ATST frame embeddings of one audio file, as ``.npz``
(chunking rules: :mod:`atst_sed.inference.embeddings`)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # heavy imports stay inside run() so that `atst-sed --help` is fast
    import numpy as np

log = logging.getLogger(__name__)

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
                   help="atst-sed checkpoint, a published ATST-Frame / ATST-Clip file (pretrained or fine-tuned: its "
                        "encoder; ATST-SED: its ATST-Frame branch, with the features that branch reads) or a "
                        "published model's name (atst-sed models)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.npz", help="output file (written atomically; - = stdout)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto = cuda when available (bf16 autocast), else cpu (fp32)")
    p.add_argument("--blocks", choices=("last", "all"), default="last",
                   help="last block only (N, D), or every block stacked (L, N, D)")
    p.add_argument("--batch-size", type=int, default=16, metavar="N", help="chunks encoded per forward pass")
    p.add_argument("--variant", choices=("frame", "clip"), default=None,
                   help="read a published checkpoint as ATST-Frame or ATST-Clip (default: what the file says, "
                        "else the official loaders' rule; the choice is logged)")
    p.add_argument("--role", choices=("teacher", "student"), default=None,
                   help="which model of a published ATST-SED file (default teacher)")
    p.set_defaults(func=run)


def write_npz(path: Path, arrays: dict[str, "np.ndarray"]) -> None:
    """``np.savez`` to the output ``path`` (atomically for a file: :mod:`atst_sed.fileio`)."""
    import numpy as np

    from atst_sed.fileio import open_output

    with open_output(path) as handle:
        np.savez(handle, **arrays)


def run(args: argparse.Namespace) -> int:
    from atst_sed.errors import AtstSedError
    from atst_sed.inference.detector import resolve_device
    from atst_sed.inference.embeddings import embed_file
    from atst_sed.models.checkpoint import load_checkpoint

    if args.batch_size < 1:
        raise AtstSedError("--batch-size must be at least 1")
    device = resolve_device(args.device)
    loaded = load_checkpoint(args.checkpoint, variant=args.variant, role=args.role)
    arrays = embed_file(args.audio, loaded.encoder, loaded.frontend, device, all_blocks=args.blocks == "all", batch_size=args.batch_size)
    out = Path(args.output)
    write_npz(out, arrays)
    emb = arrays["embeddings"]
    log.info("%s: %d frames, %d tokens × %d (%s) → %s", args.audio, arrays["features"].shape[-1], emb.shape[-2], emb.shape[-1],
             "all blocks" if args.blocks == "all" else "last block", out)
    return 0
