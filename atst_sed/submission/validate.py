"""Validate a DCASE Task 4 submission package (zip or folder) and report *every* problem.

Mirrors the organisers' checks (``shared/reference/dcase22.md`` §4): system label format and
label = folder name, authors with exactly one corresponding author, numeric sampling rate and
integer parameter count, no "baseline" in label / name / abbreviation, numeric results, the
expected output files per run (three runs in dcase2023) with every class column, a PDF report,
parseable YAML — plus safe member names (no absolute paths, ``..``, back-slashes, links or odd
characters). Unlike the official scripts, which stop at the first failure, every problem is
collected. Zip members are read in place; nothing is extracted.
"""

from __future__ import annotations

import io
import logging
import stat
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from atst_sed.errors import InputError
from atst_sed.events import EVENT_COLUMNS, repeated_columns
from atst_sed.score_files import parse_score_table
from atst_sed.submission.layout import (
    DESED_CLASSES,
    FORMATS,
    LABEL_PATTERN,
    MAX_SYSTEMS,
    N_RUNS,
    RESULT_KEYS,
    SAFE_NAME,
    TASK_DIR,
    meta_name,
    output_tsv_name,
    run_dir_name,
)

__all__ = ["ValidationReport", "validate_package", "validate_meta"]

log = logging.getLogger(__name__)

_COMMON_FEATURES = ("mfcc", "log-mel energies", "log-mel amplitude", "spectrogram", "cqt", "raw waveform")


@dataclass
class ValidationReport:
    """Problems (the package would be rejected) and warnings (worth a look), one line each."""

    source: str
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    systems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def problem(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    def warn(self, where: str, message: str) -> None:
        self.warnings.append(f"{where}: {message}")


# ----------------------------------------------------------------------------------- package trees
class UnreadableMember(Exception):
    """A package member whose bytes cannot be read (corrupt zip data, I/O error)."""


class _Tree:
    """Read-only view of the package's files by relative POSIX path (zip members or files)."""

    names: list[str]

    def read(self, name: str) -> bytes:
        """The member's bytes; :class:`UnreadableMember` when they cannot be read."""
        raise NotImplementedError

    def close(self) -> None:
        pass


def _read(tree: _Tree, name: str, report: ValidationReport) -> bytes | None:
    """``tree.read(name)``, or None with one problem line when the member cannot be read."""
    try:
        return tree.read(name)
    except UnreadableMember as err:
        report.problem(name, str(err))
        return None


class _ZipTree(_Tree):
    def __init__(self, path: Path, report: ValidationReport):
        self._zip = zipfile.ZipFile(path)
        self.names = []
        seen: set[str] = set()
        for info in self._zip.infolist():
            name = info.filename
            if name in seen:
                report.problem(name, "duplicate zip member")
                continue
            seen.add(name)
            if (info.external_attr >> 16) and stat.S_ISLNK(info.external_attr >> 16):
                report.problem(name, "symbolic link in the zip (only plain files are allowed)")
                continue
            if _check_name(name.rstrip("/") if info.is_dir() else name, report) and not info.is_dir():
                self.names.append(name)

    def read(self, name: str) -> bytes:
        try:
            return self._zip.read(name)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError) as err:
            # corrupt deflate data, CRC mismatch, truncated archive, unknown compression, encryption
            detail = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise UnreadableMember(f"corrupt or unreadable zip member ({type(err).__name__}"
                                   f"{': ' + detail if detail else ''})") from None

    def close(self) -> None:
        self._zip.close()


class _DirTree(_Tree):
    def __init__(self, root: Path, report: ValidationReport, prefix: str = ""):
        # ``prefix``: given the ``task4`` folder itself, its files are named ``task4/…``.
        self._root = root
        self._prefix = prefix
        self.names = []
        for path in sorted(root.rglob("*")):
            name = prefix + path.relative_to(root).as_posix()
            if path.is_symlink():
                report.problem(name, "symbolic link in the package (only plain files are allowed)")
                continue
            if _check_name(name, report) and path.is_file():
                self.names.append(name)

    def _path(self, name: str) -> Path:
        return self._root / name[len(self._prefix):]

    def read(self, name: str) -> bytes:
        try:
            return self._path(name).read_bytes()
        except OSError as err:
            raise UnreadableMember(f"unreadable file ({err.strerror or type(err).__name__})") from None


def _check_name(name: str, report: ValidationReport) -> bool:
    """Record a problem for unsafe member names; True when the name is safe to use."""
    if not name:
        report.problem("<zip>", "member with an empty name")
        return False
    if "\\" in name:
        report.problem(name, "back-slash in a member name (use '/' separators)")
        return False
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        report.problem(name, "absolute path in the package (names must be relative)")
        return False
    parts = name.split("/")
    if ".." in parts:
        report.problem(name, "path traversal ('..') in a member name")
        return False
    bad = [p for p in parts if p in ("", ".") or not SAFE_NAME.match(p)]
    if bad:
        report.problem(name, f"unsafe name component {bad[0]!r} (allowed: letters, digits, '.', '_', '-')")
        return False
    return True


# ------------------------------------------------------------------------------------ meta checks
_MISSING = object()


def _get(data: Any, dotted: str) -> Any:
    node = data
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return _MISSING
        node = node[key]
    return node


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def _filled_str(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def validate_meta(meta: Any, label: str | None, fmt: str | None, report: ValidationReport, where: str) -> None:
    """Check one system's meta information (already parsed); ``label`` is the folder name."""
    if not isinstance(meta, dict):
        report.problem(where, "the meta file is not a YAML mapping (expected submission/system/results)")
        return

    def need(dotted: str, check, expect: str) -> Any:
        value = _get(meta, dotted)
        if value is _MISSING or value is None:
            report.problem(where, f"missing required field {dotted} ({expect})")
            return _MISSING
        if not check(value):
            report.problem(where, f"{dotted} must be {expect} (got {value!r})")
            return _MISSING
        return value

    # submission
    meta_label = need("submission.label", _filled_str, "the system label Lastname_INST_task4_N")
    if meta_label is not _MISSING:
        if not LABEL_PATTERN.match(meta_label):
            report.problem(where, f"submission.label {meta_label!r} is not of the form "
                                  "Lastname_INST_task4_N (N = 1..4)")
        if meta_label.split("_")[:2] in (["Lastname", "INST"], ["Cornell", "CMU"], ["Turpault", "INR"]):
            report.problem(where, f"submission.label {meta_label!r} is the template's example; use your own")
        if label is not None and meta_label != label:
            report.problem(where, f"submission.label {meta_label!r} differs from its folder name {label!r}")
    name = need("submission.name", _filled_str, "a non-empty string")
    abbreviation = need("submission.abbreviation", _filled_str, "a non-empty string (at most 10 characters)")
    if abbreviation is not _MISSING and len(abbreviation) > 10:
        report.warn(where, f"submission.abbreviation {abbreviation!r} is longer than 10 characters")
    for key, value in (("label", meta_label), ("name", name), ("abbreviation", abbreviation)):
        if value is not _MISSING and "baseline" in value.lower():
            report.problem(where, f"submission.{key} {value!r} contains 'baseline' "
                                  "(not allowed in label, name or abbreviation)")
    _check_authors(_get(meta, "submission.authors"), meta_label, report, where)

    # system
    need("system.description.input_sampling_rate", _is_number, "a number (Hz)")
    features = need(
        "system.description.acoustic_features",
        lambda v: _filled_str(v) or (isinstance(v, list) and v and all(_filled_str(x) for x in v)),
        "a string or a list of strings",
    )
    if features is not _MISSING:
        for feature in [features] if isinstance(features, str) else features:
            if feature.lower() not in _COMMON_FEATURES:
                report.warn(where, f"acoustic feature {feature!r} is not one of the common names "
                                   f"{list(_COMMON_FEATURES)}")
    need(
        "system.complexity.total_parameters",
        lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0,
        "a positive integer",
    )
    source = _get(meta, "system.source_code")
    if isinstance(source, str) and "baseline" in source.lower():
        report.problem(where, f"system.source_code {source!r} points at the baseline; give your own code or null")

    # results
    results = _get(meta, "results")
    if fmt in RESULT_KEYS:
        for dotted in RESULT_KEYS[fmt]:
            if _get(meta, dotted) in (_MISSING, None):
                report.problem(where, f"missing required field {dotted} (a number: development-set score)")
    if isinstance(results, dict):
        for dotted, value in _leaves(results, "results"):
            if value is not None and not _is_number(value):
                report.problem(where, f"{dotted} must be a number (got {value!r})")
            elif value is None and not (fmt in RESULT_KEYS and dotted in RESULT_KEYS[fmt]):
                report.problem(where, f"{dotted} is empty (give a number or remove the field)")
    elif results is not _MISSING and results is not None:
        report.problem(where, f"results must be a mapping (got {results!r})")


def _leaves(node: dict, prefix: str):
    for key, value in node.items():
        dotted = f"{prefix}.{key}"
        if isinstance(value, dict):
            yield from _leaves(value, dotted)
        else:
            yield dotted, value


def _check_authors(authors: Any, label: Any, report: ValidationReport, where: str) -> None:
    if authors is _MISSING or authors is None:
        report.problem(where, "missing required field submission.authors (a list with one corresponding author)")
        return
    if not isinstance(authors, list) or not authors:
        report.problem(where, "submission.authors must be a non-empty list of authors")
        return
    corresponding = []
    for i, author in enumerate(authors, 1):
        tag = f"submission.authors[{i}]"
        if not isinstance(author, dict):
            report.problem(where, f"{tag} must be a mapping with lastname, firstname, email, affiliation")
            continue
        for key in ("lastname", "firstname"):
            if not _filled_str(author.get(key)):
                report.problem(where, f"{tag} has no {key}")
        if author.get("affiliation") in (None, "", {}):
            report.problem(where, f"{tag} has no affiliation")
        if author.get("corresponding"):
            corresponding.append(author)
    if not corresponding:
        report.problem(where, "no corresponding author (set 'corresponding: true' on exactly one author)")
    elif len(corresponding) > 1:
        names = ", ".join(str(a.get("lastname")) for a in corresponding)
        report.problem(where, f"{len(corresponding)} corresponding authors ({names}); exactly one is required")
    else:
        author = corresponding[0]
        if not _filled_str(author.get("email")):
            report.problem(where, "the corresponding author has no email")
        if isinstance(label, str) and LABEL_PATTERN.match(label) and _filled_str(author.get("lastname")):
            if label.split("_")[0].lower() != author["lastname"].replace(" ", "").lower():
                report.warn(where, f"label {label!r} does not start with the corresponding author's "
                                   f"last name {author['lastname']!r}")


# ---------------------------------------------------------------------------------- output checks
def _check_events_tsv(tree: _Tree, name: str, classes: Sequence[str], expected_clips: int | None,
                      report: ValidationReport) -> None:
    data = _read(tree, name, report)
    if data is None:
        return
    repeated = repeated_columns(data.split(b"\n", 1)[0].decode("utf-8", "replace").rstrip("\r").split("\t"))
    if repeated:
        report.problem(name, f"line 1: column name {repeated[0]!r} appears more than once in the header")
        return
    try:
        table = pd.read_csv(io.BytesIO(data), sep="\t", dtype=str, keep_default_na=False,
                            quoting=3, skip_blank_lines=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        report.problem(name, f"not a readable tab-separated event table ({str(err).splitlines()[0]})")
        return
    missing = [c for c in EVENT_COLUMNS if c not in table.columns]
    if missing:
        found = " ".join(map(str, table.columns))
        report.problem(name, f"line 1: missing column(s) {', '.join(missing)} "
                             f"(expected header: {' '.join(EVENT_COLUMNS)}; found {found})")
        return
    table = table.apply(lambda col: col.fillna("").str.strip())
    lines = np.arange(len(table)) + 2  # file line numbers (header = 1), blank lines included
    blank = (table == "").all(axis=1).to_numpy()
    table, lines = table[~blank].reset_index(drop=True), lines[~blank]
    empty_event = (table["onset"] == "") & (table["offset"] == "") & (table["event_label"] == "")
    onset = pd.to_numeric(table["onset"], errors="coerce").to_numpy(float)
    offset = pd.to_numeric(table["offset"], errors="coerce").to_numpy(float)
    checks = [
        (table["filename"] == "", "empty filename"),
        (~empty_event & ~(np.isfinite(onset) & np.isfinite(offset)), "onset/offset is not a finite number"),
        (~empty_event & (onset < 0), "negative onset"),
        (~empty_event & (onset >= offset), "onset is not before offset"),
        (~empty_event & ~table["event_label"].isin(list(classes)), "unknown event_label"),
    ]
    for mask, message in checks:
        mask = np.asarray(mask, bool)
        if mask.any():
            first = int(np.flatnonzero(mask)[0])
            more = f" (and {int(mask.sum()) - 1} more rows)" if mask.sum() > 1 else ""
            detail = f" {table['event_label'].iloc[first]!r}" if "label" in message else ""
            report.problem(name, f"line {lines[first]}: {message}{detail}{more}")
    n_clips = table["filename"].replace("", np.nan).dropna().nunique()
    if n_clips == 0:
        report.problem(name, "no events and no clips listed")
    elif expected_clips is not None and n_clips > expected_clips:
        # Clips without detections may be absent, so only "more than the evaluation set" is wrong.
        report.problem(name, f"lists {n_clips} clips, more than the {expected_clips} evaluation clips")


#: Score-file content problems listed one by one per folder; further ones are counted.
MAX_LISTED_SCORE_PROBLEMS = 10


def _check_score_dir(tree: _Tree, prefix: str, classes: Sequence[str], report: ValidationReport) -> set[str] | None:
    """Check one ``*.output/`` folder of sed_scores_eval files, every file in full; returns its clip ids."""
    where = prefix.rstrip("/")
    entries = [n for n in tree.names if n.startswith(prefix)]
    if not entries:
        return None
    clips: set[str] = set()
    missing_by_class: dict[str, list[str]] = {}
    bad_header: list[str] = []
    content: list[tuple[str, str]] = []  # (member, problem) of files with a usable header
    for name in entries:
        rest = name[len(prefix):]
        if "/" in rest or not rest.endswith(".tsv"):
            report.problem(name, "unexpected entry (a score folder holds only <clip>.tsv files)")
            continue
        clips.add(rest[: -len(".tsv")])
        data = _read(tree, name, report)
        if data is None:
            continue
        header = data.split(b"\n", 1)[0].decode("utf-8", "replace").rstrip("\r").split("\t")
        if header[:2] != ["onset", "offset"]:
            bad_header.append(rest)
            continue
        present = set(header[2:])
        for cls in classes:
            if cls not in present:
                missing_by_class.setdefault(cls, []).append(rest)
        try:
            parse_score_table(data, name)
        except InputError as err:
            content.append((name, (f"line {err.line}: " if err.line else "") + err.problem))
    if bad_header:
        report.problem(where, f"{len(bad_header)} score file(s) do not start with the columns onset, offset "
                              f"(first: {bad_header[0]})")
    for cls, files in missing_by_class.items():
        report.problem(where, f"class column {cls!r} missing in {len(files)} of {len(clips)} score file(s) "
                              f"(first: {files[0]})")
    for name, problem in content[:MAX_LISTED_SCORE_PROBLEMS]:
        report.problem(name, f"not a valid sed_scores_eval score file: {problem}")
    if len(content) > MAX_LISTED_SCORE_PROBLEMS:
        report.problem(where, f"{len(content) - MAX_LISTED_SCORE_PROBLEMS} more score file(s) with problems")
    return clips


def _check_runs(tree: _Tree, sys_prefix: str, label: str, classes: Sequence[str], expected_clips: int | None,
                report: ValidationReport) -> None:
    clip_sets: dict[str, set[str]] = {}
    for run in range(1, N_RUNS + 1):
        prefix = f"{sys_prefix}{run_dir_name(label, run)}/"
        clips = _check_score_dir(tree, prefix, classes, report)
        if clips is None:
            report.problem(sys_prefix.rstrip("/"), f"missing run {run}: {run_dir_name(label, run)}/ "
                                                   f"(dcase2023 needs {N_RUNS} independent runs)")
            continue
        clip_sets[f"run{run}"] = clips
        unprocessed = f"{sys_prefix}{run_dir_name(label, run, unprocessed=True)}/"
        raw = _check_score_dir(tree, unprocessed, classes, report)
        if raw is not None and raw != clips:
            report.problem(unprocessed.rstrip("/"), f"holds {len(raw)} clips, differing from "
                                                    f"{run_dir_name(label, run)}/ ({len(clips)} clips)")
    _check_clip_counts(clip_sets, sys_prefix.rstrip("/"), expected_clips, report)


def _check_clip_counts(clip_sets: dict[str, set[str]], where: str, expected: int | None,
                       report: ValidationReport) -> None:
    for run, clips in clip_sets.items():
        if expected is not None and len(clips) != expected:
            report.problem(where, f"{run} holds {len(clips)} score files, expected {expected} "
                                  "(one per evaluation clip)")
    if len({frozenset(c) for c in clip_sets.values()}) > 1:
        counts = ", ".join(f"{run}: {len(c)}" for run, c in clip_sets.items())
        report.problem(where, f"the runs score different sets of clips ({counts} files)")


# --------------------------------------------------------------------------------------- package
def _find_root(names: Sequence[str]) -> str | None:
    """The ``…/task4/`` prefix: at the top, or inside one wrapping folder."""
    if any(n.startswith(f"{TASK_DIR}/") for n in names):
        return f"{TASK_DIR}/"
    tops = {n.split("/", 1)[0] for n in names if "/" in n}
    if len(tops) == 1:
        top = tops.pop()
        if any(n.startswith(f"{top}/{TASK_DIR}/") for n in names):
            return f"{top}/{TASK_DIR}/"
    return None


def validate_package(
    path: str | PathLike[str],
    fmt: str | None = None,
    classes: Sequence[str] = DESED_CLASSES,
    expected_clips: int | None = None,
) -> ValidationReport:
    """Validate a submission zip or folder; ``fmt`` None detects the format per system.

    ``expected_clips``: the number of evaluation clips every output must cover (None: only
    check that the runs agree). Returns a report with every problem and warning.
    """
    if fmt is not None and fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    path = Path(path)
    report = ValidationReport(str(path))
    if path.is_dir():
        has_task = (path / TASK_DIR).is_dir() or path.name != TASK_DIR
        tree: _Tree = _DirTree(path, report, prefix="" if has_task else f"{TASK_DIR}/")
    elif path.is_file() and zipfile.is_zipfile(path):
        try:
            tree = _ZipTree(path, report)
        except zipfile.BadZipFile as err:
            report.problem(str(path), f"unreadable zip file ({err})")
            return report
    elif path.exists():
        report.problem(str(path), "neither a zip file nor a folder")
        return report
    else:
        report.problem(str(path), "no such file or folder")
        return report
    try:
        _validate_tree(tree, fmt, classes, expected_clips, report)
    finally:
        tree.close()
    return report


def _validate_tree(tree: _Tree, fmt: str | None, classes: Sequence[str], expected_clips: int | None,
                   report: ValidationReport) -> None:
    root = _find_root(tree.names)
    if root is None:
        report.problem("<package>", f"no {TASK_DIR}/ folder at the top of the package "
                                    f"(expected {TASK_DIR}/<report>.pdf and {TASK_DIR}/<label>/…)")
        return
    for name in tree.names:
        if not name.startswith(root):
            report.warn(name, f"outside {root} (ignored by the organisers)")
    inside = [n[len(root):] for n in tree.names if n.startswith(root)]
    pdfs = [n for n in inside if "/" not in n and n.lower().endswith(".pdf")]
    if not pdfs:
        report.problem(root.rstrip("/"), "no technical report: put the PDF in this folder")
    for pdf in pdfs:
        data = _read(tree, root + pdf, report)
        if data is None:
            continue
        if not data[:5] == b"%PDF-":
            report.problem(root + pdf, "not a PDF file (no %PDF- header)")
        elif not pdf.endswith("_task4_technical_report.pdf"):
            report.warn(root + pdf, "report name should be Lastname_INST_task4_technical_report.pdf")
    for name in inside:
        if "/" not in name and not name.lower().endswith(".pdf"):
            report.warn(root + name, "unexpected file next to the system folders")
    systems = sorted({n.split("/", 1)[0] for n in inside if "/" in n})
    report.systems = systems
    if not systems:
        report.problem(root.rstrip("/"), "no system folder (expected <Lastname>_<INST>_task4_<N>/)")
    if len(systems) > MAX_SYSTEMS:
        report.problem(root.rstrip("/"), f"{len(systems)} systems; at most {MAX_SYSTEMS} are allowed per task")
    for label in systems:
        _validate_system(tree, root, label, fmt, classes, expected_clips, report)


def _validate_system(tree: _Tree, root: str, label: str, fmt: str | None, classes: Sequence[str],
                     expected_clips: int | None, report: ValidationReport) -> None:
    prefix = f"{root}{label}/"
    where = prefix.rstrip("/")
    entries = {n[len(prefix):] for n in tree.names if n.startswith(prefix)}
    if not LABEL_PATTERN.match(label):
        report.problem(where, f"folder name {label!r} is not a system label Lastname_INST_task4_N (N = 1..4)")
    if fmt is None:
        if output_tsv_name(label) in entries:
            fmt = "dcase2022"
        elif any(e.startswith(f"{label}_run") for e in entries):
            fmt = "dcase2023"
    meta_file = prefix + meta_name(label)
    if meta_name(label) not in entries:
        others = sorted(e for e in entries if e.endswith(".meta.yaml"))
        hint = f" (found {others[0]}: its name must match the folder)" if others else ""
        report.problem(where, f"missing meta file {meta_name(label)}{hint}")
    elif (meta_bytes := _read(tree, meta_file, report)) is not None:
        try:
            meta = yaml.safe_load(meta_bytes.decode("utf-8"))
        except UnicodeDecodeError:
            report.problem(meta_file, "not UTF-8 text")
        except yaml.YAMLError as err:
            mark = getattr(err, "problem_mark", None)
            line = f"line {mark.line + 1}: " if mark is not None else ""
            report.problem(meta_file, f"{line}invalid YAML ({getattr(err, 'problem', None) or err})")
        else:
            validate_meta(meta, label, fmt, report, meta_file)
    if fmt == "dcase2022":
        if output_tsv_name(label) not in entries:
            report.problem(where, f"missing system output {output_tsv_name(label)}")
        else:
            _check_events_tsv(tree, prefix + output_tsv_name(label), classes, expected_clips, report)
        known = {meta_name(label), output_tsv_name(label)}
    elif fmt == "dcase2023":
        _check_runs(tree, prefix, label, classes, expected_clips, report)
        known = {meta_name(label)}
        known |= {e for e in entries for r in range(1, N_RUNS + 1) for u in (False, True)
                  if e.startswith(run_dir_name(label, r, u) + "/")}
    else:
        report.problem(where, f"no system output: expected {output_tsv_name(label)} (dcase2022) or "
                              f"{run_dir_name(label, 1)}/ … (dcase2023)")
        return
    for entry in sorted(entries - known):
        report.warn(prefix + entry, "unexpected file in the system folder")
