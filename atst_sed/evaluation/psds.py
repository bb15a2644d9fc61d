"""PSDS (DCASE 2022 scenarios 1 and 2): thin wrappers over psds_eval and sed_scores_eval.

* :func:`psds_from_operating_points` — psds_eval 0.5.3 over a set of event tables, one per
  decision threshold (DCASE 2022: 50 thresholds 0.01, 0.03, ..., 0.99). It under-estimates the
  threshold-free value slightly (DCASE 2023 README: ~1 % absolute).
* :func:`threshold_free_psds` — sed_scores_eval's exact PSDS from frame score DataFrames.

Inputs are already-checked tables whose ``filename`` column holds clip ids (see
:mod:`atst_sed.evaluation.metrics`, which prepares them); durations are seconds.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

__all__ = [
    "MAX_CROSS_TRIGGER_BYTES",
    "SCENARIOS",
    "PsdsResult",
    "PsdsScenario",
    "cross_trigger_bytes",
    "psds_from_operating_points",
    "scenarios",
    "sed_scores_ground_truth",
    "threshold_free_psds",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PsdsScenario:
    """PSDS parameters (criteria as fractions, max_efpr in false positives per hour); ``name``
    labels the results (``psds1``, ``psds2``, or ``custom``)."""

    dtc: float
    gtc: float
    cttc: float
    alpha_ct: float
    alpha_st: float
    max_efpr: float = 100.0
    name: str = "custom"


#: DCASE 2022 Task 4 scenarios (DESED_task ``sed_trainer.py`` test step).
SCENARIOS: dict[str, PsdsScenario] = {
    "psds1": PsdsScenario(dtc=0.7, gtc=0.7, cttc=0.3, alpha_ct=0.0, alpha_st=1.0, name="psds1"),
    "psds2": PsdsScenario(dtc=0.1, gtc=0.1, cttc=0.3, alpha_ct=0.5, alpha_st=1.0, name="psds2"),
}


def scenarios(alpha_st: float | None = None) -> dict[str, PsdsScenario]:
    """The two DCASE scenarios, with ``alpha_st`` (the weight of the across-class standard deviation
    of the TPR) replaced when given: the ATST papers score AudioSet-strong with ``alpha_st = 0``
    (audiossl ``train_as_strong.py``), because with 400+ classes, many with few events, the
    spread term would dominate."""
    if alpha_st is None:
        return dict(SCENARIOS)
    if not 0.0 <= float(alpha_st):
        raise ValueError(f"alpha_st must be >= 0, got {alpha_st}")
    return {name: dataclasses.replace(sc, alpha_st=float(alpha_st)) for name, sc in SCENARIOS.items()}


@dataclass
class PsdsResult:
    """One PSDS value with its curves (for plots).

    Attributes:
        value: PSDS in [0, 1].
        scenario: "psds1" | "psds2".
        evaluator: "psds_eval" (operating points) | "sed_scores_eval" (threshold-free).
        efpr, etpr: the PSD-ROC (effective FP rate per hour, effective TP ratio), 1-D arrays.
        per_class: ``{class: (efpr, tpr)}`` per-class ROC curves.
        max_efpr: where the area was cut (per hour).
        n_operating_points: operating points used (None for threshold-free).
        per_class_psds: per-class PSDS where the library gives it (sed_scores_eval).
    """

    value: float
    scenario: str
    evaluator: str
    efpr: np.ndarray
    etpr: np.ndarray
    per_class: dict[str, tuple[np.ndarray, np.ndarray]]
    max_efpr: float
    n_operating_points: int | None = None
    per_class_psds: dict[str, float] = field(default_factory=dict)


def _scenario(scenario: str | PsdsScenario) -> tuple[str, PsdsScenario]:
    if isinstance(scenario, PsdsScenario):
        return scenario.name, scenario
    if scenario not in SCENARIOS:
        raise ValueError(f"scenario must be one of {sorted(SCENARIOS)}, got {scenario!r}")
    return scenario, SCENARIOS[scenario]


def _events_only(df: pd.DataFrame) -> pd.DataFrame:
    """The four columns without clips-without-event rows, with a fresh 0..N-1 index.

    A fresh unique index sidesteps psds_eval#3 (duplicate indices); a copy keeps the caller's
    table untouched (DESED_task mutates it).
    """
    out = df.loc[df["onset"].notna(), ["filename", "onset", "offset", "event_label"]]
    return out.reset_index(drop=True).astype({"onset": float, "offset": float})


def durations_frame(durations: Mapping[str, float]) -> pd.DataFrame:
    """psds_eval metadata table: filename, duration (seconds)."""
    return pd.DataFrame({"filename": list(durations), "duration": [float(v) for v in durations.values()]})


def _fast_psds_eval_class():
    """:class:`psds_eval.PSDSEval` with two of its per-class Python loops done with array operations,
    giving the same numbers (``tests/evaluation/test_audioset_strong_evaluation.py`` compares them
    with the unmodified library). At 407 AudioSet-strong classes these loops are almost all of the
    time: ``_confusion_matrix_and_rates`` looks up classes² pandas entries one by one per operating
    point, and ``psd_roc_curves`` builds classes² cross-trigger ROC curves that ``psds()`` never
    reads. Everything else — the DTC/GTC/CTTC criteria, the step curves of the PSD-ROC, the area —
    is the library's own code."""
    from psds_eval import PSDSEval
    from psds_eval.psds import PSDROC, WORLD

    class FastPSDSEval(PSDSEval):
        def _confusion_matrix_and_rates(self, tp, ct):
            # PSDSEval's loop, per (detected class i, ground-truth class j), as one table lookup
            n_real = len(self.class_names) - 1
            names = sorted(set(self.class_names).difference([WORLD]))
            columns = [*names, WORLD]
            counts = np.zeros([len(self.class_names), len(self.class_names)])
            n_cls_gt = self._get_dataset_counts()
            gt_dur, dataset_dur = self._get_dataset_duration()
            tp_count = tp["event_label_gt"].value_counts().reindex(names, fill_value=0).to_numpy(np.float64)
            counts[np.arange(n_real), np.arange(n_real)] = tp_count
            tp_ratio = np.empty(n_real)
            has_gt = np.array([c in n_cls_gt for c in names], dtype=bool)
            tp_ratio[has_gt] = tp_count[has_gt] / n_cls_gt.reindex(np.asarray(names)[has_gt]).to_numpy(np.float64)
            ct_tmp = ct.groupby(["event_label_det", "event_label_gt"]).filename.count()
            if len(ct_tmp):
                table = ct_tmp.unstack().reindex(index=names, columns=columns).to_numpy(np.float64)
                present = ~np.isnan(table)
                counts[:n_real][present] = table[present]  # entries the loop finds; the others keep their value
            fp_rate = counts[:n_real, n_real] * self.nseconds / dataset_dur
            ct_rate = counts[:n_real, :n_real] * self.nseconds / gt_dur.reindex(names).to_numpy(np.float64)[None, :]
            ct_rate[np.arange(n_real), np.arange(n_real)] = np.nan
            return counts, tp_ratio, fp_rate, ct_rate

        def psd_roc_curves(self, alpha_ct, linear_interp=False):
            # only the TPR-vs-eFPR curves, which psds() reads (the library's loop, without the others)
            pcr = self._effective_fp_rate(alpha_ct)
            n_classes = len(self.class_names) - 1
            efpr_points = np.unique(np.sort(pcr.effective_fp_rate.flatten()))
            tpr_v_efpr = np.full((n_classes, efpr_points.size), np.nan)
            curve = self.perform_interp if linear_interp else self.step_curve
            for c in range(n_classes):
                tpr_v_efpr[c] = curve(efpr_points, pcr.effective_fp_rate[c], pcr.tp_ratio[c])
            efpr = PSDROC(yp=tpr_v_efpr, xp=efpr_points, mean=np.nanmean(tpr_v_efpr, axis=0),
                          std=np.nanstd(tpr_v_efpr, axis=0))
            return None, None, efpr

    return FastPSDSEval


def make_psds_eval(
    ground_truth: pd.DataFrame, durations: Mapping[str, float], dtc: float, gtc: float,
    cttc: float, classes: Sequence[str] | None = None,
):
    """A ``psds_eval.PSDSEval`` (with array operations where the library loops over classes, same
    numbers: :func:`_fast_psds_eval_class`) with the ground truth set (durations in seconds, rates
    per hour).

    The class list is the ground truth's (psds_eval cannot score classes without ground truth;
    ``classes`` is accepted for symmetry and not passed on).
    """
    PSDSEval = _fast_psds_eval_class()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return PSDSEval(
            dtc_threshold=dtc, gtc_threshold=gtc, cttc_threshold=cttc,
            ground_truth=_events_only(ground_truth), metadata=durations_frame(durations),
            duration_unit="hour",
        )


#: Above this many rows in psds_eval's per-clip self-join of one detection table (sum over clips
#: of events^2) it would need many GB of memory: refuse with a clear message instead.
MAX_PSDS_EVAL_JOIN_ROWS = 20_000_000


def psds_eval_detections(detections: pd.DataFrame, ground_truth_labels: set[str],
                         what: str = "detections") -> pd.DataFrame:
    """Detections as psds_eval takes them: events only, fresh index, classes of the ground truth.

    psds_eval fails on labels it has no ground truth for; such classes have no TPR, are left out
    of PSDS and of the macro F1 by the library anyway, so dropping their detections changes no
    value. Very fragmented tables (e.g. raw frame scores thresholded at 0.01) are refused.
    """
    events = _events_only(detections)
    events = events[events["event_label"].isin(ground_truth_labels)].reset_index(drop=True)
    if len(events):
        per_clip = events["filename"].value_counts().to_numpy(np.int64)
        rows = int((per_clip ** 2).sum())
        if rows > MAX_PSDS_EVAL_JOIN_ROWS:
            raise ValueError(
                f"{what}: {len(events)} events (up to {per_clip.max()} in one clip) are too "
                "fragmented for psds_eval (it would need many GB); median-filter the scores "
                "before thresholding, or use the threshold-free PSDS")
    return events


def _per_class_points(evaluator, alpha_ct: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per-class (eFPR, TPR) operating points, sorted by eFPR, for plots.

    Read from psds_eval's per-class rates (``_effective_fp_rate``, the table its own
    ``psd_roc_curves`` interpolates) rather than calling ``psd_roc_curves`` a second time, which
    costs as much as the PSDS itself at DESED scale.
    """
    try:
        rates = evaluator._effective_fp_rate(alpha_ct)
    except Exception as err:  # private API of psds_eval 0.5.3: plots lose per-class curves only
        log.debug("psds_eval per-class rates unavailable: %s", err)
        return {}
    names = sorted(set(evaluator.class_names) - {"injected_psds_world_label"})
    out = {}
    for i, name in enumerate(names):
        efpr = np.asarray(rates.effective_fp_rate[i], float)
        tpr = np.asarray(rates.tp_ratio[i], float)
        order = np.argsort(efpr, kind="stable")
        out[name] = (efpr[order], tpr[order])
    return out


def psds_from_operating_points(
    predictions: Mapping[float, pd.DataFrame],
    ground_truth: pd.DataFrame,
    durations: Mapping[str, float],
    scenario: str | PsdsScenario = "psds1",
    classes: Sequence[str] | None = None,
) -> PsdsResult:
    """PSDS with psds_eval from operating points.

    Args:
        predictions: ``{threshold: events DataFrame[filename, onset, offset, event_label]}``.
        ground_truth: events DataFrame (NaN rows for clips without events are fine).
        durations: ``{filename: seconds}`` for every evaluated clip (same names as the tables).
        scenario: "psds1" | "psds2" | a :class:`PsdsScenario`.
        classes: class names (default: those of the ground truth).

    Returns:
        :class:`PsdsResult` (evaluator "psds_eval").
    """
    name, sc = _scenario(scenario)
    evaluator = make_psds_eval(ground_truth, durations, sc.dtc, sc.gtc, sc.cttc, classes)
    labels = set(_events_only(ground_truth)["event_label"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        # Identical tables (e.g. empty ones at high thresholds) are skipped by psds_eval: expected.
        warnings.filterwarnings("ignore", "A similar operating point exists")
        for i, threshold in enumerate(sorted(predictions)):
            evaluator.add_operating_point(
                psds_eval_detections(predictions[threshold], labels,
                                     f"operating point {threshold:g}"),
                info={"name": f"Op {i + 1:02d}", "threshold": float(threshold)},
            )
        psds = evaluator.psds(alpha_ct=sc.alpha_ct, alpha_st=sc.alpha_st, max_efpr=sc.max_efpr)
    per_class = _per_class_points(evaluator, sc.alpha_ct)
    return PsdsResult(
        value=float(psds.value), scenario=name, evaluator="psds_eval",
        efpr=np.asarray(psds.plt.xp), etpr=np.asarray(psds.plt.yp), per_class=per_class,
        max_efpr=sc.max_efpr, n_operating_points=int(evaluator.num_operating_points()),
    )


def sed_scores_ground_truth(
    ground_truth: pd.DataFrame, clips: Sequence[str],
) -> tuple[dict[str, list[tuple[float, float, str]]], int]:
    """Ground truth as sed_scores_eval takes it: ``{clip: [(onset, offset, label), ...]}`` for
    ``clips``, and how many events were joined to an earlier one.

    sed_scores_eval refuses same-class events that touch or repeat (psds_eval scores them as
    written): those are joined into one event. Callers report the count.
    """
    events = _events_only(ground_truth)
    wanted = set(clips)
    events = events[events["filename"].isin(wanted)]
    ground: dict[str, list[tuple[float, float, str]]] = {c: [] for c in clips}
    ordered = events.sort_values(["filename", "event_label", "onset"], kind="stable")
    joined = 0
    for clip, on, off, label in ordered.itertuples(index=False, name=None):
        previous = ground[clip][-1] if ground[clip] else None
        if previous is not None and previous[2] == label and on <= previous[1]:
            ground[clip][-1] = (previous[0], max(previous[1], float(off)), label)
            joined += 1
        else:
            ground[clip].append((float(on), float(off), label))
    return ground, joined


#: sed_scores_eval keeps, for every class, a cross-trigger count with every other class at every
#: change point of its scores (about one per frame): 8 bytes × C × (C − 1) × frames. Above this the
#: threshold-free PSDS of a scenario with cross-triggers (α_ct > 0) is not computed.
MAX_CROSS_TRIGGER_BYTES = 4e9


def cross_trigger_bytes(scores: Mapping[str, pd.DataFrame]) -> float:
    """Memory sed_scores_eval needs for the cross-trigger statistics of ``scores`` (bytes, estimate:
    one change point per frame and class — continuous model outputs — for every class pair)."""
    if not scores:
        return 0.0
    n_classes = len(next(iter(scores.values())).columns) - 2
    frames = sum(len(df) for df in scores.values())
    return 8.0 * n_classes * max(n_classes - 1, 0) * frames


def threshold_free_psds(
    scores: Mapping[str, pd.DataFrame],
    ground_truth: pd.DataFrame,
    durations: Mapping[str, float],
    scenario: str | PsdsScenario = "psds1",
    num_jobs: int = 1,
) -> PsdsResult:
    """Threshold-free PSDS with ``sed_scores_eval.intersection_based.psds``.

    Args:
        scores: ``{clip_id: score DataFrame[onset, offset, classes...]}``.
        ground_truth: events DataFrame whose filenames are the same clip ids; clips in ``scores``
            without events may be absent or NaN rows.
        durations: ``{clip_id: seconds}`` covering ``scores``.
        scenario: "psds1" | "psds2" | a :class:`PsdsScenario`.
        num_jobs: processes sed_scores_eval may use.

    Classes without any ground-truth event are left out (sed_scores_eval requires one), with a
    warning. Same-class events that touch or repeat are joined (sed_scores_eval rejects them; see
    :func:`sed_scores_ground_truth`).

    Returns:
        :class:`PsdsResult` (evaluator "sed_scores_eval").
    """
    from sed_scores_eval import intersection_based

    name, sc = _scenario(scenario)
    ids = sorted(scores)
    events = _events_only(ground_truth)
    events = events[events["filename"].isin(set(ids))]
    present = set(events["event_label"])
    first = scores[ids[0]]
    classes = [c for c in first.columns[2:] if c in present]
    dropped = [c for c in first.columns[2:] if c not in present]
    if dropped:
        log.warning("threshold-free PSDS: %d class(es) without ground-truth events left out: %s%s", len(dropped),
                    ", ".join(dropped[:10]), " …" if len(dropped) > 10 else "")
    if not classes:
        raise ValueError("no class has a ground-truth event among the scored clips")
    if sc.alpha_ct > 0 and len(classes) < 2:
        # Cross-triggers are counted on the ground truth of the *other* classes; with one class
        # there is none, and sed_scores_eval crashes on the empty statistics instead of adding 0.
        log.warning("threshold-free %s: only %s has ground-truth events, so there are no "
                    "cross-triggers to count; computed with alpha_ct = 0", name, classes[0])
        sc = replace(sc, alpha_ct=0.0)
    ground, _ = sed_scores_ground_truth(events, ids)
    use_scores = scores if not dropped else {
        k: v[["onset", "offset", *classes]] for k, v in scores.items()
    }
    value, per_class_psds, (etpr, efpr), rocs = intersection_based.psds(
        scores=dict(use_scores), ground_truth=ground,
        audio_durations={k: float(durations[k]) for k in ids},
        dtc_threshold=sc.dtc, gtc_threshold=sc.gtc,
        cttc_threshold=sc.cttc if sc.alpha_ct > 0 else None,  # it refuses an unused cttc
        alpha_ct=sc.alpha_ct, alpha_st=sc.alpha_st, unit_of_time="hour", max_efpr=sc.max_efpr,
        num_jobs=num_jobs,
    )
    per_class = {c: (np.asarray(roc[1]), np.asarray(roc[0])) for c, roc in rocs.items()}
    return PsdsResult(
        value=float(value), scenario=name, evaluator="sed_scores_eval",
        efpr=np.asarray(efpr), etpr=np.asarray(etpr), per_class=per_class, max_efpr=sc.max_efpr,
        per_class_psds={c: float(v) for c, v in per_class_psds.items()},
    )
