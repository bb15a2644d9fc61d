"""One evaluation of predictions on disk — what ``atst-sed evaluate`` and :func:`atst_sed.evaluate` run.

The predictions path decides the evaluation (:func:`~atst_sed.evaluation.inputs.prediction_kind`):
a folder of operating points (PSDS with psds_eval + F1), a folder of score files (also threshold-free
PSDS with sed_scores_eval) or one event table (F1 only: a DCASE TSV or ``atst-sed detect``'s CSV).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from os import PathLike
from typing import Any

from atst_sed.errors import AtstSedError
from atst_sed.evaluation.inputs import (
    load_event_table,
    load_operating_points,
    load_scores,
    operating_point_files,
    prediction_kind,
)
from atst_sed.evaluation.metrics import evaluate_event_table, evaluate_operating_points, evaluate_scores
from atst_sed.events import read_durations_tsv

log = logging.getLogger(__name__)

#: F1 decision threshold when none is given.
DEFAULT_THRESHOLD = 0.5


def evaluate_files(
    predictions: str | PathLike[str],
    ground_truth: str | PathLike[str],
    durations: str | PathLike[str],
    classes: Sequence[str] | None = None,
    threshold: float | None = None,
    exclude_missing: bool = False,
    n_jobs: int | None = None,
    plot_dir: str | PathLike[str] | None = None,
    alpha_st: float | None = None,
) -> dict[str, Any]:
    """Score ``predictions`` against a strong ``ground_truth`` TSV (``filename onset offset
    event_label``, seconds) with clip ``durations`` (TSV ``filename duration``).

    Args:
        predictions: a folder of ``predictions_th_<t>.tsv`` files, a folder of score files
            ``<clip>.tsv``, or one event table (TSV, or the CSV of ``atst-sed detect``).
        classes: the classes scored (default: those of the ground truth).
        threshold: decision threshold of the F1 scores (default 0.5; operating points: the file
            with the nearest threshold, named in the log and in ``f1_operating_point``).
        exclude_missing: leave ground-truth clips without any prediction out (default: they count
            as nothing detected).
        n_jobs: worker processes (default: CPUs).
        plot_dir: where to write PSD-ROC PNGs (folders of operating points or score files).
        alpha_st: α_st of both PSDS scenarios (default DCASE's 1; AudioSet-strong as the ATST papers
            score it: 0).

    Returns:
        The metrics as a JSON-ready dict: ``kind`` (``operating_points`` / ``scores`` / ``events``),
        the input paths, ``psds1`` / ``psds2`` (when the predictions allow them), F1 scores,
        ``n_clips_missing``, … (what ``atst-sed evaluate --json`` writes).

    Raises:
        AtstSedError: unusable inputs (one line naming the file and the problem).
    """
    durations_by_clip = read_durations_tsv(durations)
    classes = None if classes is None else list(classes)
    truth = load_event_table(ground_truth, classes, durations_by_clip, "ground truth")
    if classes is None:
        classes = sorted(set(truth["event_label"].dropna()))
        if not classes:
            raise AtstSedError(f"{ground_truth}: the ground truth has no event")
    kind = prediction_kind(predictions)
    given, threshold = threshold, DEFAULT_THRESHOLD if threshold is None else threshold
    plots = None if plot_dir is None else str(plot_dir)
    try:
        if kind == "operating_points":
            ops = load_operating_points(predictions, classes, durations_by_clip)
            clips = set().union(*(set(df["filename"]) for df in ops.values())) if exclude_missing else None
            result = evaluate_operating_points(ops, truth, durations_by_clip, classes, threshold=threshold,
                                               clips=clips, n_jobs=n_jobs, plot_dir=plots, alpha_st=alpha_st)
        elif kind == "scores":
            scores, _ = load_scores(predictions, classes, durations_by_clip)
            result = evaluate_scores(scores, truth, durations_by_clip, classes, threshold=threshold,
                                     n_jobs=n_jobs, plot_dir=plots, alpha_st=alpha_st)
        else:
            table = load_event_table(predictions, classes, durations_by_clip, "predictions")
            clips = set(table["filename"]) if exclude_missing else None
            result = evaluate_event_table(table, truth, durations_by_clip, classes, clips=clips)
            if plots:
                log.warning("PSD-ROC curves need operating points or score files; none written for one event table")
    except ValueError as err:  # the libraries' own refusals, as one line
        raise AtstSedError(f"{predictions}: {err}") from None
    result.update(_operating_point(kind, predictions, threshold, given, result))
    if result["n_clips_missing"]:
        log.warning(
            "%d ground-truth clip(s) have no prediction (%s), e.g. %s", result["n_clips_missing"],
            "left out" if result.get("missing_clips_policy") == "excluded" else "counted as nothing detected",
            ", ".join(result["missing_clips"][:3]),
        )
    return {"kind": kind, "ground_truth": str(ground_truth), "durations": str(durations),
            "predictions": str(predictions), **result}


def _operating_point(kind: str, predictions: str | PathLike[str], threshold: float, given: float | None,
                     result: dict[str, Any]) -> dict[str, Any]:
    """Which decision threshold the F1 scores used, for the JSON, said in one log line when it is not
    the one asked for: ``f1_threshold_requested`` and, for operating points, ``f1_operating_point``
    (the file whose threshold is the nearest)."""
    if kind == "operating_points":
        used = result["f1_threshold"]
        path = operating_point_files(predictions)[used]
        if used != threshold:
            log.info("F1 at threshold %g: %s is the operating point nearest to %s%g", used, path.name,
                     "--threshold " if given is not None else "the default ", threshold)
        return {"f1_threshold_requested": threshold, "f1_operating_point": str(path)}
    if kind == "events" and given is not None:
        log.info("--threshold %g does not apply to one event table: it is scored as it is", given)
    return {"f1_threshold_requested": threshold} if kind == "scores" else {}


__all__ = ["DEFAULT_THRESHOLD", "evaluate_files"]
