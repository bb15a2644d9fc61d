"""``atst-sed evaluate``: PSDS1/PSDS2 and F1 of predictions against a strong ground truth."""

from __future__ import annotations

import argparse
import json


DEFAULT_THRESHOLD = 0.5  # = evaluation.files.DEFAULT_THRESHOLD, not imported so that --help stays light

EPILOG = """\
examples:
  atst-sed evaluate --ground-truth metadata/validation/validation.tsv \\
      --durations metadata/validation/validation_durations.tsv \\
      --predictions runs/mini/test/student/operating_points --json metrics.json --plots plots/
  atst-sed evaluate --ground-truth gt.tsv --durations durations.tsv --predictions events.csv

F1 needs one decision threshold: score files are decoded at exactly --threshold; of operating-point
files the one with the nearest threshold is used (the log line and the JSON's f1_operating_point say
which); an event table is scored as it is (--threshold does not apply).
"""


def register(subparsers) -> None:
    from atst_sed.cli.options import add_jobs

    p = subparsers.add_parser(
        "evaluate",
        help="PSDS1/PSDS2 (psds_eval, sed_scores_eval) and F1 (sed_eval) of predictions",
        description=(
            "Score predictions against a DESED-format ground truth (or Google's AudioSet-strong TSV: "
            "segment_id start_time_seconds end_time_seconds label, MIDs as labels; score it with "
            "--alpha-st 0 as the ATST papers do). PREDICTIONS is (a) a folder "
            "of predictions_th_<threshold>.tsv files (DCASE 2022 operating points: PSDS with "
            "psds_eval + F1), (b) a folder of sed_scores_eval score files <clip>.tsv (also "
            "threshold-free PSDS with sed_scores_eval), or (c) one event table (F1 only): a TSV, "
            "or the CSV written by 'atst-sed detect -o events.csv' (file names are matched to the "
            "ground truth by clip id, the name without folder and audio extension). "
            "Every table is scored as written, as the reference libraries score it: events past "
            "a clip's end (padded pipelines write them) are kept and reported once with a count; "
            "overlapping events of one class, which psds_eval refuses, are an error."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--ground-truth", required=True, metavar="GT.tsv",
                   help="strong labels: filename onset offset event_label (seconds)")
    p.add_argument("--durations", required=True, metavar="DUR.tsv",
                   help="clip durations: filename duration (seconds)")
    p.add_argument("--predictions", required=True, metavar="PATH",
                   help="op-point folder, score-file folder, or one event table (TSV, or detect's CSV)")
    p.add_argument("--json", metavar="OUT.json", help="write all metrics as JSON ('-' = stdout; the tables then go to stderr)")
    p.add_argument("--plots", metavar="DIR", help="write PSD-ROC PNGs (overall + per class)")
    p.add_argument("--threshold", type=float, default=None, metavar="T",
                   help=f"decision threshold of the F1 scores (default {DEFAULT_THRESHOLD:g}); operating points: "
                        "the file with the nearest threshold, named in the log and the JSON (f1_operating_point)")
    p.add_argument("--classes", default=None,
                   help="'desed' (the 10 DCASE classes) or a comma-separated list; "
                        "default: the classes of the ground truth")
    p.add_argument("--exclude-missing", action="store_true",
                   help="leave ground-truth clips without any prediction out of the evaluation "
                        "(default for op. points / event TSVs: they count as nothing detected)")
    p.add_argument("--alpha-st", type=float, default=None, metavar="A",
                   help="α_st of both PSDS scenarios (weight of the across-class TPR spread; default 1 as in "
                        "DCASE; 0 scores AudioSet-strong as the ATST papers do)")
    add_jobs(p)
    p.set_defaults(func=run)


def _classes(arg: str | None):
    if arg is None:
        return None
    if arg.lower() == "desed":
        from atst_sed.labels import DESED_CLASSES

        return list(DESED_CLASSES)
    names = [c.strip() for c in arg.split(",") if c.strip()]
    if not names:
        from atst_sed.errors import AtstSedError

        raise AtstSedError("--classes is empty")
    return names


def _table(result: dict, kind: str):
    from pathlib import Path

    from rich.table import Table

    def fmt(v):
        return "—" if v is None else f"{v:.4f}"

    summary = Table(title=f"atst-sed evaluate ({kind})", show_header=True)
    summary.add_column("metric")
    summary.add_column("value", justify="right")
    summary.add_column("evaluator")
    if "psds1" in result:
        n = result.get("n_operating_points")
        alpha = f", α_st {result['alpha_st']:g}"
        summary.add_row("PSDS1", fmt(result["psds1"]), f"psds_eval, {n} op. points{alpha}")
        summary.add_row("PSDS2", fmt(result["psds2"]), f"psds_eval, {n} op. points{alpha}")
    if "psds1_threshold_free" in result:
        summary.add_row("PSDS1 threshold-free", fmt(result["psds1_threshold_free"]), f"sed_scores_eval{alpha}")
        skipped = "psds2" in result.get("threshold_free_skipped", {})
        summary.add_row("PSDS2 threshold-free", fmt(result["psds2_threshold_free"]),
                        "not computed: cross-triggers of this many classes need too much memory" if skipped
                        else f"sed_scores_eval{alpha}")
    at = f" @ {result['f1_threshold']:g}" if "f1_threshold" in result else ""
    for key, label, ev in (("event_f1", "event F1", "sed_eval, collar 0.2 s"),
                           ("segment_f1", "segment F1", "sed_eval, 1 s")):
        summary.add_row(f"{label} macro{at}", fmt(result[key]["macro"]), ev)
        summary.add_row(f"{label} micro{at}", fmt(result[key]["micro"]), ev)
    summary.add_row(f"intersection F1 macro{at}", fmt(result["intersection_f1"]["macro"]),
                    "psds_eval, dtc=gtc=0.5")
    if "f1_operating_point" in result:
        requested = result["f1_threshold_requested"]
        nearest = "" if requested == result["f1_threshold"] else f", the nearest to {requested:g}"
        summary.add_row("F1 operating point", Path(result["f1_operating_point"]).name, f"threshold {result['f1_threshold']:g}{nearest}")
    summary.add_row("clips evaluated / missing",
                    f"{result['n_clips_evaluated']} / {result['n_clips_missing']}", "")
    per_class = Table(title="class-wise F1", show_header=True)
    for name in ("class", "event", "segment", "intersection"):
        per_class.add_column(name, justify="left" if name == "class" else "right")
    for c in result["classes"]:
        per_class.add_row(c, fmt(result["event_f1"]["class_wise"].get(c)),
                          fmt(result["segment_f1"]["class_wise"].get(c)),
                          fmt(result["intersection_f1"]["class_wise"].get(c)))
    return summary, per_class


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from atst_sed.evaluation.files import evaluate_files
    from atst_sed.fileio import atomic_write_text, check_output_folder, is_standard_output, resolve_output

    if args.plots:
        check_output_folder(args.plots, "--plots")
    if args.json:
        resolve_output(args.json)  # refuse a folder before the work
    console = Console(stderr=is_standard_output(args.json))  # --json -: the tables go to stderr
    with console.status("evaluating …"):
        result = evaluate_files(
            args.predictions, args.ground_truth, args.durations, _classes(args.classes), threshold=args.threshold,
            exclude_missing=args.exclude_missing, n_jobs=args.jobs, plot_dir=args.plots, alpha_st=args.alpha_st,
        )
    kind = result["kind"]
    for table in _table(result, kind):
        console.print(table)
    if args.json:
        atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
        console.print(f"metrics written to {args.json}")
    if result.get("plots"):
        console.print(f"PSD-ROC plots: {', '.join(result['plots'])}")
    return 0
