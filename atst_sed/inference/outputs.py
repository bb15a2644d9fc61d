"""Detection outputs: the events CSV and per-file score files (sed_scores_eval format), written atomically."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from atst_sed.fileio import atomic_write_text
from atst_sed.features import TOKEN_SECONDS
from atst_sed.inference.postprocess import SCORED_EVENT_COLUMNS


def events_csv_text(events: pd.DataFrame) -> str:
    """CSV text ``filename,onset,offset,event_label,score`` (3 decimals) sorted by filename, onset, label."""
    df = events.reindex(columns=SCORED_EVENT_COLUMNS)
    df = df.sort_values(["filename", "onset", "event_label"], kind="stable")
    buf = io.StringIO()
    df.to_csv(buf, index=False, float_format="%.3f", lineterminator="\n")
    return buf.getvalue()


def write_events_csv(target: str | os.PathLike[str], events: pd.DataFrame) -> None:
    """Write the events CSV to the output ``target`` (``-`` = standard output; :mod:`atst_sed.fileio`)."""
    atomic_write_text(target, events_csv_text(events))


def score_file_id(filename: str) -> str:
    """Clip id of a score file: the file name without extension (sed_scores_eval convention);
    sub-folders of an input folder are joined with ``__`` so ids stay flat file names."""
    p = Path(filename)
    return str(p.with_suffix("")).replace(os.sep, "__").replace("/", "__")


def write_scores(directory: str | os.PathLike[str], scores: dict[str, np.ndarray], classes: Sequence[str]) -> None:
    """Per-clip score TSVs ``onset offset <class…>`` (one row per 40 ms frame) readable by
    ``sed_scores_eval.io.read_sed_scores`` (through :func:`atst_sed.evaluation.write_score_files`)."""
    from atst_sed.evaluation import write_score_files

    write_score_files(directory, scores, list(classes), frame_seconds=TOKEN_SECONDS)
