"""The ATST log-mel frontend against an independent numpy/scipy computation (atst.md §1)."""

from __future__ import annotations

import librosa
import numpy as np
import pytest
import torch
from foundation_helpers import htk_mel_filterbank, reference_logmel

from atst_sed.frontend import LogMelFrontend


def _clip(n: int, seed: int, gain: float = 0.3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000.0
    tone = np.sin(2 * np.pi * (300 + 40 * seed) * t) * np.linspace(0.2, 1.0, n)
    return (gain * (0.5 * tone + 0.1 * rng.standard_normal(n))).astype(np.float32)


def test_filterbank_by_hand_matches_librosa_htk():
    ours = htk_mel_filterbank()
    theirs = librosa.filters.mel(sr=16000, n_fft=1024, n_mels=64, fmin=60, fmax=7800, htk=True, norm=None).T
    np.testing.assert_allclose(ours, theirs, atol=1e-6)


def test_frontend_matches_independent_reference_10s():
    wave = _clip(160000, seed=1)
    feats = LogMelFrontend()(torch.from_numpy(wave))
    assert feats.shape == (64, 1001) and feats.dtype == torch.float32
    np.testing.assert_allclose(feats.numpy(), reference_logmel(wave), atol=1e-4)


def test_frontend_top_db_floor_and_no_clipping():
    wave = _clip(16000, seed=2)
    wave[8000:] = 0.0  # digital silence: floored at max - 80 dB, may fall below -1 (not clipped)
    feats = LogMelFrontend()(torch.from_numpy(wave)).numpy()
    np.testing.assert_allclose(feats, reference_logmel(wave), atol=1e-4)
    floor = feats.max() - 80.0 / 130.3324 * 2.0
    assert feats.min() == pytest.approx(floor, abs=1e-4)


def test_batch_does_not_share_the_max_across_clips():
    loud, quiet = _clip(48000, 3, gain=1.0), _clip(48000, 4, gain=1e-3)
    front = LogMelFrontend()
    batch = front(torch.from_numpy(np.stack([loud, quiet])))
    for i, wave in enumerate((loud, quiet)):
        alone = front(torch.from_numpy(wave))
        torch.testing.assert_close(batch[i], alone, atol=1e-5, rtol=0)
        np.testing.assert_allclose(batch[i].numpy(), reference_logmel(wave), atol=1e-4)


def test_ragged_batch_equals_clips_alone():
    lengths = [160000, 100000, 37013]
    waves = [_clip(n, 10 + i, gain=0.1 * (i + 1)) for i, n in enumerate(lengths)]
    padded = np.zeros((3, 160000), dtype=np.float32)
    for i, w in enumerate(waves):
        padded[i, : w.size] = w
    front = LogMelFrontend()
    batch = front(torch.from_numpy(padded), torch.tensor(lengths))
    assert batch.shape == (3, 64, 1001)
    for i, w in enumerate(waves):
        frames = int(LogMelFrontend().n_frames(w.size))
        alone = front(torch.from_numpy(w))
        assert alone.shape[-1] == frames
        torch.testing.assert_close(batch[i, :, :frames], alone, atol=1e-5, rtol=0)
        np.testing.assert_allclose(alone.numpy(), reference_logmel(w), atol=1e-4)
