"""``atst-sed detect``: audio files of any length → timestamped events (CSV), scores, pictures."""

from __future__ import annotations

import argparse
import sys

EPILOG = """\
examples:
  atst-sed detect recording.wav --checkpoint best.ckpt
  atst-sed detect recording.wav --checkpoint atst-sed:stage2 --plot plots/   # a published model, by name
  atst-sed detect recording.wav --checkpoint Stage2_wo_ext.ckpt --role student
  atst-sed detect recordings/ 'more/*.flac' --checkpoint best.ckpt -o events.csv --scores-dir scores/ --plot plots/
  atst-sed detect a.wav --checkpoint best.ckpt --thresholds Speech=0.4,Dog=0.6 --median-filter 5
  atst-sed detect long.wav --checkpoint best.ckpt -o long.csv --plot plots/ --plot-format both --plot-classes 12
  atst-sed detect rec.wav --checkpoint atst-frame:audioset-strong --plot plots/           # 407 everyday sounds
  atst-sed detect rec.wav --checkpoint atst-frame:audioset-strong --classes 'Dog,Speech,Gunshot, gunfire' --top-k 3

--checkpoint takes a checkpoint of atst-sed train, a published SED file (audiossl DESED fine-tuned
ATST-Frame / ATST-Clip / C2F, the AudioSet-strong ATST-Frame, ATST-SED stage 1 / 2; the layout is
read from the file) or the name of a published model ('atst-sed models' lists them; downloaded once
into the cache). Times follow the model's own frame grid: 40 ms for ATST-Frame / ATST-Clip, 64 ms for
ATST-SED.

The CSV has columns filename,onset,offset,event_label,score (seconds, 3 decimals; score = the
event's mean probability; event_label = the class's display name, e.g. 'Dog' for the AudioSet MID
/m/0bt9lr, or the id with --label-format mid); 'atst-sed evaluate --predictions events.csv' scores
it (event and segment F1; file names are matched to the ground truth by clip id; evaluate against
MID ground truths with --label-format mid). Score files (--scores-dir) always name classes by id. Files that cannot be used are reported on stderr, one line each; the
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
    p.add_argument("--checkpoint", "-c", required=True, help="SED checkpoint (atst-sed train), published SED file, or published model name (atst-sed models)")
    p.add_argument("-o", "--output", default="-", metavar="OUT.csv", help="events CSV ('-' = stdout, the default)")
    p.add_argument("--scores-dir", metavar="DIR", help="write per-file frame score TSVs (sed_scores_eval format)")
    p.add_argument("--plot", metavar="DIR", help="write pictures per file (log-mel in Hz, score lanes, event lanes); "
                   "a file longer than 60 s gives rows of 60 s, 4 rows per PNG page (NAME_p1.png, ...)")
    p.add_argument("--plot-format", choices=("png", "html", "both"), default=None,
                   help="png (default), html (one self-contained interactive page per file: zoom, pan, "
                        "hover; no network needed) or both")
    p.add_argument("--plot-classes", type=int, default=None, metavar="N",
                   help="at most N classes per picture (default 10): every class of a model with at most N, "
                        "else only those with events (by peak score); none fired: the N highest peaks")
    p.add_argument("--thresholds", metavar="T|CLASS=T,...", help="decision threshold(s); default: from the checkpoint")
    p.add_argument("--median-filter", metavar="N|CLASS=N,...", help="median filter size(s) in the model's frames (40 ms for ATST-Frame / ATST-Clip, 64 ms for ATST-SED); default: from the checkpoint")
    p.add_argument("--hop", type=float, default=5.0, metavar="SECONDS", help="window hop in seconds (default 5; window 10 s)")
    p.add_argument("--batch-size", type=int, default=None, metavar="N", help="windows per forward pass (default 4 on CPU, 32 on GPU)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="where to run the model (default auto)")
    p.add_argument(
        "--variant", choices=("frame", "clip"), default=None,
        help="encoder variant of the checkpoint (default: what the file says; an override that contradicts it is an error)",
    )
    p.add_argument(
        "--role", choices=("teacher", "student"), default=None,
        help="which model of a published ATST-SED file (default teacher, as the official test and inference use)",
    )
    p.add_argument(
        "--short-clips", choices=("pad", "mask"), default=None,
        help="a recording shorter than the model's 10-s window: pad = zero-padded to the window and the padding "
             "scored as audio (the official test path; default for published files), mask = scored alone on its "
             "own frames (default for models trained here)",
    )
    p.add_argument("--labels", metavar="FILE",
                   help="class ids in output order, one per line, optionally TAB display name (e.g. audiossl's "
                        "common_labels.txt for an AudioSet-strong file), or an AudioSet ontology.json (names only)")
    p.add_argument("--label-format", choices=("name", "mid"), default="name",
                   help="event_label in the CSV and the pictures: display names (default, e.g. 'Speech') or class "
                        "ids (e.g. AudioSet MIDs '/m/09x0r'); score files always use the ids")
    p.add_argument("--classes", action="append", metavar="C1,C2,...",
                   help="keep only these classes in every output, each by id or display name (case-insensitive; "
                        "repeatable)")
    p.add_argument("--top-k", type=int, default=None, metavar="K",
                   help="for browsing: at most K active classes per frame (--top-k-per frame, the default) or the K "
                        "highest-scoring events per file (--top-k-per event); score files are not cut")
    p.add_argument("--top-k-per", choices=("frame", "event"), default="frame", help="what --top-k counts (default frame)")
    p.add_argument(
        "--precision", default="auto", choices=("auto", "fp32", "bf16"),
        help="auto: bf16 on GPU, fp32 on CPU; bf16 on CPU is faster on AVX-512 BF16 / AMX machines",
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
            role=args.role,
            short_clips=args.short_clips,
            labels=args.labels,
            label_format=args.label_format,
            classes=args.classes,
            top_k=args.top_k,
            top_k_per=args.top_k_per,
            on_message=lambda line: print(f"atst-sed detect: {line}", file=stderr),
            on_progress=show,
        )
    return 1 if report.failed else 0
