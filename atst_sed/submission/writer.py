"""Write a DCASE Task 4 submission zip from run folders, a report PDF and a META.yaml.

The package is staged in a private temporary folder, validated
(:func:`~atst_sed.submission.validate.validate_package`), zipped, the zip validated again, and
only then copied to the output (:mod:`atst_sed.fileio`: atomically for a file, in place for a
device or pipe). Any problem — missing evaluation outputs, missing
meta fields, a bad label, … — is collected and raised together as :class:`SubmissionError`;
nothing is written then.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from atst_sed.config import read_yaml
from atst_sed.errors import AtstSedError, InputError
from atst_sed.events import read_strong_tsv, write_events_tsv
from atst_sed.fileio import atomic_write_text, copy_file, open_output, resolve_output
from atst_sed.inference.batch import detect_inputs
from atst_sed.runfolder import RunFolder, repeated_folders
from atst_sed.submission.layout import (
    DESED_CLASSES,
    FORMATS,
    LABEL_PATTERN,
    MAX_SYSTEMS,
    N_RUNS,
    SAFE_NAME,
    TASK_DIR,
    meta_name,
    output_tsv_name,
    report_name,
    run_dir_name,
)
from atst_sed.submission.meta import detect_command, read_run, system_meta
from atst_sed.submission.validate import ValidationReport, validate_package

__all__ = ["SubmissionError", "SystemSpec", "build_package", "read_systems_file"]

log = logging.getLogger(__name__)

#: Fixed member time stamp: the same inputs give a byte-identical zip.
_ZIP_TIME = (2022, 1, 1, 0, 0, 0)


class SubmissionError(AtstSedError):
    """The package cannot be written; ``problems`` lists every reason, one line each."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        more = f" (and {len(self.problems) - 1} more problem(s))" if len(self.problems) > 1 else ""
        super().__init__(f"{self.problems[0]}{more}" if self.problems else "invalid submission")


@dataclass
class SystemSpec:
    """One submitted system: its label and its run folders (1 for dcase2022, 3 for dcase2023)."""

    label: str
    runs: list[Path] = field(default_factory=list)


def read_systems_file(path: str | PathLike[str]) -> dict[str, Any]:
    """Read a systems YAML (paths relative to the file)::

        format: dcase2023          # optional
        report: report.pdf         # optional
        meta: META.yaml            # optional
        systems:
          - label: Doe_UNI_task4_1
            runs: [runs/a, runs/b, runs/c]

    Returns ``{"systems": [SystemSpec], "format"?, "report"?, "meta"?}``.
    """
    path = Path(path)
    data = read_yaml(path)
    base = path.parent
    unknown = sorted(set(data) - {"format", "report", "meta", "systems"})
    if unknown:
        raise InputError(path, f"unknown key(s) {', '.join(unknown)}; known: format, report, meta, systems")
    items = data.get("systems")
    if not isinstance(items, list) or not items:
        raise InputError(path, "'systems' must be a non-empty list of {label, runs}")
    systems = []
    for i, item in enumerate(items, 1):
        if not isinstance(item, dict) or not isinstance(item.get("label"), str) or not item.get("runs"):
            raise InputError(path, f"systems[{i}] must have a label and a list of runs")
        runs = item["runs"] if isinstance(item["runs"], list) else [item["runs"]]
        systems.append(SystemSpec(item["label"], [base / str(r) for r in runs]))
    out: dict[str, Any] = {"systems": systems}
    for key in ("report", "meta"):
        if data.get(key):
            out[key] = base / str(data[key])
    if data.get("format"):
        out["format"] = str(data["format"])
    return out


# ------------------------------------------------------------------------------------ staging
def _load_events(run: RunFolder, source: Path, classes: Sequence[str]) -> pd.DataFrame:
    """Detections as ``filename onset offset event_label`` (detect's CSV is converted)."""
    if source.suffix == ".csv":
        try:
            table = pd.read_csv(source, dtype=str, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise InputError(source, f"not a readable CSV ({str(err).splitlines()[0]})") from None
        missing = [c for c in ("filename", "onset", "offset", "event_label") if c not in table.columns]
        if missing:
            raise InputError(source, f"missing column(s) {', '.join(missing)}", line=1)
        with tempfile.TemporaryDirectory() as tmp:
            converted = Path(tmp) / "events.tsv"
            atomic_write_text(converted, table[["filename", "onset", "offset", "event_label"]].to_csv(sep="\t", index=False))
            try:
                events = read_strong_tsv(converted, classes=classes, merge_overlaps=False)
            except InputError as err:  # name the user's file, not the temporary copy
                raise InputError(source, err.problem, line=err.line) from None
    else:
        events = read_strong_tsv(source, classes=classes, merge_overlaps=False)
    events["filename"] = events["filename"].map(os.path.basename)
    return events.sort_values(["filename", "onset", "event_label"], na_position="first", kind="stable")


def _run_detection(run: RunFolder, eval_audio: Path, fmt: str, problems: list[str]) -> None:
    """Fill ``RUN_DIR/eval`` by detection on ``eval_audio`` with the run's last best checkpoint
    (what ``atst-sed detect`` does) when its outputs are missing; the inputs detection could not
    use become problems."""
    have = run.events_file() is not None if fmt == "dcase2022" else run.scores_dir() is not None
    if have:
        return
    checkpoints = run.best_checkpoints()
    if not checkpoints:
        problems.append(f"{run.path}: no <stage>/checkpoints/best.ckpt to run detection with")
        return
    log.info("detecting events in %s with %s", eval_audio, checkpoints[-1])
    try:
        report = detect_inputs([str(eval_audio)], str(checkpoints[-1]), output=str(run.eval_dir / "events.csv"),
                               scores_dir=str(run.eval_dir / "scores"), raw_scores_dir=str(run.eval_dir / "scores_raw"),
                               precision="fp32")  # a submission's scores must not depend on the machine's bf16 support
    except AtstSedError as err:
        problems.append(f"{run.path}: detection failed: {err}")
        return
    problems.extend(f"{run.path}: detection: {line}" for line in report.problems)
    if report.failed:
        problems.append(f"{eval_audio}: detection failed for {len(report.problems)} input(s); {run.eval_dir} is incomplete")


def _copy_scores(source: Path, target: Path) -> None:
    target.mkdir(parents=True)
    for file in sorted(source.glob("*.tsv")):
        copy_file(file, target / file.name)


def _stage_system(spec: SystemSpec, runs: list[RunFolder], user_meta: dict[str, Any], fmt: str,
                  classes: Sequence[str], folder: Path, problems: list[str]) -> None:
    folder.mkdir(parents=True)
    meta = system_meta(spec.label, runs, user_meta, fmt, problems)
    header = (f"# DCASE Task 4 system meta information for {spec.label}\n"
              f"# written by atst-sed package ({fmt}); run facts from manifest.json, the rest from META.yaml\n")
    atomic_write_text(folder / meta_name(spec.label),
                      header + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True, width=100))
    if fmt == "dcase2022":
        run = runs[0]
        source = run.events_file()
        if source is None:
            problems.append(f"{run.eval_dir}: no evaluation-set detections (events.tsv or events.csv); "
                            f"run: {detect_command(run)} (or give --eval-audio EVAL_AUDIO)")
            return
        try:
            events = _load_events(run, source, classes)
        except InputError as err:
            problems.append(str(err))
            return
        write_events_tsv(folder / output_tsv_name(spec.label), events)
        return
    for k, run in enumerate(runs, 1):
        scores = run.scores_dir()
        if scores is None:
            problems.append(f"{run.eval_dir / 'scores'}: no evaluation-set score files (*.tsv); "
                            f"run: {detect_command(run)} (or give --eval-audio EVAL_AUDIO)")
            continue
        _copy_scores(scores, folder / run_dir_name(spec.label, k))
        raw = run.scores_dir(unprocessed=True)
        if raw is not None:
            _copy_scores(raw, folder / run_dir_name(spec.label, k, unprocessed=True))


#: Meta fields no run can know: a package lacking one is fixed in META.yaml.
HUMAN_FIELDS = ("submission.name", "submission.abbreviation", "submission.authors")


def _where_to_give(problem: str, meta: str | PathLike[str]) -> str:
    """A staged meta file's "missing required field" problem for a field of :data:`HUMAN_FIELDS`,
    with where to give it (the user's ``meta``); other problems as they are."""
    if any(f"missing required field {field} " in problem for field in HUMAN_FIELDS):
        return f"{problem}: give it in {meta}"
    return problem


def _zip_folder(folder: Path, target: Path) -> None:
    """Zip ``folder``'s files (sorted, fixed time stamps) with names relative to it."""
    with open_output(target) as handle, zipfile.ZipFile(handle, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(path.relative_to(folder).as_posix(), date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())


# --------------------------------------------------------------------------------------- build
def build_package(
    systems: Sequence[SystemSpec],
    report: str | PathLike[str],
    meta: str | PathLike[str],
    output: str | PathLike[str],
    fmt: str = "dcase2022",
    classes: Sequence[str] = DESED_CLASSES,
    expected_clips: int | None = None,
    eval_audio: str | PathLike[str] | None = None,
) -> ValidationReport:
    """Write the submission zip ``output``; returns the (clean) validation report of the zip.

    Raises :class:`SubmissionError` listing every problem (inputs, meta fields, package checks);
    nothing is written then. ``expected_clips``: evaluation clips each output must cover.
    ``eval_audio``: a folder of evaluation audio; runs without ``RUN_DIR/eval`` outputs get them
    from ``atst-sed detect`` with their last stage's best checkpoint (written into the run).
    """
    if fmt not in FORMATS:
        raise SubmissionError([f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}"])
    output = Path(output)
    resolve_output(output)  # a folder or socket is refused now, before any work
    problems: list[str] = []
    if not systems:
        problems.append("no system given (--system LABEL --runs RUN_DIR …)")
    if len(systems) > MAX_SYSTEMS:
        problems.append(f"{len(systems)} systems given; at most {MAX_SYSTEMS} per package")
    labels = [s.label for s in systems]
    for label in sorted({x for x in labels if labels.count(x) > 1}):
        problems.append(f"system label {label!r} given more than once")
    for label in labels:
        if not SAFE_NAME.match(label) or label in (".", ".."):
            problems.append(f"system label {label!r} is not a folder name (expected Lastname_INST_task4_N)")
    need = 1 if fmt == "dcase2022" else N_RUNS
    for spec in systems:
        if len(spec.runs) != need:
            what = ("one run folder per system" if need == 1
                    else f"{N_RUNS} run folders per system (independent training runs)")
            problems.append(f"{spec.label}: {len(spec.runs)} run folder(s) given; {fmt} takes {what}")
        for given in repeated_folders(spec.runs):
            problems.append(f"{spec.label}: one run folder is given {len(given)} times ({', '.join(given)}); "
                            "a system's runs must be independent trainings")
    report = Path(report)
    if not report.is_file():
        problems.append(f"{report}: technical report not found")
    elif report.read_bytes()[:5] != b"%PDF-":
        problems.append(f"{report}: not a PDF file (no %PDF- header)")
    user_meta: dict[str, Any] = {}
    try:
        user_meta = read_yaml(meta)
    except InputError as err:
        problems.append(str(err))
    for label in sorted(set((user_meta.get("systems") or {})) - set(labels)):
        problems.append(f"{meta}: systems.{label} matches no --system label ({', '.join(labels)})")
    runs: dict[str, list[RunFolder]] = {}
    for spec in systems:
        infos = []
        for path in spec.runs:
            try:
                infos.append(read_run(path))
            except InputError as err:
                problems.append(str(err))
        runs[spec.label] = infos
    if eval_audio is not None:
        if not Path(eval_audio).exists():
            problems.append(f"{eval_audio}: evaluation audio not found")
        else:
            for infos in runs.values():
                for info in infos:
                    _run_detection(info, Path(eval_audio), fmt, problems)

    tmp = Path(tempfile.mkdtemp(prefix="atst-sed-package-"))
    try:
        stage = tmp / "package"
        task = stage / TASK_DIR
        task.mkdir(parents=True)
        for spec in systems:
            folder = task / spec.label
            usable = SAFE_NAME.match(spec.label) and spec.label not in (".", "..") and not folder.exists()
            if usable and runs[spec.label] and len(runs[spec.label]) == len(spec.runs):
                _stage_system(spec, runs[spec.label], user_meta, fmt, classes, folder, problems)
        if report.is_file() and report.read_bytes()[:5] == b"%PDF-" and systems:
            first = next((s.label for s in systems if LABEL_PATTERN.match(s.label)), None)
            copy_file(report, task / (report_name(first) if first else report.name))
        staged = validate_package(stage, fmt=fmt, classes=classes, expected_clips=expected_clips)
        # Outputs or the report left out of the staging were already explained above (with the
        # command that makes them); the validator's "missing …" lines would only repeat that.
        explained = ("missing run", "no system output", "missing system output", "no technical report")
        problems += [_where_to_give(p, meta) for p in staged.problems
                     if not (problems and any(e in p for e in explained))]
        if problems:
            raise SubmissionError(problems)
        zipped = tmp / "submission.zip"
        _zip_folder(stage, zipped)
        final = validate_package(zipped, fmt=fmt, classes=classes, expected_clips=expected_clips)
        if not final.ok:  # defensive: the zip must read back exactly as staged
            raise SubmissionError(final.problems)
        copy_file(zipped, output)
        final.source = str(output)
        log.info("wrote %s (%d system(s), %s)", output, len(systems), fmt)
        return final
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
