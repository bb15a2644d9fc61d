"""Decoding: settings per class, median filter, thresholds and events against scipy.ndimage, sed_scores_eval's
format and hand cases; one multi-threshold decoder for probabilities and score tables."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
import scipy.ndimage

from atst_sed.decoding import (
    Decoding,
    DecodingError,
    dcase2022_thresholds,
    decode_events,
    decode_operating_points,
    median_filter,
    scores_to_operating_points,
)
from atst_sed.errors import AtstSedError
from atst_sed.score_files import score_dataframe
from atst_sed.timegrid import ATST_GRID, FrameGrid

CLASSES = ["a", "b", "c", "d"]


def test_median_filter_hand_cases():
    x = np.array([0, 0, 1, 0, 0, 1, 1, 0, 1, 1, 1], dtype=np.float32)[:, None]
    # size 3: isolated ones vanish, the one-frame gap inside 1 1 0 1 1 1 is filled
    expected = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1], dtype=np.float32)[:, None]
    np.testing.assert_array_equal(median_filter(x, 3), expected)
    np.testing.assert_array_equal(median_filter(x, 1), x)  # size 1 = identity
    # reflect mode at the edges: [1 0 0 ...] with size 3 keeps frame 0 at median(1, 1, 0) = 1
    y = np.array([1, 0, 0, 0], dtype=np.float32)[:, None]
    np.testing.assert_array_equal(median_filter(y, 3)[:, 0], [1, 0, 0, 0])


@pytest.mark.parametrize("sizes", [[1, 3, 4, 7], [5, 5, 5, 5], 9, [2, 7, 2, 1]])
def test_median_filter_matches_scipy_per_class(sizes):
    rng = np.random.default_rng(0)
    probs = rng.random((60, 4)).astype(np.float32)
    out = median_filter(probs, sizes)
    per = [sizes] * 4 if isinstance(sizes, int) else sizes
    for c, k in enumerate(per):
        np.testing.assert_array_equal(out[:, c], scipy.ndimage.median_filter(probs[:, c], size=k, mode="reflect"))
    # batched (B, T, C) = per-item
    batch = rng.random((3, 40, 4)).astype(np.float32)
    out_b = median_filter(batch, sizes)
    for i in range(3):
        np.testing.assert_array_equal(out_b[i], median_filter(batch[i], sizes))
    assert out.dtype == probs.dtype and out is not probs


def test_median_filter_rejects_wrong_sizes():
    with pytest.raises(ValueError, match="one per class"):
        median_filter(np.zeros((5, 4)), [3, 3])


@pytest.mark.parametrize("size", [3, 4, 7, 8])
def test_filter_then_threshold_equals_dcase_threshold_then_filter(size):
    """DCASE baselines threshold first and median-filter the decisions; we filter scores once."""
    rng = np.random.default_rng(size)
    probs = rng.random((200, 4)).astype(np.float32)
    filtered = median_filter(probs, size)
    for t in (0.1, 0.5, 0.77):
        dcase = scipy.ndimage.median_filter((probs > t).astype(np.uint8), size=(size, 1)) > 0
        np.testing.assert_array_equal(filtered > t, dcase)


def test_decode_events_hand_case():
    probs = np.zeros((100, 4), dtype=np.float32)
    probs[10:20, 0] = 0.9  # 0.40 s – 0.80 s
    probs[50:100, 0] = 0.6  # runs to the end: 2.00 – 4.00 s
    probs[5:8, 1] = 0.7  # 0.20 – 0.32 s, below its own threshold 0.8
    probs[30:41, 2] = np.linspace(0.55, 0.95, 11)  # 1.20 – 1.64 s
    df = decode_events(probs, CLASSES, thresholds=[0.5, 0.8, 0.5, 0.5], median_sizes=1, filename="x.wav", offset_seconds=1.0, grid=ATST_GRID)
    assert list(df.columns) == ["filename", "onset", "offset", "event_label", "score"]
    got = [(r.onset, r.offset, r.event_label) for r in df.itertuples()]
    assert got == [(1.4, 1.8, "a"), (2.2, 2.64, "c"), (3.0, 5.0, "a")]
    np.testing.assert_allclose(df["score"], [0.9, 0.75, 0.6], rtol=1e-6)
    assert (df["filename"] == "x.wav").all()


def test_decode_events_median_filter_removes_blips_and_fills_gaps():
    probs = np.zeros((50, 4), dtype=np.float32)
    probs[10, 0] = 1.0  # one-frame blip
    probs[20:30, 1] = 1.0
    probs[25, 1] = 0.0  # one-frame gap
    df = decode_events(probs, CLASSES, 0.5, [3, 3, 3, 3], grid=ATST_GRID)
    assert [(r.onset, r.offset, r.event_label) for r in df.itertuples()] == [(0.8, 1.2, "b")]
    # score = mean of the unfiltered probabilities over the event (the gap frame counts as 0)
    assert df["score"].iloc[0] == pytest.approx(0.9)


def test_dcase2022_thresholds():
    th = dcase2022_thresholds()
    assert len(th) == 50
    np.testing.assert_allclose(th[[0, 1, -1]], [0.01, 0.03, 0.99])


def _random_clips(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    clips = {}
    for i in range(n):
        t = int(rng.integers(5, 260))
        # smooth random tracks so events have realistic lengths
        base = scipy.ndimage.uniform_filter1d(rng.random((t, 4)), size=9, axis=0)
        clips[f"clip_{i:03d}.wav"] = base.astype(np.float32)
    clips["flat.wav"] = np.full((30, 4), 0.995, dtype=np.float32)  # runs to both clip edges
    return clips


def test_decode_operating_points_equals_per_threshold_decoding():
    clips = _random_clips(25)
    sizes = [1, 3, 7, 4]
    th = dcase2022_thresholds()
    tables = decode_operating_points(clips, CLASSES, th, sizes, grid=ATST_GRID)
    assert sorted(tables) == pytest.approx(sorted(float(t) for t in th))
    for t in th[::7]:
        expected = pd.concat([decode_events(p, CLASSES, t, sizes, name, grid=ATST_GRID) for name, p in clips.items()], ignore_index=True)
        expected = expected.sort_values(["filename", "onset", "event_label"], kind="stable").reset_index(drop=True)
        got = tables[float(round(t, 10))]
        assert list(got.columns) == ["filename", "onset", "offset", "event_label"]
        pd.testing.assert_frame_equal(got, expected.drop(columns="score"), check_dtype=False)
    # the flat clip gives one event per class covering it, not merged into the neighbours
    flat = tables[0.99][tables[0.99]["filename"] == "flat.wav"]
    assert len(flat) == 4 and (flat["onset"] == 0).all() and np.allclose(flat["offset"], 1.2)


def test_decode_operating_points_is_fast_for_a_validation_set():
    rng = np.random.default_rng(1)
    clips = {f"{i}.wav": scipy.ndimage.uniform_filter1d(rng.random((250, 10)), 9, axis=0).astype(np.float32) for i in range(1168)}
    start = time.process_time()  # CPU time: robust to other processes sharing the machine
    tables = decode_operating_points(clips, [f"c{i}" for i in range(10)], median_sizes=7, grid=ATST_GRID)
    elapsed = time.process_time() - start
    assert len(tables) == 50 and sum(len(t) for t in tables.values()) > 0
    assert elapsed < 15.0, f"50 operating points for 1168 clips took {elapsed:.1f} s"


def test_decode_operating_points_empty():
    tables = decode_operating_points({}, CLASSES, [0.5], grid=ATST_GRID)
    assert list(tables) == [0.5] and tables[0.5].empty


def test_decoding_settings_expand_once_from_one_value_a_list_or_a_class_map():
    classes = ["Dog", "Cat", "Speech"]
    default = Decoding.for_classes(classes)
    assert (default.thresholds, default.median_filter) == ((0.5,) * 3, (7,) * 3)
    one = Decoding.for_classes(classes, 0.3, 5)
    assert (one.thresholds, one.median_filter) == ((0.3,) * 3, (5,) * 3)
    listed = Decoding.for_classes(classes, [0.1, 0.2, 0.3], [1, 3, 5])
    mapped = Decoding.for_classes(classes, {"Cat": 0.9}, {"Speech": 11}, base=listed)
    assert (mapped.thresholds, mapped.median_filter) == ((0.1, 0.9, 0.3), (1, 3, 11))
    assert Decoding.from_dict(classes, mapped.to_dict()) == mapped  # what checkpoints store
    assert Decoding.from_dict(classes, {}) == default
    with pytest.raises(DecodingError, match="unknown class 'Bird'"):
        Decoding.for_classes(classes, {"Bird": 0.2})
    with pytest.raises(DecodingError, match=r"expected one value or 3 \(one per class\), got 2"):
        Decoding.for_classes(classes, median_filter=[3, 3])
    assert issubclass(DecodingError, ValueError) and issubclass(DecodingError, AtstSedError)


def test_arrays_and_score_tables_are_decoded_by_one_multi_threshold_decoder():
    """decode_operating_points (probabilities on a grid) and scores_to_operating_points (score files)
    give the same events from the same frames: one decoder (threshold_runs) behind both."""
    clips = _random_clips(12, seed=4)
    th = dcase2022_thresholds(10)
    from_arrays = decode_operating_points(clips, CLASSES, th, median_sizes=1, grid=ATST_GRID)
    tables = {name: score_dataframe(p, CLASSES, 0.04) for name, p in clips.items()}
    from_tables = scores_to_operating_points(tables, th)
    for t in th:
        a = from_arrays[float(round(t, 10))]
        b = from_tables[float(t)].sort_values(["filename", "onset", "event_label"], kind="stable").reset_index(drop=True)
        assert len(a) == len(b) and list(a["filename"]) == list(b["filename"])
        assert list(a["event_label"]) == list(b["event_label"])
        np.testing.assert_allclose(a[["onset", "offset"]], b[["onset", "offset"]], atol=1e-6)


def test_operating_points_follow_the_grid_they_are_given():
    probs = np.zeros((40, 4), dtype=np.float32)
    probs[5:9, 2] = 0.9
    grid = FrameGrid(256, 4)  # 64 ms
    table = decode_operating_points({"x": probs}, CLASSES, [0.5], median_sizes=1, grid=grid)[0.5]
    assert table[["onset", "offset", "event_label"]].values.tolist() == [[0.32, 0.576, "c"]]
    assert decode_events(probs, CLASSES, 0.5, 1, grid=grid)[["onset", "offset"]].values.tolist() == [[0.32, 0.576]]
