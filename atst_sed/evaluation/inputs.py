"""Reading what ``atst-sed evaluate`` accepts as ground truth and predictions, with the input checks.

PATH kinds:
* ``operating_points``: a folder of ``predictions_th_<threshold>.tsv`` event tables (DCASE 2022);
* ``scores``: a folder of sed_scores_eval score files (``<clip_id>.tsv`` with
  ``onset offset <classes...>``);
* ``events``: one event table (F1 only): a DCASE TSV, or the CSV that ``atst-sed detect`` writes.

The rule for every input (:func:`atst_sed.events.check_event_tables`): score exactly what the
reference libraries score. Tables are read as written: events that run past their clip's end
(padded pipelines — the DCASE baseline, audiossl, ATST-SED — write them for every clip shorter than
10 s) and exact duplicates are kept and reported once with a count; what psds_eval itself refuses
(overlapping events of one class) is an error naming the file. The test stage of ``atst-sed train``
treats its ground truth the same way.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path

import pandas as pd

from atst_sed.errors import InputError
from atst_sed.events import check_event_tables, clip_id, lookup_duration, read_strong_tsv
from atst_sed.score_files import read_score_files

__all__ = [
    "OP_FILE_PATTERN",
    "event_table_separator",
    "load_event_table",
    "load_operating_points",
    "load_scores",
    "operating_point_files",
    "prediction_kind",
]

log = logging.getLogger(__name__)

#: ``predictions_th_0.49.tsv`` (DESED_task's op-point file names).
OP_FILE_PATTERN = re.compile(r"^predictions_th_(\d+(?:\.\d+)?)\.tsv$")


def prediction_kind(path: str | PathLike[str]) -> str:
    """"operating_points" | "scores" | "events" for a predictions PATH (checks it exists)."""
    path = Path(path)
    if path.is_file():
        return "events"
    if not path.is_dir():
        raise InputError(path, "predictions path not found")
    tsvs = [p for p in path.iterdir() if p.is_file() and p.suffix == ".tsv"]
    if any(OP_FILE_PATTERN.match(p.name) for p in tsvs):
        return "operating_points"
    if not tsvs:
        raise InputError(path, "no .tsv files: expected predictions_th_<threshold>.tsv files or "
                         "sed_scores_eval score files")
    first = sorted(tsvs)[0]
    with first.open(encoding="utf-8", errors="replace") as handle:
        header = handle.readline().rstrip("\n").split("\t")
    if header[:2] == ["onset", "offset"]:
        return "scores"
    raise InputError(first, f"neither a predictions_th_<threshold>.tsv file nor a score file "
                     f"(header {' '.join(header)!r}, expected 'onset offset <classes>')", line=1)


def event_table_separator(path: str | PathLike[str]) -> str:
    """``","`` when the header line is comma-separated (``atst-sed detect``'s CSV), else ``"\t"``.

    Decided by the header, not the file name: DESED headers hold tabs, detect's holds commas.
    """
    try:
        with Path(path).open(encoding="utf-8", errors="replace") as handle:
            header = handle.readline()
    except OSError:
        return "\t"  # the reader reports the problem with the file
    return "," if "\t" not in header and "," in header else "\t"


def load_event_table(path: str | PathLike[str], classes: Sequence[str] | None,
                     durations: Mapping[str, float], what: str) -> pd.DataFrame:
    """One event table (ground truth or predictions: a TSV, or detect's CSV), read as written and
    checked (see :func:`check_event_tables`)."""
    table = read_strong_tsv(path, classes=classes, durations=durations, sep=event_table_separator(path))
    check_event_tables({Path(path): table}, durations, what)
    return table


def operating_point_files(directory: str | PathLike[str]) -> dict[float, Path]:
    """``{threshold: path}`` of the ``predictions_th_<threshold>.tsv`` files in ``directory``, by
    threshold; :class:`InputError` when there is none or a threshold is outside [0, 1]."""
    directory = Path(directory)
    found: dict[float, Path] = {}
    for path in sorted(p for p in directory.iterdir() if OP_FILE_PATTERN.match(p.name)):
        threshold = float(OP_FILE_PATTERN.match(path.name).group(1))  # type: ignore[union-attr]
        if not 0.0 <= threshold <= 1.0:
            raise InputError(path, f"threshold {threshold:g} in the file name is not in [0, 1]")
        found[threshold] = path
    if not found:
        raise InputError(directory, "no predictions_th_<threshold>.tsv files")
    return dict(sorted(found.items()))


def load_operating_points(
    directory: str | PathLike[str], classes: Sequence[str] | None,
    durations: Mapping[str, float],
) -> dict[float, pd.DataFrame]:
    """``{threshold: events}`` from ``predictions_th_*.tsv`` files, read as written and checked
    together (one warning per finding over all files, see :func:`check_event_tables`)."""
    directory = Path(directory)
    tables: dict[Path, pd.DataFrame] = {}
    out: dict[float, pd.DataFrame] = {}
    for threshold, path in operating_point_files(directory).items():
        out[threshold] = tables[path] = read_strong_tsv(path, classes=classes, durations=durations)
    check_event_tables(tables, durations, f"operating points {directory}")
    return out


def load_scores(
    directory: str | PathLike[str], classes: Sequence[str] | None,
    durations: Mapping[str, float],
) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Score files, checked: class columns known, every clip known to ``durations``.

    Score tracks that run more than one frame past their clip's end (padded pipelines) are kept
    as written and reported once with a count, as events are.
    """
    scores, score_classes = read_score_files(directory)
    if classes is not None:
        unknown = [c for c in score_classes if c not in set(classes)]
        if unknown:
            first = Path(directory) / f"{next(iter(scores))}.tsv"
            raise InputError(first, f"unknown class column(s) {', '.join(unknown)} "
                             f"(known: {', '.join(classes)})", line=1)
    past_end: list[tuple[str, float, float]] = []
    for name, frame in scores.items():
        duration = lookup_duration(durations, name)
        if duration is None:
            raise InputError(Path(directory) / f"{name}.tsv",
                             f"clip {clip_id(name)!r} is not in the durations table")
        end = float(frame["offset"].iat[-1])
        if end > duration + float(frame["offset"].iat[-1] - frame["onset"].iat[-1]):
            past_end.append((name, end, duration))
    if past_end:
        name, end, duration = past_end[0]
        log.warning("score files %s: %d of %d run past their clip's end by more than one frame, "
                    "e.g. %s.tsv to %g s in a %g s clip; scored as written, as sed_scores_eval "
                    "does", directory, len(past_end), len(scores), name, end, duration)
    return scores, score_classes
