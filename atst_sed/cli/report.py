"""``atst-sed report``: test PSDS / F1 of several training runs, mean ± standard deviation."""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys

log = logging.getLogger("atst_sed.report")

COLUMNS = (  # (metric, header)
    ("psds1", "PSDS1"),
    ("psds2", "PSDS2"),
    ("psds1_sed_scores_eval", "PSDS1*"),
    ("psds2_sed_scores_eval", "PSDS2*"),
    ("event_f1_macro", "event F1"),
    ("segment_f1_macro", "segment F1"),
    ("intersection_f1_macro", "inters. F1"),
)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report",
        help="test results of several runs (e.g. seeds): mean ± std per stage and model",
        description=(
            "Summarise the test results of `atst-sed train` run folders, e.g. three seeds of a\n"
            "recipe (DCASE reports the mean and spread of independent trainings): one row per\n"
            "stage and model (student / teacher) with the mean ± sample standard deviation over\n"
            "the runs of PSDS1, PSDS2 (psds_eval and sed_scores_eval) and the event-based,\n"
            "segment-based and intersection-based macro F1."
        ),
        epilog="example: for s in 1 2 3; do atst-sed train recipes/dcase22 seed=$s name=dcase22_s$s; done\n"
               "         atst-sed report runs/dcase22_s1 runs/dcase22_s2 runs/dcase22_s3 --csv summary.csv",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders (with manifest.json)")
    p.add_argument("--csv", metavar="OUT.csv", help="write the summary table as CSV ('-' = stdout; the table then goes to stderr)")
    p.add_argument("--json", metavar="OUT.json", help="write the summary and every run's results as JSON ('-' = stdout)")
    p.set_defaults(func=run)


def _cell(mean: float, std: float) -> str:
    if math.isnan(mean):
        return "–"
    return f"{mean:.3f}" if math.isnan(std) else f"{mean:.3f}±{std:.3f}"


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from atst_sed.evaluation.runs import collect_test_results, summarize
    from atst_sed.fileio import atomic_write_text, is_standard_output, resolve_output

    for out in (args.csv, args.json):
        if out:
            resolve_output(out)  # refuse a folder before the work

    infos, results = collect_test_results(args.runs)
    fingerprints = {i.fingerprint for i in infos}
    if len(fingerprints) > 1:
        log.warning("the runs were trained/tested on different corpora (dataset fingerprints differ)")
    summary = summarize(results)
    seeds = ", ".join(str(i.seed) for i in infos)
    table = Table(title=f"Test results of {len(infos)} run(s) (seeds {seeds}): mean ± std",
                  caption="PSDS: psds_eval, 50 operating points; *: sed_scores_eval; F1: macro, sed_eval / psds_eval")
    for header in ("stage", "model", "runs", *(h for _, h in COLUMNS)):
        table.add_column(header, justify="left" if header in ("stage", "model") else "right")
    for row in summary.to_dict("records"):
        table.add_row(row["stage"], row["model"], str(row["runs"]),
                      *(_cell(row[f"{m}_mean"], row[f"{m}_std"]) for m, _ in COLUMNS))
    to_stdout = is_standard_output(args.csv) or is_standard_output(args.json)
    Console(width=None if sys.stdout.isatty() else 160, stderr=to_stdout).print(table)  # - : the table to stderr
    if args.csv:
        atomic_write_text(args.csv, summary.to_csv(index=False, float_format="%.6f"))
    if args.json:
        body = {
            "runs": [{"path": str(i.path), "name": i.name, "seed": i.seed, "dataset_fingerprint": i.fingerprint} for i in infos],
            "summary": json.loads(summary.to_json(orient="records")),
            "per_run": json.loads(results.to_json(orient="records")),
        }
        atomic_write_text(args.json, json.dumps(body, indent=2))
    return 0
