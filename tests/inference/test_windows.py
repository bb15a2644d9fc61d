"""Window grid, overlap-add invariants and streamed (block-wise) audio reading."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF
from scipy.signal import resample_poly

from atst_sed.audio import read_audio_16k, resample_plan
from atst_sed.errors import InputError
from atst_sed.inference.windows import OverlapAdd, SlidingWindows, taper, window_starts
from atst_sed.timegrid import ATST_GRID, FrameGrid

WINDOW_SAMPLES, WINDOW_FRAMES, HOP_SAMPLES = 160000, 250, 640  # ATST: 10 s windows of 40 ms frames


def windows_every(hop: int, grid: FrameGrid = ATST_GRID) -> SlidingWindows:
    return SlidingWindows(grid, WINDOW_SAMPLES, hop)


def test_hops_in_seconds_are_whole_frames_of_the_grid():
    assert windows_every(1).window_frames == WINDOW_FRAMES
    assert [SlidingWindows.with_hop_seconds(ATST_GRID, WINDOW_SAMPLES, s).hop_frames for s in (5.0, 10.0, 0.04)] == [125, 250, 1]
    for bad in (12.0, 0.0):
        with pytest.raises(ValueError, match=r"between 0.04 s and 10 s"):
            SlidingWindows.with_hop_seconds(ATST_GRID, WINDOW_SAMPLES, bad)
    grid64 = FrameGrid(256, 4)  # 64 ms frames: a 10 s window has 156 of them (9.984 s)
    assert SlidingWindows.with_hop_seconds(grid64, WINDOW_SAMPLES, 5.0).hop_frames == 78
    assert SlidingWindows.with_hop_seconds(grid64, WINDOW_SAMPLES, 0.064).window_frames == 156


def test_window_starts():
    assert window_starts(100, 125, 250).tolist() == [0]
    assert window_starts(250, 125, 250).tolist() == [0]
    assert window_starts(251, 125, 250).tolist() == [0, 1]
    assert window_starts(500, 125, 250).tolist() == [0, 125, 250]
    assert window_starts(600, 250, 250).tolist() == [0, 250, 350]  # last window aligned to the end


@pytest.mark.parametrize("n_samples", [480, 16000 * 3 + 7, 159840, 160000, 160001, 160640, 16000 * 23 + 321, 16000 * 61])
@pytest.mark.parametrize("hop", [1, 125, 173, 250])
@pytest.mark.parametrize("grid", [ATST_GRID, FrameGrid(256, 4)], ids=["40ms", "64ms"])
def test_plan_windows_cover_the_recording_exactly(n_samples, hop, grid):
    plan = windows_every(min(hop, 156), grid)
    n_frames = grid.n_frames(n_samples)
    windows = plan.plan(n_samples)
    covered = np.zeros(n_frames, dtype=int)
    for w in windows:
        assert w.sample_start == w.start * grid.hop_samples
        assert 0 <= w.sample_start < w.sample_stop <= n_samples
        assert grid.n_frames(w.sample_stop - w.sample_start) <= plan.window_frames
        # the window's own audio gives exactly its frames (no padding, nothing past the end)
        assert w.n_frames == grid.n_frames(w.sample_stop - w.sample_start)
        covered[w.start : w.start + w.n_frames] += 1
    assert (covered >= 1).all()
    assert windows[-1].start + windows[-1].n_frames == n_frames
    if n_frames > plan.window_frames:
        assert all(w.n_frames == plan.window_frames for w in windows)
        assert all(w.sample_stop - w.sample_start <= WINDOW_SAMPLES for w in windows)
    else:
        assert len(windows) == 1 and windows[0].sample_stop == n_samples


def test_taper_discounts_edges_but_never_reaches_zero():
    w = taper(250)
    assert w.min() > 0.05 and w.max() <= 1.0
    np.testing.assert_allclose(w, w[::-1])
    assert w[0] < w[60] < w[124]


@pytest.mark.parametrize("n_frames,hop", [(250, 125), (251, 125), (700, 125), (700, 250), (1013, 37)])
def test_overlap_add_identity(n_frames, hop):
    """Constant per-window scores stay exactly constant everywhere, edges included; windows that
    are slices of one track give back that track."""
    n_samples = n_frames * HOP_SAMPLES
    plan = windows_every(hop)
    windows = plan.plan(n_samples)
    const = [np.full((w.n_frames, 3), 0.37) for w in windows]
    np.testing.assert_allclose(plan.overlap_add(windows, const, n_samples), 0.37, rtol=1e-6)
    track = np.random.default_rng(0).random((n_frames, 3))
    slices = [track[w.start : w.start + w.n_frames] for w in windows]
    np.testing.assert_allclose(plan.overlap_add(windows, slices, n_samples), track, rtol=1e-6)


def test_overlap_add_weights_window_centres_more():
    acc = OverlapAdd(375, 1, 250)
    acc.add(0, np.zeros((250, 1)))
    acc.add(125, np.ones((250, 1)))
    out = acc.result()[:, 0]
    assert out[124] == 0 and out[250] == 1  # covered by one window only
    assert out[130] < 0.5 < out[245]  # inside the overlap, the window whose centre is closer wins
    assert np.all(np.diff(out[125:250]) >= 0)


def test_overlap_add_uncovered_frames_are_an_error():
    acc = OverlapAdd(10, 1, 250)
    acc.add(0, np.zeros((5, 1)))
    with pytest.raises(RuntimeError):
        acc.result()


def _resampled_whole(mono: np.ndarray, sr: int) -> np.ndarray:
    """The whole signal resampled by the reference library of its rate's method."""
    if sr == 16000:
        return mono
    if resample_plan(sr).method == "sinc":
        return AF.resample(torch.from_numpy(mono), sr, 16000).numpy()
    plan = resample_plan(sr)  # scipy's polyphase resampler with its default filter
    return resample_poly(mono.astype(np.float64), plan.step_out, plan.step_in).astype(np.float32)


@pytest.mark.parametrize("sr,channels", [(16000, 1), (44100, 2), (8000, 1), (48000, 3), (22050, 2), (11025, 2),
                                         (16001, 1), (44101, 2), (8001, 1), (22254, 1)])
def test_block_reading_equals_whole_file_resampling(tmp_path, sr, channels):
    rng = np.random.default_rng(sr)
    data = (rng.standard_normal((int(sr * 3.37) + 5, channels)) * 0.1).astype(np.float32)
    path = tmp_path / "x.wav"
    sf.write(path, data, sr, subtype="FLOAT")
    got = read_audio_16k(path, block_seconds=0.5)  # several blocks, odd block boundaries
    expected = _resampled_whole(data.mean(axis=1), sr)
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_reading_other_formats_and_bad_files(tmp_path):
    x = (np.sin(np.arange(24000) / 10.0) * 0.5).astype(np.float32)
    sf.write(tmp_path / "a.flac", x, 24000)
    sf.write(tmp_path / "a.ogg", x, 24000)
    for name in ("a.flac", "a.ogg"):
        assert len(read_audio_16k(tmp_path / name)) == 16000
    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "text.wav").write_text("not audio at all")
    nan = x.copy()
    nan[5000] = np.inf
    sf.write(tmp_path / "inf.wav", nan, 24000, subtype="FLOAT")
    for name, problem in [("empty.wav", "empty"), ("text.wav", "not a readable audio"), ("inf.wav", "NaN or infinite"), ("missing.wav", "no such file")]:
        with pytest.raises(InputError, match=problem) as err:
            read_audio_16k(tmp_path / name)
        assert name in str(err.value)


def test_truncated_wav_reads_what_is_there(tmp_path):
    x = (np.random.default_rng(0).standard_normal(32000) * 0.1).astype(np.float32)
    sf.write(tmp_path / "full.wav", x, 16000, subtype="PCM_16")
    raw = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(raw[: len(raw) // 2 + 1])  # half the data, odd byte count
    got = read_audio_16k(tmp_path / "cut.wav")
    assert 15000 < len(got) <= 16000
    np.testing.assert_allclose(got, read_audio_16k(tmp_path / "full.wav")[: len(got)])
    (tmp_path / "header.wav").write_bytes(raw[:30])  # header only, cut inside
    with pytest.raises(InputError, match="header.wav"):
        read_audio_16k(tmp_path / "header.wav")
