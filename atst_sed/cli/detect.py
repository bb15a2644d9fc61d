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
MID ground truths with --label-format mid). Files that cannot be used are reported on stderr, one
line each; the others are still processed and the exit code is 1.

--scores-dir writes the post-processed scores: median-filtered as the events were (the CSV is these
scores thresholded), which is what 'atst-sed evaluate' and a DCASE 2023 submission score;
--raw-scores-dir writes the model's scores before the median filter (DCASE 2023's optional
"unprocessed" outputs). One sed_scores_eval TSV per file: onset offset <class>... (seconds, on the
model's frame grid; classes always named by id). The last line on stderr sums up what was written
where, e.g.
  atst-sed detect: 12 files, 57 events → events.csv (3.2 s)
"""


def register(subparsers) -> None:
    from atst_sed.cli.options import add_checkpoint, add_device, add_role, add_variant

    p = subparsers.add_parser(
        "detect",
        help="detect sound events in audio files of any length",
        description="Detect sound events with a fine-tuned SED checkpoint (10 s sliding windows, overlap-add).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="audio files, folders (searched recursively) or glob patterns")
    add_checkpoint(p, "SED checkpoint (atst-sed train: RUN_DIR/<stage>/checkpoints/best.ckpt), a published "
                      "SED file, or a published model's name (atst-sed models)")
    p.add_argument("-o", "--output", default="-", metavar="OUT.csv", help="events CSV ('-' = stdout, the default)")
    p.add_argument("--scores-dir", metavar="DIR",
                   help="write per-file frame score TSVs (sed_scores_eval format) after the median filter: "
                        "the scores the events come from")
    p.add_argument("--raw-scores-dir", metavar="DIR",
                   help="write per-file frame score TSVs before the median filter (the model's own scores)")
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
    p.add_argument("--hop", type=float, default=5.0, metavar="SECONDS", help="window hop in seconds (default 5: every frame is scored by two overlapping 10 s windows; "
                        "10 halves the work, but each frame then sees other context and its scores move)")
    p.add_argument("--batch-size", type=int, default=None, metavar="N", help="windows per forward pass (default 8 on CPU, 64 on GPU)")
    add_device(p)
    add_variant(p)
    add_role(p)
    p.add_argument(
        "--short-clips", choices=("pad", "mask"), default=None,
        help="a recording shorter than the model's 10-s window: pad = zero-padded to the window and the padding "
             "scored as audio (the official test path; default for published files), mask = scored alone on its "
             "own frames (default for models trained here)",
    )
    p.add_argument("--labels", metavar="FILE", dest="label_file",
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
        help="auto (default): bf16 autocast where the hardware multiplies bf16 natively (CUDA GPUs with "
             "bf16; CPUs with AVX-512 BF16 or AMX), fp32 elsewhere (bf16 is emulated there, so slower). "
             "Probabilities move by a few thousandths (at most 0.03 measured), so a decision changes only where "
             "fp32's score is that close to its threshold; fp32 gives the reference numbers",
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


def run(args: argparse.Namespace) -> int:
    from atst_sed.cli.progress import FileProgress, count, destination, summary_line
    from atst_sed.inference.batch import detect_inputs

    stderr = sys.stderr
    with FileProgress("detect", stderr) as progress:
        report = detect_inputs(
            inputs=args.inputs,
            checkpoint=args.checkpoint,
            output=args.output,
            scores_dir=args.scores_dir,
            raw_scores_dir=args.raw_scores_dir,
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
            labels=args.label_file,
            label_format=args.label_format,
            classes=args.classes,
            top_k=args.top_k,
            top_k_per=args.top_k_per,
            on_message=lambda line: print(f"atst-sed detect: {line}", file=stderr),
            on_progress=progress.update,
        )
    # The bar has cleared itself: one line stays, saying what was written where.
    done = f"{count(report.files - report.failed_files, 'file')}, {count(report.events, 'event')}"
    target = [destination(args.output)]
    if args.scores_dir:
        target.append(f"post-processed scores in {args.scores_dir}")
    if args.raw_scores_dir:
        target.append(f"raw scores in {args.raw_scores_dir}")
    if args.plot:
        target.append(f"pictures in {args.plot}")
    print(summary_line("detect", done, ", ".join(target), progress.seconds, len(report.problems)), file=stderr)
    return 1 if report.failed else 0
