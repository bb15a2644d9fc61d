"""Reading what ``atst-sed evaluate`` accepts as predictions, with the input checks.

PATH kinds:
* ``operating_points``: a folder of ``predictions_th_<threshold>.tsv`` event tables (DCASE 2022);
* ``scores``: a folder of sed_scores_eval score files (``<clip_id>.tsv`` with
  ``onset offset <classes...>``);
* ``events``: one event TSV (F1 only).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path

import pandas as pd

from atst_sed.errors import InputError
from atst_sed.evaluation.scores import read_score_files
from atst_sed.events import clip_id, lookup_duration, read_strong_tsv

__all__ = ["OP_FILE_PATTERN", "load_operating_points", "load_scores", "prediction_kind"]

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


def load_operating_points(
    directory: str | PathLike[str], classes: Sequence[str] | None,
    durations: Mapping[str, float] | None,
) -> dict[float, pd.DataFrame]:
    """``{threshold: events}`` from ``predictions_th_*.tsv`` files, each checked like a strong TSV."""
    directory = Path(directory)
    files = sorted(p for p in directory.iterdir() if OP_FILE_PATTERN.match(p.name))
    if not files:
        raise InputError(directory, "no predictions_th_<threshold>.tsv files")
    out: dict[float, pd.DataFrame] = {}
    for path in files:
        threshold = float(OP_FILE_PATTERN.match(path.name).group(1))  # type: ignore[union-attr]
        if not 0.0 <= threshold <= 1.0:
            raise InputError(path, f"threshold {threshold:g} in the file name is not in [0, 1]")
        out[threshold] = read_strong_tsv(path, classes=classes, durations=durations)
    return out


def load_scores(
    directory: str | PathLike[str], classes: Sequence[str] | None,
    durations: Mapping[str, float] | None,
) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Score files, checked: class columns known, every clip known to ``durations``."""
    scores, score_classes = read_score_files(directory)
    if classes is not None:
        unknown = [c for c in score_classes if c not in set(classes)]
        if unknown:
            first = Path(directory) / f"{next(iter(scores))}.tsv"
            raise InputError(first, f"unknown class column(s) {', '.join(unknown)} "
                             f"(known: {', '.join(classes)})", line=1)
    if durations is not None:
        for name in scores:
            if lookup_duration(durations, name) is None:
                raise InputError(Path(directory) / f"{name}.tsv",
                                 f"clip {clip_id(name)!r} is not in the durations table")
    return scores, score_classes
