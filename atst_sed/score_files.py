"""Per-clip frame score files in sed_scores_eval's format: write, parse and check, read.

A score file ``<clip_id>.tsv`` has the columns ``onset offset <class_1> ... <class_C>``: one row per
frame, ``onset``/``offset`` in seconds, consecutive frames touching. Clip ids are file names
without directory and audio extension (``Y1_0.000_10.000.wav`` -> ``Y1_0.000_10.000``), as
sed_scores_eval and the DCASE baselines use them; ``atst-sed detect`` names the score file of a
file found in a sub-folder with :func:`score_file_id`. Decoding score tables into events is
:func:`atst_sed.decoding.scores_to_operating_points`.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd

from atst_sed.errors import InputError
from atst_sed.events import clip_id, repeated_columns
from atst_sed.fileio import atomic_write_text

__all__ = [
    "parse_score_table",
    "read_score_files",
    "score_dataframe",
    "score_file_id",
    "write_score_files",
]


def score_dataframe(
    scores: np.ndarray, classes: Sequence[str], frame_seconds: float, offset_seconds: float = 0.0,
) -> pd.DataFrame:
    """sed_scores_eval score DataFrame from a (T, C) array of frame scores.

    Frame ``t`` spans ``[offset + t * frame_seconds, offset + (t + 1) * frame_seconds)`` seconds
    (integer frame index times the frame length: no accumulated float error).
    """
    from sed_scores_eval.base_modules.scores import create_score_dataframe

    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] != len(classes):
        raise ValueError(f"scores must be (T, {len(classes)}), got {scores.shape}")
    if scores.shape[0] == 0:
        raise ValueError("scores have no frames")
    timestamps = offset_seconds + np.arange(scores.shape[0] + 1) * frame_seconds
    return create_score_dataframe(scores, np.round(timestamps, 9), list(classes))


def write_score_files(
    directory: str | PathLike[str],
    scores: Mapping[str, np.ndarray],
    classes: Sequence[str],
    frame_seconds: float,
    offset_seconds: Mapping[str, float] | None = None,
) -> list[Path]:
    """Write one sed_scores_eval TSV per clip, ``<directory>/<clip_id>.tsv`` (each atomically).

    Args:
        directory: output folder (created).
        scores: ``{filename or clip id: (T, C) scores}``; extensions are stripped for file names.
        classes: the C class names (column order).
        frame_seconds: frame length in seconds (a model's ``grid.frame_seconds``).
        offset_seconds: optional start time (s) of frame 0 per clip (default 0).

    Returns:
        The written paths, in the order of ``scores``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, values in scores.items():
        start = 0.0 if offset_seconds is None else float(offset_seconds.get(name, 0.0))
        frame = score_dataframe(values, classes, frame_seconds, start)
        buffer = io.StringIO()
        frame.to_csv(buffer, sep="\t", index=False)
        path = directory / f"{clip_id(name)}.tsv"
        atomic_write_text(path, buffer.getvalue())
        written.append(path)
    return written


def score_file_id(filename: str) -> str:
    """Clip id of a score file: the file name without extension (sed_scores_eval convention);
    sub-folders of an input folder are joined with ``__`` so ids stay flat file names."""
    p = Path(filename)
    return str(p.with_suffix("")).replace(os.sep, "__").replace("/", "__")


def _cell(value: object) -> str:
    """A table cell for a message: ``nan``, ``inf``, ``'text'`` (never ``np.float64(nan)``)."""
    return repr(float(value)) if isinstance(value, (float, np.floating)) else repr(str(value))


def parse_score_table(data: bytes, source: str | PathLike[str]) -> pd.DataFrame:
    """Parse and check one score file's bytes (``source`` names it in errors).

    Checks: a header ``onset offset <class>...`` without repeated names, at least one frame,
    every cell a finite number, every frame longer than zero and starting where the previous one
    ends (so times increase), and sed_scores_eval's own format check.

    Returns:
        DataFrame[onset, offset, classes...] of float64.

    Raises:
        InputError: naming ``source`` and, where known, the 1-based line (header = 1).
    """
    first_line = data.split(b"\n", 1)[0].decode("utf-8", errors="replace").rstrip("\r")
    repeated = repeated_columns(first_line.split("\t"))
    if repeated:
        raise InputError(source, f"column name {repeated[0]!r} appears more than once in the header",
                         line=1)
    try:
        frame = pd.read_csv(io.BytesIO(data), sep="\t", float_precision="round_trip")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(source, f"not a readable score table ({str(err).strip().splitlines()[0]})") from None
    if list(frame.columns[:2]) != ["onset", "offset"] or frame.shape[1] < 3:
        raise InputError(source, "score files need the header 'onset offset <class>...' "
                         f"(found {' '.join(map(str, frame.columns))})", line=1)
    if frame.empty:
        raise InputError(source, "no frames", line=2)
    if all(pd.api.types.is_numeric_dtype(t) for t in frame.dtypes):
        numeric = frame.to_numpy(float)
    else:  # some cell is not a number: find it
        numeric = frame.apply(pd.to_numeric, errors="coerce").to_numpy(float)
    bad = ~np.isfinite(numeric)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise InputError(source, f"column {frame.columns[col]!r}: value {_cell(frame.iat[row, col])} "
                         "is not a finite number", line=int(row) + 2)
    if not frame.dtypes.eq(float).all():  # e.g. integer columns ("0", "1")
        frame = pd.DataFrame(numeric, columns=frame.columns)
    onset, offset = numeric[:, 0], numeric[:, 1]
    short = np.flatnonzero(offset <= onset)
    if short.size:
        i = int(short[0])
        raise InputError(source, f"frame offset {offset[i]:g} s is not after its onset {onset[i]:g} s "
                         "(times must increase)", line=i + 2)
    gap = np.flatnonzero(onset[1:] != offset[:-1])
    if gap.size:
        i = int(gap[0]) + 1
        raise InputError(source, f"frame onset {onset[i]:g} s differs from the previous frame's offset "
                         f"{offset[i - 1]:g} s (frames must follow each other)", line=i + 2)
    from sed_scores_eval.base_modules.scores import validate_score_dataframe

    try:
        validate_score_dataframe(frame)
    except (ValueError, AssertionError) as err:
        raise InputError(source, str(err)) from None
    return frame


def read_score_files(directory: str | PathLike[str]) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """Read a folder of sed_scores_eval score TSVs, each checked by :func:`parse_score_table`.

    Returns:
        (``{clip_id: DataFrame[onset, offset, classes...]}`` sorted by id, class names).

    Raises:
        InputError: no score files, a malformed file (named with its line where known), or files
            whose class columns differ.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(directory, "not a folder of score files")
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix == ".tsv")
    if not files:
        raise InputError(directory, "no score files (*.tsv) in the folder")
    out: dict[str, pd.DataFrame] = {}
    classes: list[str] | None = None
    for path in files:
        frame = parse_score_table(path.read_bytes(), path)
        file_classes = [str(c) for c in frame.columns[2:]]
        if classes is None:
            classes = file_classes
        elif file_classes != classes:
            raise InputError(path, f"class columns {file_classes} differ from those of "
                             f"{files[0].name} ({classes})", line=1)
        out[path.stem] = frame
    assert classes is not None
    return out, classes
