"""``atst-sed detect``: audio files of any length → timestamped events (CSV), scores, pictures."""

from __future__ import annotations

import argparse
import sys

EPILOG = """\
examples:
  atst-sed detect recording.wav --checkpoint best.ckpt
  atst-sed detect recordings/ 'more/*.flac' --checkpoint best.ckpt -o events.csv --scores-dir scores/ --plot plots/
  atst-sed detect a.wav --checkpoint best.ckpt --thresholds Speech=0.4,Dog=0.6 --median-filter 5
  atst-sed detect long.wav --checkpoint best.ckpt -o long.csv --plot plots/ --plot-format both --plot-classes 12

The CSV has columns filename,onset,offset,event_label,score (seconds, 3 decimals; score = the
event's mean probability); 'atst-sed evaluate --predictions events.csv' scores it (event and
segment F1; file names are matched to the ground truth by clip id). Files that cannot be used are reported on stderr, one line each; the
others are still processed and the exit code is 1.
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "detect",
        help="detect sound events in audio files of any length",
        description="Detect sound events with a fine-tuned SED checkpoint (10 s sliding windows, overlap-add).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files, folders (searched recursively) or glob patterns")
    p.add_argument("--checkpoint", "-c", required=True, help="fine-tuned SED checkpoint (atst-sed train)")
    p.add_argument("-o", "--output", default="-", metavar="OUT.csv", help="events CSV ('-' = stdout, the default)")
    p.add_argument("--scores-dir", metavar="DIR", help="write per-file frame score TSVs (sed_scores_eval format)")
    p.add_argument("--plot", metavar="DIR", help="write pictures per file (log-mel in Hz, score lanes, event lanes); "
                   "a file longer than 60 s gives rows of 60 s, 4 rows per PNG page (NAME_p1.png, ...)")
    p.add_argument("--plot-format", choices=("png", "html", "both"), default=None,
                   help="png (default), html (one self-contained interactive page per file: zoom, pan, "
                        "hover; no network needed) or both")
    p.add_argument("--plot-classes", type=int, default=None, metavar="N",
                   help="at most N classes per picture: those with events first, then the highest "
                        "peak scores (default 10)")
    p.add_argument("--thresholds", metavar="T|CLASS=T,...", help="decision threshold(s); default: from the checkpoint")
    p.add_argument("--median-filter", metavar="N|CLASS=N,...", help="median filter size(s) in the model's frames (40 ms for ATST); default: from the checkpoint")
    p.add_argument("--hop", type=float, default=5.0, metavar="SECONDS", help="window hop in seconds (default 5: every frame is scored by two overlapping 10 s windows; "
                        "10 halves the work, but each frame then sees other context and its scores move)")
    p.add_argument("--batch-size", type=int, default=None, metavar="N", help="windows per forward pass (default 8 on CPU, 64 on GPU)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where to run the model (default auto)")
    p.add_argument(
        "--variant", choices=("frame", "clip"), default=None,
        help="encoder variant of the checkpoint (default: what the file says; an override that contradicts it is an error)",
    )
    p.add_argument(
        "--precision", default="auto", choices=("auto", "fp32", "bf16"),
        help="auto (default): bf16 autocast where the hardware multiplies bf16 natively (CUDA GPUs with "
             "bf16; CPUs with AVX-512 BF16 or AMX), fp32 elsewhere (bf16 is emulated there, so slower). "
             "Probabilities move by < 0.01; fp32 gives the reference numbers",
    )
    p.set_defaults(func=run)


def parse_per_class(text: str | None, kind: type, what: str):
    """``"0.5"`` → 0.5; ``"Dog=0.6,Speech=0.4"`` → {"Dog": 0.6, "Speech": 0.4}; None → None."""
    from atst_sed.errors import AtstSedError

    if text is None:
        return None
    text = text.strip()
    try:
        if "=" not in text:
            return kind(text)
        out = {}
        for item in text.split(","):
            if not item.strip():
                continue
            name, sep, value = item.partition("=")
            if not sep or not name.strip():
                raise ValueError(item)
            out[name.strip()] = kind(value.strip())
        return out
    except ValueError:
        raise AtstSedError(f"--{what}: cannot parse {text!r} (use a number or CLASS=VALUE,CLASS=VALUE)") from None


def _progress(stream):
    """A rich progress bar on ``stream`` (only on a terminal, and for two or more files)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    console = Console(file=stream)
    return Progress(
        TextColumn("detect"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), TextColumn("{task.description}"),
        console=console, transient=True, disable=not console.is_terminal,
    )


def run(args: argparse.Namespace) -> int:
    from atst_sed.inference.batch import detect_inputs

    stderr = sys.stderr
    with _progress(stderr) as progress:
        task = progress.add_task("", total=None, visible=False)  # shown once there are two files or more

        def show(done: int, total: int, name: str) -> None:
            progress.update(task, completed=done, total=total, description=name, visible=total >= 2)

        report = detect_inputs(
            inputs=args.inputs,
            checkpoint=args.checkpoint,
            output=args.output,
            scores_dir=args.scores_dir,
            plot_dir=args.plot,
            plot_format=args.plot_format,
            plot_classes=args.plot_classes,
            thresholds=parse_per_class(args.thresholds, float, "thresholds"),
            median_filter=parse_per_class(args.median_filter, int, "median-filter"),
            hop=args.hop,
            batch_size=args.batch_size,
            device=args.device,
            precision=args.precision,
            variant=args.variant,
            on_message=lambda line: print(f"atst-sed detect: {line}", file=stderr),
            on_progress=show,
        )
    return 1 if report.failed else 0
