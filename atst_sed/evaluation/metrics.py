"""Whole evaluations: PSDS1/PSDS2 and F1 from operating points, score files or one event table.

The metric code is the reference libraries' (see :mod:`.psds`, :mod:`.f1`); this module prepares
their inputs consistently and runs independent metrics in parallel processes:

* file names are reduced to clip ids (no directory, no audio extension) in every table, so
  ``X.wav`` and ``X`` match;
* only clips of the evaluated set count: by default every ground-truth clip; a clip with no
  prediction counts as "nothing detected" (DCASE 2022 convention) unless ``clips`` restricts the
  set (the CLI's ``--exclude-missing``); with score files, clips without a score file are always
  left out (sed_scores_eval scores only scored clips);
* predicted events on clips outside the evaluated set are dropped (logged).

All returned values are JSON-serialisable (floats, ints, strings, lists, dicts).
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from pathlib import Path

import pandas as pd

from atst_sed.decoding import DCASE2022_THRESHOLDS, scores_to_operating_points
from atst_sed.evaluation.f1 import _summary, intersection_f1, sed_eval_metrics
from atst_sed.evaluation.psds import (
    MAX_CROSS_TRIGGER_BYTES,
    SCENARIOS,
    PsdsResult,
    cross_trigger_bytes,
    psds_from_operating_points,
    scenarios,
    sed_scores_ground_truth,
    threshold_free_psds,
)
from atst_sed.events import clip_id

__all__ = [
    "canonical_events",
    "evaluate_event_table",
    "evaluate_operating_points",
    "evaluate_scores",
    "nearest_threshold",
]

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------- preparation
def canonical_events(df: pd.DataFrame) -> pd.DataFrame:
    """Copy of an event table with ``filename`` reduced to clip ids (4 standard columns)."""
    out = df[["filename", "onset", "offset", "event_label"]].copy()
    out["filename"] = out["filename"].map(clip_id)
    return out.reset_index(drop=True)


def _canonical_durations(durations: Mapping[str, float]) -> dict[str, float]:
    return {clip_id(k): float(v) for k, v in durations.items()}


def nearest_threshold(thresholds: Iterable[float], target: float) -> float:
    """The threshold closest to ``target`` (ties -> the lower one)."""
    values = sorted(float(t) for t in thresholds)
    if not values:
        raise ValueError("no operating points")
    return min(values, key=lambda t: (round(abs(t - target), 9), t))


class _Inputs:
    """Ground truth, durations and classes restricted to the evaluated clips (clip ids)."""

    def __init__(self, ground_truth: pd.DataFrame, durations: Mapping[str, float],
                 classes: Sequence[str] | None, clips: Iterable[str] | None):
        gt = canonical_events(ground_truth)
        dur = _canonical_durations(durations)
        gt_clips = list(dict.fromkeys(gt["filename"]))
        unknown = [c for c in gt_clips if c not in dur]
        if unknown:
            raise ValueError(f"{len(unknown)} ground-truth clip(s) have no duration, e.g. {unknown[0]}")
        if clips is None:
            evaluated = gt_clips
        else:
            wanted = {clip_id(c) for c in clips}
            evaluated = [c for c in gt_clips if c in wanted]
        self.missing = sorted(set(gt_clips) - set(evaluated))
        keep = set(evaluated)
        self.ground_truth = gt[gt["filename"].isin(keep)].reset_index(drop=True)
        self.durations = {c: dur[c] for c in evaluated}
        labels = self.ground_truth["event_label"].dropna()
        self.classes = list(classes) if classes is not None else sorted(set(labels))
        self.clips = evaluated
        if not evaluated:
            raise ValueError("no clip to evaluate (no prediction matches a ground-truth clip)")

    def restrict(self, predictions: pd.DataFrame, what: str) -> pd.DataFrame:
        df = canonical_events(predictions)
        df = df[df["onset"].notna()]
        outside = ~df["filename"].isin(set(self.clips))
        if outside.any():
            log.warning("%s: %d event(s) on %d clip(s) outside the evaluated set dropped",
                        what, int(outside.sum()), df.loc[outside, "filename"].nunique())
            df = df[~outside]
        return df.reset_index(drop=True)

    def counts(self) -> dict:
        return {"n_clips_evaluated": len(self.clips), "n_clips_missing": len(self.missing),
                "missing_clips": self.missing[:20]}


# -------------------------------------------------------------------------------------------- jobs
def scenario_classes(scores: Mapping[str, pd.DataFrame]) -> list[str]:
    """The class columns of score DataFrames."""
    return [str(c) for c in next(iter(scores.values())).columns[2:]] if scores else []


def _f1_job(predictions: pd.DataFrame, ground_truth: pd.DataFrame, durations: dict,
            classes: list[str]) -> dict:
    event, segment = sed_eval_metrics(predictions, ground_truth, classes)
    return {
        "event_f1": _summary(event),
        "segment_f1": _summary(segment),
        "intersection_f1": intersection_f1(predictions, ground_truth, durations, classes),
    }


def _psds_job(predictions, ground_truth, durations, scenario, classes) -> PsdsResult:
    return psds_from_operating_points(predictions, ground_truth, durations, scenario, classes)


def _threshold_free_job(scores, ground_truth, durations, scenario) -> PsdsResult:
    return threshold_free_psds(scores, ground_truth, durations, scenario)


class _Serial(Executor):
    """In-process stand-in for a pool (``n_jobs=1``)."""

    def submit(self, fn, /, *args, **kwargs):
        from concurrent.futures import Future

        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as err:  # re-raised by .result()
            future.set_exception(err)
        return future


def _executor(n_jobs: int | None, n_tasks: int) -> Executor:
    n = min(n_tasks, n_jobs if n_jobs else (os.cpu_count() or 1))
    if n <= 1:
        return _Serial()
    import multiprocessing

    # fork: workers inherit the imported libraries and the tables (no re-import, no pickling of
    # the inputs for the start-up); the workers use no threads of the parent.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    return ProcessPoolExecutor(max_workers=n, mp_context=multiprocessing.get_context(method))


def _evaluate(
    inputs: _Inputs,
    ops: Mapping[float, pd.DataFrame],
    f1_table: pd.DataFrame,
    scored: Mapping[str, pd.DataFrame] | None,
    n_jobs: int | None,
    plot_dir: str | os.PathLike[str] | None,
    alpha_st: float | None = None,
) -> dict:
    """Run the PSDS jobs (and threshold-free ones when ``scored``) and F1 in one process pool."""
    settings = scenarios(alpha_st)
    n_tasks = 3 + (2 if scored is not None else 0)
    with _executor(n_jobs, n_tasks) as pool:
        # The slowest jobs first (the threshold-free ones when present), F1 last.
        jobs = {}
        skipped: dict[str, str] = {}
        if scored is not None:
            needed = cross_trigger_bytes(scored)
            for name, scenario in settings.items():
                if scenario.alpha_ct > 0 and needed > MAX_CROSS_TRIGGER_BYTES:
                    # O(classes² × frames) memory in sed_scores_eval: hundreds of GB at AudioSet scale
                    skipped[name] = (f"cross-triggers of {len(scenario_classes(scored))} classes would need about "
                                     f"{needed / 1e9:.0f} GB in sed_scores_eval; the psds_eval value covers it")
                    log.warning("threshold-free %s not computed: %s", name, skipped[name])
                    continue
                jobs[f"{name}_threshold_free"] = pool.submit(
                    _threshold_free_job, scored, inputs.ground_truth, inputs.durations, scenario)
        for name, scenario in settings.items():
            jobs[name] = pool.submit(_psds_job, ops, inputs.ground_truth, inputs.durations, scenario,
                                     inputs.classes)
        f1_job = pool.submit(_f1_job, f1_table, inputs.ground_truth, inputs.durations,
                             inputs.classes)
        psds = {name: job.result() for name, job in jobs.items()}
        f1 = f1_job.result()
    result: dict = {name: psds[name].value for name in SCENARIOS}
    result.update({name: r.value for name, r in psds.items() if name not in SCENARIOS})
    if skipped:
        result.update({f"{name}_threshold_free": None for name in skipped})
        result["threshold_free_skipped"] = skipped
    result.update(f1)
    result["n_operating_points"] = len(ops)
    result["alpha_st"] = settings["psds1"].alpha_st
    result["classes"] = inputs.classes
    result["evaluators"] = {
        "psds": "psds_eval", "event_f1": "sed_eval", "segment_f1": "sed_eval",
        "intersection_f1": "psds_eval",
        **({"psds_threshold_free": "sed_scores_eval"} if scored is not None else {}),
    }
    if plot_dir is not None:
        from atst_sed.evaluation.plots import plot_psd_roc

        result["plots"] = [str(plot_psd_roc(r, Path(plot_dir) / f"psd_roc_{name}.png"))
                           for name, r in psds.items()]
    return result


# ---------------------------------------------------------------------------------------- public API
def evaluate_operating_points(
    predictions: Mapping[float, pd.DataFrame],
    ground_truth: pd.DataFrame,
    durations: Mapping[str, float],
    classes: Sequence[str] | None = None,
    *,
    threshold: float = 0.5,
    clips: Iterable[str] | None = None,
    n_jobs: int | None = None,
    plot_dir: str | os.PathLike[str] | None = None,
    alpha_st: float | None = None,
) -> dict:
    """PSDS1 and PSDS2 (psds_eval over the operating points) and F1 at the one nearest ``threshold``.

    Args:
        predictions: ``{threshold: events DataFrame[filename, onset, offset, event_label]}``.
        ground_truth: events DataFrame (clips without events as NaN rows).
        durations: ``{filename: seconds}`` (names with or without extension).
        classes: class names (default: those in the ground truth).
        threshold: which operating point the F1 scores use (the nearest available).
        clips: evaluate only these clips (default: every ground-truth clip; ground-truth clips
            without any predicted event then count as "nothing detected").
        n_jobs: processes (default: one per CPU); 1 runs everything in-process.
        plot_dir: when given, PSD-ROC PNGs are written there (paths under "plots").
        alpha_st: replaces the scenarios' α_st (DCASE: 1; AudioSet-strong in the ATST papers: 0).

    Returns:
        dict: psds1, psds2, alpha_st, f1_threshold, event_f1 / segment_f1 {micro, macro, class_wise},
        intersection_f1 {macro, class_wise}, n_operating_points, n_clips_evaluated,
        n_clips_missing (ground-truth clips with no predicted event at any operating point, or
        left out by ``clips``), missing_clips (first 20), classes, evaluators.
    """
    if not predictions:
        raise ValueError("no operating points given")
    inputs = _Inputs(ground_truth, durations, classes, clips)
    ops = {float(t): inputs.restrict(df, f"operating point {t:g}")
           for t, df in sorted(predictions.items())}
    f1_threshold = nearest_threshold(ops, threshold)
    result = _evaluate(inputs, ops, ops[f1_threshold], None, n_jobs, plot_dir, alpha_st)
    predicted = set().union(*(set(df["filename"]) for df in ops.values()))
    missing = sorted(set(inputs.clips) - predicted) + inputs.missing
    result.update(f1_threshold=f1_threshold, n_clips_evaluated=len(inputs.clips),
                  n_clips_missing=len(missing), missing_clips=sorted(missing)[:20],
                  missing_clips_policy="excluded" if clips is not None else "no_detections")
    return result


def evaluate_scores(
    scores: Mapping[str, pd.DataFrame],
    ground_truth: pd.DataFrame,
    durations: Mapping[str, float],
    classes: Sequence[str] | None = None,
    *,
    thresholds: Sequence[float] = DCASE2022_THRESHOLDS,
    threshold: float = 0.5,
    n_jobs: int | None = None,
    plot_dir: str | os.PathLike[str] | None = None,
    alpha_st: float | None = None,
) -> dict:
    """Everything from per-clip score DataFrames (sed_scores_eval format).

    PSDS1/PSDS2 threshold-free (sed_scores_eval) and from ``thresholds`` operating points
    (psds_eval; events = runs of frames with score > threshold, decoded by sed_scores_eval), F1
    at exactly ``threshold``; ``alpha_st`` as in :func:`evaluate_operating_points`. Ground-truth clips without a score file are left out (counted in
    n_clips_missing); score files of clips unknown to the ground truth are ignored (logged).

    Returns:
        :func:`evaluate_operating_points`' dict plus psds1_threshold_free, psds2_threshold_free.
    """
    if not scores:
        raise ValueError("no score files given")
    scores = {clip_id(k): v for k, v in scores.items()}
    if classes is not None:
        score_classes = list(next(iter(scores.values())).columns[2:])
        unknown = [c for c in score_classes if c not in set(classes)]
        if unknown:
            raise ValueError(f"score columns {unknown} are not known classes")
    inputs = _Inputs(ground_truth, durations, classes, clips=scores)
    extra = sorted(set(scores) - set(inputs.clips))
    if extra:
        log.warning("%d score file(s) of clips not in the ground truth ignored, e.g. %s",
                    len(extra), extra[0])
    scored = {c: scores[c] for c in inputs.clips}
    _, joined = sed_scores_ground_truth(inputs.ground_truth, inputs.clips)
    if joined:
        log.warning("threshold-free PSDS: %d ground-truth event(s) touch or repeat an event of "
                    "their class; joined for sed_scores_eval, which refuses them (the psds_eval "
                    "figures score them as written)", joined)
    op_thresholds = sorted({float(t) for t in thresholds})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        decoded = scores_to_operating_points(scored, sorted({*op_thresholds, float(threshold)}))
    ops = {t: decoded[t] for t in op_thresholds}
    result = _evaluate(inputs, ops, decoded[float(threshold)], scored, n_jobs, plot_dir, alpha_st)
    result.update(f1_threshold=float(threshold), **inputs.counts(),
                  missing_clips_policy="excluded")
    return result


def evaluate_event_table(
    predictions: pd.DataFrame,
    ground_truth: pd.DataFrame,
    durations: Mapping[str, float],
    classes: Sequence[str] | None = None,
    *,
    clips: Iterable[str] | None = None,
) -> dict:
    """F1 scores (event-, segment-, intersection-based) of one event table (no PSDS).

    ``n_clips_missing`` counts ground-truth clips without any predicted event (or left out by
    ``clips``); with ``clips=None`` they count as "nothing detected".
    """
    inputs = _Inputs(ground_truth, durations, classes, clips)
    table = inputs.restrict(predictions, "predictions")
    result = _f1_job(table, inputs.ground_truth, inputs.durations, inputs.classes)
    missing = sorted(set(inputs.clips) - set(table["filename"])) + inputs.missing
    result.update(n_clips_evaluated=len(inputs.clips), n_clips_missing=len(missing),
                  missing_clips=sorted(missing)[:20],
                  missing_clips_policy="excluded" if clips is not None else "no_detections",
                  classes=inputs.classes,
                  evaluators={"event_f1": "sed_eval", "segment_f1": "sed_eval",
                              "intersection_f1": "psds_eval"})
    return result
