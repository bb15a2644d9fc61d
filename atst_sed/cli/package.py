"""``atst-sed package``: write a DCASE Task 4 submission zip, or check one (``package validate``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# Literal here so that ``atst-sed --help`` does not import the library (checked by the tests
# against atst_sed.submission.layout.FORMATS).
FORMATS = ("dcase2022", "dcase2023")

DESCRIPTION = """\
Write a DCASE Task 4 submission package (zip) from training run folders, or check one.

  atst-sed package --system LABEL --runs RUN_DIR... [--system LABEL --runs RUN_DIR...]
                   --report REPORT.pdf --meta META.yaml -o SUBMISSION.zip [--format dcase2022|dcase2023]
  atst-sed package --systems SYSTEMS.yaml [-o SUBMISSION.zip ...]
  atst-sed package validate SUBMISSION.zip|DIR [--format ...] [--expected-clips N]

Each --system LABEL is followed by its --runs (pairs in order; up to 4 systems). Labels are
Lastname_INST_task4_N (N = 1..4). dcase2022 takes one run per system and submits its
evaluation-set detections (RUN_DIR/eval/events.tsv, or detect's events.csv); dcase2023 takes
three independent runs per system and submits their post-processed sed_scores_eval score files
(RUN_DIR/eval/scores/: median-filtered, the scores 'atst-sed evaluate' scores), plus the unprocessed
ones (RUN_DIR/eval/scores_raw/) when present. Make them with
  atst-sed detect EVAL_AUDIO --checkpoint RUN_DIR/<stage>/checkpoints/best.ckpt -o RUN_DIR/eval/events.csv \\
      --scores-dir RUN_DIR/eval/scores --raw-scores-dir RUN_DIR/eval/scores_raw
or let --eval-audio EVAL_AUDIO run that for every run that lacks them.
The meta YAML of each system is filled from the runs (sampling rate, features, parameter
count, training data, development-set PSDS1/PSDS2, versions) and from META.yaml (authors, names,
description; optional 'systems: {LABEL: {...}}' for per-system parts). The package is validated
before it is written; an invalid one is refused with every problem listed.
"""

PACKAGE_LAYOUT = """\
examples:
  atst-sed package --system Doe_UNI_task4_1 --runs runs/seed1 --report report.pdf --meta META.yaml -o Doe_UNI_task4.zip
  atst-sed package --format dcase2023 --system Doe_UNI_task4_1 --runs runs/s1 runs/s2 runs/s3 \\
      --report report.pdf --meta META.yaml -o Doe_UNI_task4.zip
  atst-sed package validate Doe_UNI_task4.zip

META.yaml: submission.name, submission.abbreviation and submission.authors (each with lastname,
firstname and affiliation; exactly one with 'corresponding: true') are required, the rest comes from
the runs; the README's "Submission packaging" section lists every field with an example file.

package layout:
  task4/Lastname_INST_task4_technical_report.pdf
  task4/<label>/<label>.meta.yaml
  task4/<label>/<label>.output.tsv                        (dcase2022)
  task4/<label>/<label>_run{1,2,3}.output/<clip>.tsv      (dcase2023)
  task4/<label>/<label>_run{1,2,3}_unprocessed.output/    (dcase2023, optional)

systems file (--systems; paths relative to the file):
  format: dcase2023
  report: report.pdf
  meta: META.yaml
  systems:
    - {label: Doe_UNI_task4_1, runs: [runs/seed1, runs/seed2, runs/seed3]}

exit status: 0 written / valid, 1 invalid package (every problem printed), 2 bad arguments or input.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "package",
        help="write or validate a DCASE Task 4 submission package",
        description=DESCRIPTION,
        epilog=PACKAGE_LAYOUT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--system", action="append", dest="labels", metavar="LABEL", default=[],
                   help="system label Lastname_INST_task4_N; repeat for more systems")
    p.add_argument("--runs", action="append", nargs="+", dest="runs", metavar="RUN_DIR", default=[],
                   help="run folder(s) of the preceding --system (dcase2022: 1, dcase2023: 3)")
    p.add_argument("--systems", dest="systems_file", metavar="SYSTEMS.yaml",
                   help="systems (and optionally format, report, meta) from a YAML file")
    p.add_argument("--report", metavar="REPORT.pdf", help="technical report (PDF)")
    p.add_argument("--meta", metavar="META.yaml", help="human parts of the meta information")
    p.add_argument("-o", "--output", metavar="SUBMISSION.zip", help="zip to write ('-' = stdout)")
    p.add_argument("--format", choices=FORMATS, default=None, help="package format (default: dcase2022)")
    p.add_argument("--expected-clips", type=int, metavar="N",
                   help="number of evaluation clips every output must cover")
    p.add_argument("--eval-audio", metavar="DIR",
                   help="evaluation audio: runs lacking RUN_DIR/eval outputs get them from atst-sed detect "
                        "(last stage's best checkpoint; written into the run)")
    p.set_defaults(func=run_build)
    sub = p.add_subparsers(dest="package_command", metavar="{validate}")
    v = sub.add_parser(
        "validate",
        help="check a submission zip or folder and print every problem",
        description="Check a DCASE Task 4 submission (zip or folder) like the organisers' validators "
                    "and print every problem; exit 1 if there is any.",
        epilog="examples:\n  atst-sed package validate Doe_UNI_task4.zip\n"
               "  atst-sed package validate submission/task4 --format dcase2023 --expected-clips 692",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    v.add_argument("package", metavar="SUBMISSION.zip|DIR")
    v.add_argument("--format", choices=FORMATS, default=None,
                   help="expected format (default: detected per system)")
    v.add_argument("--expected-clips", type=int, metavar="N",
                   help="number of evaluation clips every output must cover")
    v.set_defaults(func=run_validate)


def _print_report(report, verb: str) -> None:
    for line in report.warnings:
        print(f"warning: {line}", file=sys.stderr)
    for line in report.problems:
        print(f"error: {line}", file=sys.stderr)
    if report.problems:
        print(f"{report.source}: {len(report.problems)} problem(s); {verb}", file=sys.stderr)


def run_validate(args: argparse.Namespace) -> int:
    from atst_sed.submission import validate_package

    report = validate_package(args.package, fmt=args.format, expected_clips=args.expected_clips)
    _print_report(report, "not a valid submission")
    if report.ok:
        print(f"{report.source}: valid ({len(report.systems)} system(s): {', '.join(report.systems)})")
    return 0 if report.ok else 1


def run_build(args: argparse.Namespace) -> int:
    from atst_sed.errors import AtstSedError
    from atst_sed.submission import SubmissionError, SystemSpec, build_package, read_systems_file

    config: dict = {}
    if args.systems_file:
        config = read_systems_file(args.systems_file)
    if args.labels or args.runs:
        if len(args.labels) != len(args.runs):
            raise AtstSedError(f"{len(args.labels)} --system but {len(args.runs)} --runs: give each "
                               "--system LABEL followed by its --runs RUN_DIR...")
        if config.get("systems"):
            raise AtstSedError("give systems either with --system/--runs or with --systems, not both")
        config["systems"] = [SystemSpec(label, [Path(r) for r in runs])
                             for label, runs in zip(args.labels, args.runs)]
    report = args.report or config.get("report")
    meta = args.meta or config.get("meta")
    missing = [flag for flag, value in (("--system/--runs or --systems", config.get("systems")),
                                        ("--report", report), ("--meta", meta), ("-o", args.output))
               if not value]
    if missing:
        raise AtstSedError(f"missing {', '.join(missing)} (see atst-sed package --help)")
    fmt = args.format or config.get("format") or "dcase2022"
    try:
        result = build_package(config["systems"], report, meta, args.output, fmt=fmt,
                               expected_clips=args.expected_clips, eval_audio=args.eval_audio)
    except SubmissionError as err:
        for line in err.problems:
            print(f"error: {line}", file=sys.stderr)
        print(f"{args.output}: not written ({len(err.problems)} problem(s))", file=sys.stderr)
        return 1
    for line in result.warnings:
        print(f"warning: {line}", file=sys.stderr)
    from atst_sed.fileio import is_standard_output

    print(f"{args.output}: written and valid ({fmt}; {', '.join(result.systems)})",
          file=sys.stderr if is_standard_output(args.output) else sys.stdout)
    return 0
