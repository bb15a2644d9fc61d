"""Label encoding: exact round trips on the 40 ms grid, floor/ceil semantics, clipping, decoding."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from atst_sed.decoding import frames_to_events
from atst_sed.labels import DESED_CLASSES, ClassMap, events_to_frames, weak_multi_hot
from atst_sed.timegrid import ATST_GRID


def _events(rows):
    return pd.DataFrame(rows, columns=["onset", "offset", "event_label"])


def test_class_map_follows_the_official_order():
    assert DESED_CLASSES[0] == "Alarm_bell_ringing" and DESED_CLASSES[-1] == "Vacuum_cleaner"
    assert len(DESED_CLASSES) == 10 and list(DESED_CLASSES) == sorted(DESED_CLASSES)
    cmap = ClassMap(DESED_CLASSES)
    assert len(cmap) == 10 and cmap.names == DESED_CLASSES
    assert [cmap.index(c) for c in DESED_CLASSES] == list(range(10))
    with pytest.raises(KeyError, match="Alarm_bell_ringing"):
        cmap.index("Bird")
    with pytest.raises(Exception, match="duplicate"):
        ClassMap(["a", "a"])


def test_grid_events_round_trip_exactly():
    rng = np.random.default_rng(0)
    cmap = ClassMap(DESED_CLASSES)
    for trial in range(50):
        rows = []
        for c in rng.choice(10, size=4, replace=False):
            cuts = np.sort(rng.choice(251, size=4, replace=False))  # two separated runs per class
            for start, end in ((cuts[0], cuts[1]), (cuts[2] + 1, cuts[3])):
                if end > start:
                    rows.append((round(start * 0.04, 3), round(end * 0.04, 3), DESED_CLASSES[c]))
        events = _events(rows)
        frames = events_to_frames(events, cmap, 250, grid=ATST_GRID)
        assert frames.shape == (250, 10) and frames.dtype == np.float32
        decoded = frames_to_events(frames > 0, DESED_CLASSES, "clip.wav", grid=ATST_GRID)
        want = events.assign(filename="clip.wav").sort_values(["onset", "event_label"]).reset_index(drop=True)
        got = decoded.sort_values(["onset", "event_label"]).reset_index(drop=True)
        assert got["onset"].tolist() == want["onset"].tolist(), trial
        assert got["offset"].tolist() == want["offset"].tolist(), trial
        assert got["event_label"].tolist() == want["event_label"].tolist()
        assert (frames_to_events(frames > 0, DESED_CLASSES, "clip.wav", grid=ATST_GRID)["filename"] == "clip.wav").all()


def test_onset_floor_offset_ceil_exclusive():
    cmap = ClassMap(["a", "b"])
    frames = events_to_frames(_events([(0.05, 0.13, "a"), (0.041, 0.042, "b"), (0.12, 0.2, "b")]), cmap, 250, grid=ATST_GRID)
    assert np.flatnonzero(frames[:, 0]).tolist() == [1, 2, 3]  # floor(1.25) .. ceil(3.25) - 1
    assert np.flatnonzero(frames[:, 1]).tolist() == [1, 3, 4]  # a 1 ms event still marks its frame; 0.12 → 3 exactly
    assert frames.sum() == 6


def test_clipping_to_the_window_and_crop_offsets():
    cmap = ClassMap(["a"])
    frames = events_to_frames(_events([(9.9, 10.115, "a"), (10.2, 10.5, "a")]), cmap, n_frames=250, grid=ATST_GRID)
    assert np.flatnonzero(frames[:, 0]).tolist() == [247, 248, 249]
    full = events_to_frames(_events([(1.0, 3.0, "a"), (5.5, 9.0, "a")]), cmap, n_frames=250, grid=ATST_GRID)
    crop = events_to_frames(_events([(1.0, 3.0, "a"), (5.5, 9.0, "a")]), cmap, n_frames=100, offset_seconds=2.0, grid=ATST_GRID)
    np.testing.assert_array_equal(crop, full[50:150])
    assert events_to_frames(_events([(np.nan, np.nan, np.nan)]), cmap, 250, grid=ATST_GRID).sum() == 0
    assert events_to_frames(_events([]), cmap, 250, grid=ATST_GRID).shape == (250, 1)


def _reference_decode(binary, scores):
    """Frame-by-frame reference (a Python loop, for the test only)."""
    out = []
    for c in range(binary.shape[1]):
        start = None
        for t in range(binary.shape[0] + 1):
            on = t < binary.shape[0] and binary[t, c]
            if on and start is None:
                start = t
            if not on and start is not None:
                out.append((start, t, c, float(np.mean(scores[start:t, c]))))
                start = None
    return sorted(out, key=lambda r: (r[0], r[2], r[1]))


def test_vectorised_decoding_matches_a_frame_loop_with_scores():
    rng = np.random.default_rng(1)
    for _ in range(20):
        scores = rng.uniform(size=(250, 10))
        binary = scores > rng.uniform(0.3, 0.8)
        df = frames_to_events(binary, DESED_CLASSES, "x.wav", offset_seconds=20.0, scores=scores, grid=ATST_GRID)
        ref = _reference_decode(binary, scores)
        assert len(df) == len(ref)
        np.testing.assert_allclose(df["onset"], [20.0 + s * 0.04 for s, *_ in ref], atol=1e-9)
        np.testing.assert_allclose(df["offset"], [20.0 + e * 0.04 for _, e, *_ in ref], atol=1e-9)
        assert df["event_label"].tolist() == [DESED_CLASSES[c] for *_, c, _ in ref]
        np.testing.assert_allclose(df["score"], [m for *_, m in ref], rtol=1e-12)


def test_decoding_edges_and_empty():
    binary = np.zeros((250, 2), bool)
    binary[:, 1] = True
    binary[0:1, 0] = True
    df = frames_to_events(binary, ["a", "b"], "f.wav", grid=ATST_GRID)
    assert df[["onset", "offset", "event_label"]].values.tolist() == [[0.0, 0.04, "a"], [0.0, 10.0, "b"]]
    empty = frames_to_events(np.zeros((250, 2), bool), ["a", "b"], "f.wav", scores=np.zeros((250, 2)), grid=ATST_GRID)
    assert list(empty.columns) == ["filename", "onset", "offset", "event_label", "score"] and len(empty) == 0
    with pytest.raises(ValueError):
        frames_to_events(np.zeros((250, 3), bool), ["a", "b"], "f.wav", grid=ATST_GRID)


def test_weak_multi_hot():
    vec = weak_multi_hot(["Dog", "Speech", "Dog"], DESED_CLASSES)
    assert vec.dtype == np.float32 and vec.tolist() == [0, 0, 0, 0, 1, 0, 0, 0, 1, 0]
    assert weak_multi_hot([], DESED_CLASSES).sum() == 0
    with pytest.raises(KeyError):
        weak_multi_hot(["Bird"], DESED_CLASSES)
