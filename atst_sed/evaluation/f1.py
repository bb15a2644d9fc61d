"""F1 scores at one operating point: thin wrappers over sed_eval and psds_eval.

* event-based (collar) F1: ``sed_eval.sound_event.EventBasedMetrics`` (t_collar 0.2 s,
  percentage_of_length 0.2, empty system output -> zero score), as DESED_task;
* segment-based F1: ``sed_eval.sound_event.SegmentBasedMetrics`` (1 s segments);
* intersection-based macro F1: ``psds_eval.PSDSEval.compute_macro_f_score`` (dtc = gtc = 0.5,
  cttc 0.3).

Both sed_eval metrics iterate over the reference clips (a clip absent from the reference is not
scored), and report micro ("overall") and macro ("class-wise average") F1 plus per-class F1.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import pandas as pd

from atst_sed.evaluation.psds import _events_only, make_psds_eval, psds_eval_detections

__all__ = ["event_based_f1", "intersection_f1", "segment_based_f1", "sed_eval_metrics"]


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
