"""The frame grid as a value: ATST's 40 ms grid and ATST-SED's 64 ms grid, conversions and label
encoding on each (frames ↔ seconds exact on the grid)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from atst_sed.decoding import frames_to_events
from atst_sed.frontend import FrontendConfig, LogMelFrontend
from atst_sed.labels import ClassMap, events_to_frames
from atst_sed.timegrid import ATST_GRID, FrameGrid

GRID_64 = FrameGrid(mel_hop_samples=256, frames_per_output=4)  # ATST-SED's CNN branch: 64 ms after time pooling


@pytest.mark.parametrize(
    "grid, hop, seconds, per_second, ten_seconds_mel, ten_seconds_frames",
    [(ATST_GRID, 640, 0.04, 25.0, 1001, 250), (GRID_64, 1024, 0.064, 15.625, 626, 156)],
    ids=["40ms", "64ms"],
)
def test_a_grid_states_its_frame_length_and_counts(grid, hop, seconds, per_second, ten_seconds_mel, ten_seconds_frames):
    assert (grid.hop_samples, grid.frame_seconds, grid.frames_per_second) == (hop, seconds, per_second)
    assert grid.n_mel_frames(160000) == ten_seconds_mel and grid.n_frames(160000) == ten_seconds_frames
    # the same counts for ints, NumPy arrays and tensors
    lengths = np.array([160000, 96000, 479])
    assert grid.n_frames(lengths).tolist() == [grid.n_frames(int(n)) for n in lengths]
    assert grid.n_frames(torch.from_numpy(lengths)).tolist() == grid.n_frames(lengths).tolist()


@pytest.mark.parametrize("grid", [ATST_GRID, GRID_64], ids=["40ms", "64ms"])
def test_mel_frames_of_the_frontend_make_the_grid(grid):
    frontend = LogMelFrontend(FrontendConfig(hop_length=grid.mel_hop_samples))
    for n in (513, 16000, 96000 + 37, 160000):
        assert frontend(torch.zeros(n) + 1e-3).shape[-1] == grid.n_mel_frames(n) == frontend.n_frames(n)


@pytest.mark.parametrize("grid", [ATST_GRID, GRID_64], ids=["40ms", "64ms"])
def test_times_on_the_grid_convert_exactly_both_ways(grid):
    for frame in range(0, 400, 7):
        seconds = round(float(grid.frame_to_seconds(frame)), 6)  # as event tables write them
        assert grid.seconds_to_frame(seconds, "floor") == grid.seconds_to_frame(seconds, "ceil") == frame
    between = grid.frame_seconds * 2.5
    assert (grid.seconds_to_frame(between, "floor"), grid.seconds_to_frame(between, "ceil")) == (2, 3)
    assert grid.seconds_to_frame(0.12) == (3 if grid is ATST_GRID else 1)  # 0.12 s is ATST frame 3, not 2.9999…
    with pytest.raises(ValueError, match="rounding"):
        grid.seconds_to_frame(0.5, "nearest")


def _events(rows):
    return pd.DataFrame(rows, columns=["onset", "offset", "event_label"])


@pytest.mark.parametrize("grid", [ATST_GRID, GRID_64], ids=["40ms", "64ms"])
def test_labels_encode_and_decode_on_the_models_grid(grid):
    cmap = ClassMap(["a", "b"])
    n = grid.n_frames(160000)
    h = grid.frame_seconds
    rows = [(round(3 * h, 6), round(10 * h, 6), "a"), (round(40 * h, 6), round(n * h, 6), "b")]
    frames = events_to_frames(_events(rows), cmap, n, grid=grid)
    assert frames.shape == (n, 2)
    assert np.flatnonzero(frames[:, 0]).tolist() == list(range(3, 10))
    decoded = frames_to_events(frames > 0, cmap.names, "clip.wav", grid=grid)
    assert decoded[["onset", "offset", "event_label"]].values.tolist() == [list(r) for r in rows]
    # a crop that starts on a frame boundary shifts the targets by whole frames
    crop = events_to_frames(_events(rows), cmap, 100, offset_seconds=20 * h, grid=grid)
    np.testing.assert_array_equal(crop, frames[20:120])
    # an event off the grid covers every frame it touches: onset floor, offset ceil
    off_grid = events_to_frames(_events([(1.001 * h, 2.5 * h, "a")]), cmap, n, grid=grid)
    assert np.flatnonzero(off_grid[:, 0]).tolist() == [1, 2]


def test_a_grid_needs_positive_sizes():
    with pytest.raises(ValueError):
        FrameGrid(0, 4)
    assert ATST_GRID.to_dict() == {"mel_hop_samples": 160, "frames_per_output": 4, "sample_rate": 16000}
    assert GRID_64.describe() == "64 ms frames (4 × 256-sample mel hops at 16000 Hz)"
