"""F1 scores at one operating point: thin wrappers over sed_eval and psds_eval.

* event-based (collar) F1: ``sed_eval.sound_event.EventBasedMetrics`` (t_collar 0.2 s,
  percentage_of_length 0.2, empty system output -> zero score), as DESED_task;
* segment-based F1: ``sed_eval.sound_event.SegmentBasedMetrics`` (1 s segments);
* intersection-based macro F1: ``psds_eval.PSDSEval.compute_macro_f_score`` (dtc = gtc = 0.5,
  cttc 0.3);
* audiossl's frame-level intersection macro F1 (its DESED fine-tuning's validation metric, computed
  on frame decisions and frame targets instead of events): :func:`frame_intersection_f1`.

Both sed_eval metrics iterate over the reference clips (a clip absent from the reference is not
scored), and report micro ("overall") and macro ("class-wise average") F1 plus per-class F1.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from atst_sed.evaluation.psds import _events_only, make_psds_eval, psds_eval_detections

__all__ = ["event_based_f1", "frame_intersection_counts", "frame_intersection_f1", "intersection_f1", "segment_based_f1",
           "sed_eval_metrics"]


def _per_clip_lists(df: pd.DataFrame) -> dict[str, list[dict]]:
    events = _events_only(df)
    out: dict[str, list[dict]] = {}
    for name, on, off, label in events.itertuples(index=False, name=None):
        out.setdefault(name, []).append(
            {"filename": name, "onset": float(on), "offset": float(off), "event_label": label}
        )
    return out


def _nan_to_none(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def _summary(metric) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmean over classes without events
        results = metric.results()
    class_wise = {c: _nan_to_none(v["f_measure"]["f_measure"])
                  for c, v in results["class_wise"].items()}
    return {
        "micro": _nan_to_none(results["overall"]["f_measure"]["f_measure"]),
        "macro": _nan_to_none(results["class_wise_average"]["f_measure"]["f_measure"]),
        "class_wise": class_wise,
    }


def sed_eval_metrics(
    predictions: pd.DataFrame, ground_truth: pd.DataFrame, classes: Sequence[str],
    t_collar: float = 0.2, percentage_of_length: float = 0.2, time_resolution: float = 1.0,
):
    """Run sed_eval's event- and segment-based metrics over the reference clips.

    Returns:
        (EventBasedMetrics, SegmentBasedMetrics) objects, already evaluated.
    """
    import sed_eval

    event = sed_eval.sound_event.EventBasedMetrics(
        event_label_list=list(classes), t_collar=t_collar,
        percentage_of_length=percentage_of_length, empty_system_output_handling="zero_score",
    )
    segment = sed_eval.sound_event.SegmentBasedMetrics(
        event_label_list=list(classes), time_resolution=time_resolution,
    )
    reference = _per_clip_lists(ground_truth)
    estimated = _per_clip_lists(predictions)
    clips = list(dict.fromkeys(ground_truth["filename"]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for clip in clips:
            ref = reference.get(clip, [{"filename": clip}])
            est = estimated.get(clip, [{"filename": clip}])
            event.evaluate(reference_event_list=ref, estimated_event_list=est)
            segment.evaluate(reference_event_list=ref, estimated_event_list=est)
    return event, segment


def event_based_f1(predictions: pd.DataFrame, ground_truth: pd.DataFrame,
                   classes: Sequence[str]) -> dict:
    """Collar-based F1 (sed_eval; 0.2 s collar, 20 % offset length): {micro, macro, class_wise}."""
    return _summary(sed_eval_metrics(predictions, ground_truth, classes)[0])


def segment_based_f1(predictions: pd.DataFrame, ground_truth: pd.DataFrame,
                     classes: Sequence[str]) -> dict:
    """Segment-based F1 (sed_eval; 1 s segments): {micro, macro, class_wise}."""
    return _summary(sed_eval_metrics(predictions, ground_truth, classes)[1])


def intersection_f1(
    predictions: pd.DataFrame, ground_truth: pd.DataFrame, durations: Mapping[str, float],
    classes: Sequence[str] | None = None, dtc: float = 0.5, gtc: float = 0.5, cttc: float = 0.3,
) -> dict:
    """Intersection-based F1 (psds_eval ``compute_macro_f_score``): {macro, class_wise}.

    A NaN macro value (no detection at all) becomes 0, as in DESED_task.
    """
    evaluator = make_psds_eval(ground_truth, durations, dtc, gtc, cttc, classes)
    labels = set(_events_only(ground_truth)["event_label"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        macro, per_class = evaluator.compute_macro_f_score(
            psds_eval_detections(predictions, labels))
    macro = 0.0 if macro is None or math.isnan(macro) else float(macro)
    class_wise = {c: None for c in (classes or [])}  # classes without ground truth: no value
    class_wise.update({c: _nan_to_none(float(v)) for c, v in per_class.items()})
    return {"macro": macro, "class_wise": class_wise}


def frame_intersection_counts(decisions: np.ndarray, targets: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Per-class (true positives, false positives, false negatives) of audiossl's frame-level
    intersection rule, for frame decisions and frame targets of the same clips: (B, T, C) or (T, C),
    anything > 0.5 is active. Returns (3, C) counts.

    Per clip and class, each run of frames where the decision or the target is active is one
    comparison: with p decision frames and t target frames in the run and r = p / (t + 1e-7)
    computed in float32, as audiossl's ``SEDMetrics(intersection_thd=0.5)`` computes it, the run is a
    true positive when ``threshold ≤ r < 1 / threshold``, a false positive when r ≥ 1 / threshold
    (a decision without target) and a false negative when r < threshold. (The float32 1e-7 makes
    2 decision frames over 1 target frame a hit, but 4 over 2 a false positive; kept, as it decides
    audiossl's checkpoints.)
    """
    decisions = np.asarray(decisions) > 0.5
    targets = np.asarray(targets) > 0.5
    if decisions.shape != targets.shape or decisions.ndim not in (2, 3):
        raise ValueError(f"decisions {decisions.shape} and targets {targets.shape} must both be (B, T, C) or (T, C)")
    if decisions.ndim == 2:
        decisions, targets = decisions[None], targets[None]
    b, t, c = decisions.shape
    # runs of the union, one row per (clip, class): run ids along time, 0 outside every run
    union = np.moveaxis(decisions | targets, 1, 2).reshape(b * c, t)
    starts = union & ~np.pad(union, ((0, 0), (1, 0)))[:, :-1]
    run = np.cumsum(starts.ravel()).reshape(b * c, t) * union
    n_runs = int(run.max()) if run.size else 0
    counts = np.zeros((3, c), dtype=np.int64)
    if n_runs == 0:
        return counts
    ids = run.ravel()
    inside = ids > 0
    pred = np.bincount(ids[inside], weights=np.moveaxis(decisions, 1, 2).reshape(-1)[inside], minlength=n_runs + 1)[1:]
    true = np.bincount(ids[inside], weights=np.moveaxis(targets, 1, 2).reshape(-1)[inside], minlength=n_runs + 1)[1:]
    run_class = np.zeros(n_runs, dtype=np.int64)
    run_class[ids[inside] - 1] = np.broadcast_to(np.arange(c)[None, :, None], (b, c, t)).reshape(-1)[inside]
    ratio = pred.astype(np.float32) / (true.astype(np.float32) + np.float32(1e-7))
    kinds = np.where(ratio >= 1 / threshold, 1, np.where(ratio < threshold, 2, 0))  # 0 tp, 1 fp, 2 fn
    np.add.at(counts, (kinds, run_class), 1)
    return counts


def frame_intersection_f1(counts: np.ndarray) -> float:
    """Macro F1 over the classes of :func:`frame_intersection_counts` (summed over batches):
    mean over every class of TP / (TP + (FP + FN) / 2), a class without any count scoring 0 (audiossl)."""
    tp, fp, fn = np.asarray(counts, dtype=np.float64)
    denominator = tp + (fp + fn) / 2
    per_class = np.divide(tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    return float(per_class.mean()) if per_class.size else 0.0
