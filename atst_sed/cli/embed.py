"""``atst-sed embed``: the frontend features and ATST frame embeddings of audio files, one ``.npz``
each (chunking and output rules: :mod:`atst_sed.inference.embeddings`). Heavy imports stay inside
run() so that ``atst-sed --help`` is fast."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Write the normalised log-mel features and the ATST frame embeddings of each audio file to a .npz.

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


EPILOG = """\
examples:
  atst-sed embed recording.wav -c atstframe_base.ckpt -o recording.npz
  atst-sed embed recordings/ 'more/*.flac' -c atstframe_base.ckpt -o embeddings/ --blocks all

One file named directly goes to -o OUT.npz (or '-' = stdout); folders, glob patterns or several
inputs go to the folder -o DIR, one NAME.npz per audio file (sub-folders of an input folder kept).
Files that cannot be used are reported on stderr, one line each; the others are still processed and
the exit code is 1. The last line on stderr sums up what was written where.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from atst_sed.cli.options import add_checkpoint, add_device, add_role, add_variant

    p = subparsers.add_parser(
        "embed",
        help="write log-mel features and ATST frame embeddings of audio files (.npz)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="audio files (wav, flac, ogg, mp3, …; any rate / channels), folders (searched recursively) "
                        "or glob patterns")
    add_checkpoint(p, "atst-sed checkpoint, a published ATST-Frame / ATST-Clip file (pretrained or fine-tuned: its "
                      "encoder; ATST-SED: its ATST-Frame branch, with the features that branch reads) or a "
                      "published model's name (atst-sed models)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.npz|DIR",
                   help="output file for one file (written atomically; '-' = stdout), else a folder")
    add_device(p)
    p.add_argument("--blocks", choices=("last", "all"), default="last",
                   help="last block only (N, D), or every block stacked (L, N, D)")
    p.add_argument("--batch-size", type=int, default=16, metavar="N", help="chunks encoded per forward pass")
    add_variant(p)
    add_role(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from atst_sed.cli.progress import FileProgress, count, destination, summary_line
    from atst_sed.errors import AtstSedError
    from atst_sed.inference.detector import resolve_device
    from atst_sed.inference.embeddings import embed_inputs, is_single_file, npz_targets
    from atst_sed.models.checkpoint import load_checkpoint

    if args.batch_size < 1:
        raise AtstSedError("--batch-size must be at least 1")
    single = is_single_file(args.inputs)
    npz_targets(args.inputs, [], args.output)  # an unusable -o is refused before the model loads
    device = resolve_device(args.device)
    loaded = load_checkpoint(args.checkpoint, variant=args.variant, role=args.role)
    with FileProgress("embed") as progress:
        report = embed_inputs(
            args.inputs, loaded.encoder, args.output, loaded.frontend, device, all_blocks=args.blocks == "all",
            batch_size=args.batch_size, on_progress=progress.update,
            # one file named directly: its problem is the command's error (exit 2), said once below
            on_message=None if single else lambda line: print(f"atst-sed embed: {line}", file=sys.stderr),
        )
    if single and report.problems:
        raise AtstSedError(report.problems[0])
    what = f"{count(len(report.written), 'file')} ({'all blocks' if args.blocks == 'all' else 'last block'})"
    print(summary_line("embed", what, destination(args.output), progress.seconds, len(report.problems)), file=sys.stderr)
    return 1 if report.problems else 0
