"""Nothing in detection knows 40 ms: a model on a 64 ms grid (mel hop 256, 4 frames per output, 156
frames per window, as ATST-SED's CNN branch) goes through ``atst-sed detect`` — window plan,
overlap-add, decoding, events CSV, score files, pictures — with every time on its own grid, read from
its checkpoint alone."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from atst_sed.cli.main import main
from atst_sed.frontend import FrontendConfig
from atst_sed.inference.detector import Detector
from atst_sed.models.checkpoint import save_checkpoint
from atst_sed.timegrid import FrameGrid
from inference_helpers import CLASSES, LOUD, loud_model, noise_with_bursts

GRID_64 = FrameGrid(mel_hop_samples=256, frames_per_output=4)
WINDOW_FRAMES = 156  # a 156-token positional table: windows of 156 × 1024 samples (9.984 s)


@pytest.fixture(scope="module")
def model_64ms():
    return loud_model(FrontendConfig(hop_length=256), max_tokens=WINDOW_FRAMES)


@pytest.fixture(scope="module")
def ckpt_64ms(model_64ms, tmp_path_factory):
    decoding = {"thresholds": [0.5] * len(CLASSES), "median_filter": [7] * len(CLASSES)}
    decoding["thresholds"][1] = 0.8  # the constant class stays silent
    return save_checkpoint(tmp_path_factory.mktemp("grid64") / "loud64.ckpt", model_64ms, decoding=decoding)


def test_the_checkpoint_states_the_grid_and_window_detection_uses(ckpt_64ms):
    det = Detector.from_checkpoint(ckpt_64ms, device="cpu", hop_seconds=5.0)
    assert det.spec.grid == GRID_64 and det.spec.grid.frame_seconds == 0.064
    assert det.spec.window_samples == WINDOW_FRAMES * 1024 and det.windows.window_frames == WINDOW_FRAMES
    assert det.windows.hop_frames == 78  # 5 s in 64 ms frames


def test_long_recordings_are_windows_of_the_model_overlap_added_on_its_grid(model_64ms):
    det = Detector(model_64ms, device="cpu", hop_seconds=5.0, batch_size=3, precision="fp32")
    wave = np.random.default_rng(5).standard_normal(int(16000 * 37.3) + 11).astype(np.float32) * 0.1
    got = det.scores_audio(wave, "x")
    assert got.probs.shape == (GRID_64.n_frames(len(wave)), len(CLASSES)) and got.frame_seconds == 0.064
    windows = det.windows.plan(len(wave))
    assert len(windows) > 3 and all(w.sample_start == w.start * 1024 for w in windows)
    each = []
    for w in windows:  # the model on each window by itself
        with torch.inference_mode():
            each.append(model_64ms(*model_64ms.features(torch.from_numpy(wave[w.sample_start : w.sample_stop])[None])).frame_probs[0].numpy())
    np.testing.assert_allclose(got.probs, det.windows.overlap_add(windows, each, len(wave)), atol=1e-5)


def test_detect_writes_events_scores_and_pictures_on_the_64ms_grid(ckpt_64ms, write_wav, tmp_path):
    bursts = [(3.0, 6.0), (15.5, 21.0)]
    x = noise_with_bursts(23.7, bursts)
    wav = write_wav("long.wav", x)
    out, scores_dir, plots = tmp_path / "events.csv", tmp_path / "scores", tmp_path / "plots"
    assert main(["detect", str(wav), "-c", str(ckpt_64ms), "-o", str(out), "--scores-dir", str(scores_dir),
                 "--plot", str(plots), "--device", "cpu"]) == 0
    events = pd.read_csv(out)
    loud = events[events.event_label == LOUD]
    assert len(loud) == 2 and set(events.event_label) == {LOUD}
    for (onset, offset), (a, b) in zip(loud[["onset", "offset"]].to_numpy(), bursts):
        assert abs(onset - a) <= 0.064 + 1e-9 and abs(offset - b) <= 0.064 + 1e-9
        for t in (onset, offset):  # on the 64 ms grid (written with 3 decimals, exact for multiples of 0.064)
            assert t / 0.064 == pytest.approx(round(t / 0.064), abs=1e-9), t
    table = pd.read_csv(scores_dir / "long.tsv", sep="\t")
    n = GRID_64.n_frames(len(x))
    assert list(table.columns) == ["onset", "offset", *CLASSES] and len(table) == n
    np.testing.assert_allclose(table["onset"], np.arange(n) * 0.064, atol=1e-9)
    np.testing.assert_allclose(table["offset"] - table["onset"], 0.064, atol=1e-9)
    assert (plots / "long.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
