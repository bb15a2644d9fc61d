"""Evaluation: PSDS (psds_eval, sed_scores_eval), F1 (sed_eval, psds_eval), score files, plots.

Thin wrappers: every metric value comes from the reference libraries. Durations are seconds,
eFPR is per hour. See :func:`evaluate_operating_points`, :func:`evaluate_scores`,
:func:`evaluate_event_table` for whole evaluations, and :func:`evaluate_files` for predictions on
disk as ``atst-sed evaluate`` reads them.
"""

from atst_sed.decoding import DCASE2022_THRESHOLDS, scores_to_operating_points
from atst_sed.evaluation.metrics import (
    canonical_events,
    evaluate_event_table,
    evaluate_operating_points,
    evaluate_scores,
    nearest_threshold,
)
from atst_sed.evaluation.files import evaluate_files
from atst_sed.evaluation.f1 import event_based_f1, intersection_f1, segment_based_f1
from atst_sed.evaluation.plots import plot_psd_roc
from atst_sed.evaluation.psds import (
    SCENARIOS,
    PsdsResult,
    PsdsScenario,
    psds_from_operating_points,
    threshold_free_psds,
)
from atst_sed.score_files import read_score_files, score_dataframe, write_score_files

__all__ = [
    "DCASE2022_THRESHOLDS",
    "SCENARIOS",
    "PsdsResult",
    "PsdsScenario",
    "canonical_events",
    "evaluate_event_table",
    "evaluate_files",
    "evaluate_operating_points",
    "evaluate_scores",
    "event_based_f1",
    "intersection_f1",
    "nearest_threshold",
    "plot_psd_roc",
    "psds_from_operating_points",
    "read_score_files",
    "score_dataframe",
    "scores_to_operating_points",
    "segment_based_f1",
    "threshold_free_psds",
    "write_score_files",
]
