"""Detector: windows vs whole-file scores, short and odd lengths, time mapping, checkpoint settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atst_sed.errors import AtstSedError, InputError
from atst_sed.frontend import LogMelFrontend
from atst_sed.inference.detector import Detector
from atst_sed.inference.windows import SlidingWindows
from atst_sed.models.checkpoint import save_checkpoint
from atst_sed.models.encoder import ATSTEncoder, EncoderConfig
from atst_sed.timegrid import ATST_GRID
from inference_helpers import ALWAYS, CLASSES, LOUD, noise_with_bursts, random_model


def _direct(model, wave: np.ndarray) -> np.ndarray:
    """The model run on one piece of audio by itself: (T, C)."""
    with torch.inference_mode():
        feats = LogMelFrontend()(torch.from_numpy(wave)[None])
        return model(feats).frame_probs[0].numpy()


@pytest.fixture(scope="module")
def model():
    return random_model()


@pytest.fixture(scope="module")
def wave():
    return np.random.default_rng(3).standard_normal(int(16000 * 27.3) + 11).astype(np.float32) * 0.1


def test_long_file_equals_its_windows_where_they_do_not_overlap(model, wave):
    det = Detector(model, device="cpu", hop_seconds=10.0, batch_size=2, precision="fp32")
    got = det.scores_audio(wave, "x").probs
    n_tokens = ATST_GRID.n_frames(len(wave))
    assert got.shape == (n_tokens, len(CLASSES))
    last = n_tokens - 250  # the last window is aligned to the end
    w0 = _direct(model, wave[:160000])
    w1 = _direct(model, wave[160000:320000])
    w2 = _direct(model, wave[last * 640 : last * 640 + 160000])
    np.testing.assert_allclose(got[:250], w0, atol=1e-5)
    np.testing.assert_allclose(got[250:last], w1[: last - 250], atol=1e-5)
    np.testing.assert_allclose(got[500:], w2[500 - last :], atol=1e-5)
    # the overlap of windows 1 and 2 lies between the two windows' scores
    lo = np.minimum(w1[last - 250 :], w2[: 500 - last]) - 1e-5
    hi = np.maximum(w1[last - 250 :], w2[: 500 - last]) + 1e-5
    assert ((got[last:500] >= lo) & (got[last:500] <= hi)).all()


def test_batched_overlapping_windows_equal_one_by_one(model, wave):
    det = Detector(model, device="cpu", hop_seconds=5.0, batch_size=3, precision="fp32")
    got = det.scores_audio(wave, "x").probs
    plan = SlidingWindows(ATST_GRID, 160000, 125)
    windows = plan.plan(len(wave))
    assert len(windows) == 5
    each = [_direct(model, wave[w.sample_start : w.sample_stop]) for w in windows]
    np.testing.assert_allclose(got, plan.overlap_add(windows, each, len(wave)), atol=1e-5)


@pytest.mark.parametrize("n_samples", [513, 16000 * 3 + 37, 159999, 160000, 160001, 160479])
def test_short_and_odd_lengths_run_once_at_their_exact_length(model, wave, n_samples):
    det = Detector(model, device="cpu", precision="fp32")
    scores = det.scores_audio(wave[:n_samples], "short")
    assert scores.probs.shape == (ATST_GRID.n_frames(n_samples), len(CLASSES))
    assert scores.duration == pytest.approx(n_samples / 16000)
    assert scores.frame_seconds == 0.04
    np.testing.assert_allclose(scores.probs, _direct(model, wave[:n_samples]), atol=1e-6)


def test_too_short_is_an_input_error(model):
    with pytest.raises(InputError, match="too short"):
        Detector(model, device="cpu").scores_audio(np.zeros(512, np.float32), "tiny.wav")


def test_events_map_to_time_on_the_40ms_grid(loud_ckpt, write_wav):
    x = noise_with_bursts(23.7, [(3.0, 6.0), (15.5, 21.0)], sr=44100)
    path = write_wav("long.wav", np.stack([x, 0.5 * x], axis=1), sr=44100)
    det = Detector.from_checkpoint(loud_ckpt, device="cpu")
    scores = det.scores(path)
    assert scores.probs.shape[0] == ATST_GRID.n_frames(int(np.ceil(len(x) * 16000 / 44100)))
    events = det.events(scores)
    loud = events[events.event_label == LOUD]
    assert len(loud) == 2 and set(events.event_label) == {LOUD}  # ALWAYS stays below its 0.8 threshold
    for (onset, offset), (a, b) in zip(loud[["onset", "offset"]].to_numpy(), [(3.0, 6.0), (15.5, 21.0)]):
        assert abs(onset - a) <= 0.04 + 1e-9 and abs(offset - b) <= 0.04 + 1e-9
        assert onset * 25 == pytest.approx(round(onset * 25), abs=1e-6)  # on the token grid
        assert offset * 25 == pytest.approx(round(offset * 25), abs=1e-6)
    assert (loud.score > 0.9).all()
    df = det.detect([path])
    assert list(df.columns) == ["filename", "onset", "offset", "event_label", "score"]
    assert (df.filename == "long.wav").all() and len(df) == 2


def test_decoding_settings_from_checkpoint_and_overrides(loud_ckpt):
    det = Detector.from_checkpoint(loud_ckpt, device="cpu")
    assert det.thresholds[1] == 0.8 and det.thresholds[0] == 0.5 and det.median_sizes == [7] * 10
    det = Detector.from_checkpoint(loud_ckpt, device="cpu", thresholds={ALWAYS: 0.7}, median_filter={LOUD: 3})
    assert det.thresholds[1] == 0.7 and det.thresholds[0] == 0.5
    assert det.median_sizes[0] == 3 and det.median_sizes[1] == 7
    det = Detector.from_checkpoint(loud_ckpt, device="cpu", thresholds=0.2, median_filter=1)
    assert det.thresholds == [0.2] * 10 and det.median_sizes == [1] * 10
    events = det.events(det.scores_audio(np.full(32000, 1e-3, np.float32), "c.wav"))
    assert list(events.event_label) == CLASSES[1:]  # the constant classes, above 0.2 for the whole clip
    assert events.onset.eq(0).all() and np.allclose(events.offset, 2.0)
    with pytest.raises(AtstSedError, match="unknown class 'Doggo'"):
        Detector.from_checkpoint(loud_ckpt, device="cpu", thresholds={"Doggo": 0.3})
    with pytest.raises(AtstSedError, match="one per class"):
        Detector.from_checkpoint(loud_ckpt, device="cpu", thresholds=[0.1, 0.2])


def test_checkpoint_without_head_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "enc.ckpt", ATSTEncoder(EncoderConfig.named("frame_tiny")))
    with pytest.raises(InputError, match="needs a fine-tuned SED checkpoint"):
        Detector.from_checkpoint(path, device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without a GPU")
def test_cuda_without_gpu_is_a_clear_error(loud_ckpt):
    with pytest.raises(AtstSedError, match="no CUDA GPU"):
        Detector.from_checkpoint(loud_ckpt, device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_bf16_matches_cpu(model, wave):
    cpu = Detector(model, device="cpu", precision="fp32").scores_audio(wave, "x").probs
    gpu = Detector(random_model(), device="cuda").scores_audio(wave, "x").probs
    np.testing.assert_allclose(gpu, cpu, atol=0.05)


def test_bf16_autocast_path_is_close_to_float32(model, wave):
    """`--precision bf16` on CPU: float32 frontend, bf16 encoder, float32 head."""
    fp32 = Detector(model, device="cpu", precision="fp32").scores_audio(wave, "x")
    bf16 = Detector(model, device="cpu", precision="bf16").scores_audio(wave, "x")
    assert bf16.probs.dtype == fp32.probs.dtype == np.float32 and bf16.probs.shape == fp32.probs.shape
    np.testing.assert_allclose(bf16.probs, fp32.probs, atol=0.05)
    assert not np.array_equal(bf16.probs, fp32.probs)  # bf16 really ran


def test_recordings_of_different_lengths_share_batches_exactly(model, wave):
    """Several files scored together (padded, masked windows) equal each file scored alone."""
    det = Detector(model, device="cpu", batch_size=4, precision="fp32")
    pieces = [wave[:16000 * 2 + 333], wave[5000 : 5000 + 16000 * 7], wave[:16000 * 12 + 99], wave[100:900]]
    together = det.scores_many([(p, f"f{i}") for i, p in enumerate(pieces)])
    for i, (p, scores) in enumerate(zip(pieces, together)):
        alone = det.scores_audio(p, f"f{i}")
        assert scores.filename == f"f{i}" and scores.probs.shape == (ATST_GRID.n_frames(len(p)), len(CLASSES))
        np.testing.assert_allclose(scores.probs, alone.probs, atol=1e-5)
