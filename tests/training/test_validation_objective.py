"""Validation metrics behind checkpoint selection: audiossl's frame-level intersection F1 (golden
values from its own code), the clip-level weak F1 (torchmetrics), and objectives built from them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from atst_sed.decoding import median_filter
from atst_sed.evaluation.f1 import frame_intersection_counts, frame_intersection_f1

GOLDEN = json.loads((Path(__file__).parent / "golden" / "audiossl_frame_f1.json").read_text())


def _frames(rows) -> np.ndarray:
    """[clip][class] strings of 0/1 → (B, T, C) bool."""
    return np.array([[[ch == "1" for ch in row] for row in clip] for clip in rows]).transpose(0, 2, 1)


@pytest.mark.parametrize("case", range(len(GOLDEN["cases"])))
def test_frame_intersection_counts_equal_audiossl(case):
    c = GOLDEN["cases"][case]
    scores = np.array(c["scores"], dtype=np.float32).transpose(0, 2, 1)  # (B, T, C)
    # audiossl validates on scores > 0.5 median-filtered over 3 frames: the same as filtering the scores first
    decisions = median_filter(scores, 3) > 0.5
    assert (decisions == _frames(c["median_filtered_decisions"])).all()
    counts = frame_intersection_counts(decisions, _frames(c["labels"]))
    assert counts.tolist() == [c["tp"], c["fp"], c["fn"]]
    assert frame_intersection_f1(counts) == pytest.approx(c["macro_f1"], abs=1e-6)


def test_frame_intersection_counts_add_up_over_batches():
    total = sum(frame_intersection_counts(_frames(c["median_filtered_decisions"]), _frames(c["labels"]))
                for c in GOLDEN["cases"])
    assert frame_intersection_f1(total) == pytest.approx(GOLDEN["macro_f1_all_cases"], abs=1e-6)


def test_frame_intersection_rule_on_hand_made_runs():
    target = np.zeros((20, 2), bool)
    target[2:6, 0] = True  # 4 frames
    decision = np.zeros((20, 2), bool)
    decision[3:5, 0] = True  # 2 of 4 frames: ratio 0.5 → true positive
    decision[10:12, 1] = True  # no target: false positive
    target[14:20, 1] = True  # no decision: false negative
    assert frame_intersection_counts(decision, target).tolist() == [[1, 0], [0, 1], [0, 1]]
    decision[3:4, 0] = False  # 1 of 4: false negative
    assert frame_intersection_counts(decision, target)[:, 0].tolist() == [0, 0, 1]
    decision[0:10, 0] = True  # 10 decision frames over 4 target frames: ≥ 2 → false positive
    assert frame_intersection_counts(decision, target)[:, 0].tolist() == [0, 1, 0]
    assert frame_intersection_f1(np.zeros((3, 4))) == 0.0
