"""Tiny hand-made DESED-like evaluation sets (3 classes, 6 clips) for the evaluation tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import sed_eval
from psds_eval import PSDSEval
from sed_scores_eval import intersection_based

CLASSES = ["Cat", "Dog", "Speech"]
DURATIONS = {"a.wav": 10.0, "b.wav": 10.0, "c.wav": 8.0, "d.wav": 10.0, "e.wav": 10.0,
             "f.wav": 9.5}
GT_ROWS = [
    ("a.wav", 0.5, 2.0, "Cat"), ("a.wav", 3.0, 7.5, "Speech"), ("a.wav", 8.0, 9.0, "Dog"),
    ("b.wav", 0.0, 10.0, "Speech"), ("b.wav", 1.0, 1.8, "Dog"), ("b.wav", 4.0, 5.2, "Dog"),
    ("c.wav", 2.0, 6.0, "Cat"), ("c.wav", 6.5, 7.9, "Dog"),
    ("d.wav", 0.2, 3.3, "Speech"), ("d.wav", 5.0, 9.6, "Speech"), ("d.wav", 7.0, 7.4, "Cat"),
    ("e.wav", np.nan, np.nan, np.nan),  # a clip without events
    ("f.wav", 1.0, 4.0, "Dog"), ("f.wav", 6.0, 9.0, "Cat"),
]
THRESHOLDS = [0.1, 0.3, 0.5, 0.7, 0.9]
# DCASE 2022 scenarios, written out independently of atst_sed (dcase22.md §2.9).
_SCENARIOS = {"psds1": dict(dtc=0.7, gtc=0.7, cttc=0.3, alpha_ct=0.0, alpha_st=1.0, max_efpr=100),
              "psds2": dict(dtc=0.1, gtc=0.1, cttc=0.3, alpha_ct=0.5, alpha_st=1.0, max_efpr=100)}


# --------------------------------------------- the reference libraries called by hand (golden)
def psds_eval_by_hand(ops, gt, durations, scenario):
    sc = _SCENARIOS[scenario]
    meta = pd.DataFrame({"filename": [k.removesuffix(".wav") for k in durations],
                         "duration": list(durations.values())})
    ground = gt.dropna().assign(filename=lambda d: d["filename"].str.removesuffix(".wav"))
    evaluator = PSDSEval(dtc_threshold=sc["dtc"], gtc_threshold=sc["gtc"], cttc_threshold=sc["cttc"],
                         ground_truth=ground.reset_index(drop=True), metadata=meta)
    for t in sorted(ops):
        det = ops[t].assign(filename=lambda d: d["filename"].str.removesuffix(".wav"))
        evaluator.add_operating_point(det.reset_index(drop=True))
    return evaluator.psds(alpha_ct=sc["alpha_ct"], alpha_st=sc["alpha_st"], max_efpr=sc["max_efpr"]).value


def sed_eval_by_hand(pred, gt):
    event = sed_eval.sound_event.EventBasedMetrics(
        event_label_list=CLASSES, t_collar=0.2, percentage_of_length=0.2,
        empty_system_output_handling="zero_score")
    segment = sed_eval.sound_event.SegmentBasedMetrics(event_label_list=CLASSES, time_resolution=1.0)
    for clip in gt["filename"].unique():
        ref = [r for r in gt[gt["filename"] == clip].dropna().to_dict("records")] or [{"filename": clip}]
        est = [r for r in pred[pred["filename"] == clip].to_dict("records")] or [{"filename": clip}]
        event.evaluate(ref, est)
        segment.evaluate(ref, est)
    return event.results(), segment.results()


def sed_scores_eval_by_hand(score_frames, gt, durations, scenario):
    sc = _SCENARIOS[scenario]
    ground = {k.removesuffix(".wav"): [] for k in durations}
    for clip, on, off, label in gt.dropna().itertuples(index=False, name=None):
        ground[clip.removesuffix(".wav")].append((on, off, label))
    return intersection_based.psds(
        scores=score_frames, ground_truth=ground,
        audio_durations={k.removesuffix(".wav"): v for k, v in durations.items()},
        dtc_threshold=sc["dtc"], gtc_threshold=sc["gtc"],
        cttc_threshold=sc["cttc"] if sc["alpha_ct"] else None, alpha_ct=sc["alpha_ct"],
        alpha_st=sc["alpha_st"], max_efpr=sc["max_efpr"])[0]


def make_operating_points(gt: pd.DataFrame, seed: int = 0) -> dict[float, pd.DataFrame]:
    """Nested op-point tables: jittered true events and false alarms kept where confidence > t."""
    rng = np.random.default_rng(seed)
    ev = gt.dropna().reset_index(drop=True)
    true = ev.assign(
        onset=np.clip(ev["onset"] + rng.normal(0, 0.4, len(ev)), 0, None).round(3),
        offset=np.minimum(ev["offset"] + rng.normal(0, 0.4, len(ev)),
                          ev["filename"].map(DURATIONS)).round(3),
        conf=rng.uniform(0.05, 1.0, len(ev)),
    )
    false = pd.DataFrame({
        "filename": ["a.wav", "c.wav", "e.wav", "e.wav", "f.wav", "b.wav"],
        "onset": [4.0, 0.1, 1.0, 5.0, 0.0, 6.0], "offset": [5.0, 1.5, 2.5, 8.0, 0.7, 7.0],
        "event_label": ["Cat", "Speech", "Dog", "Speech", "Cat", "Cat"],
        "conf": rng.uniform(0.05, 0.8, 6),
    })
    pool = pd.concat([true, false], ignore_index=True)
    pool = pool[pool["offset"] > pool["onset"]]
    return {t: pool[pool["conf"] > t][["filename", "onset", "offset", "event_label"]]
            .reset_index(drop=True) for t in THRESHOLDS}


def make_scores(gt: pd.DataFrame, seed: int = 0, frame: float = 0.04,
                perfect: bool = False, noise: float = 0.05) -> dict[str, np.ndarray]:
    """(T, C) frame scores per clip; ``perfect``: 1 inside ground-truth events, 0 outside.

    Otherwise: a random level per true event, two false-alarm bumps per clip, small noise.
    """
    rng = np.random.default_rng(seed)
    out = {}
    for clip, duration in DURATIONS.items():
        t = int(round(duration / frame))
        s = np.zeros((t, len(CLASSES)))
        for _, on, off, label in gt[(gt["filename"] == clip) & gt["onset"].notna()].itertuples(
                index=False, name=None):
            a, b = int(round(on / frame)), int(round(off / frame))
            s[a:b, CLASSES.index(label)] = 1.0 if perfect else rng.uniform(0.3, 1.0)
        if not perfect:
            for _ in range(2):
                a = int(rng.integers(0, t - 10))
                s[a:a + int(rng.integers(10, 50)), rng.integers(0, len(CLASSES))] += rng.uniform(0.1, 0.9)
            s = np.clip(s + rng.normal(0, noise, s.shape), 0, 1)
        out[clip] = s
    return out
