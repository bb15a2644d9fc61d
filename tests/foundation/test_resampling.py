"""Resampling to 16 kHz: the common rates keep torchaudio's sinc (same numbers as always), rates that
share little with 16 kHz use polyphase filtering in bounded memory (block-wise reading equals
resampling the whole file: tests/inference/test_windows.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF
from scipy.signal import resample_poly

from atst_sed.audio import resample, resample_plan

COMMON_RATES = (8000, 11025, 12000, 22050, 24000, 32000, 44100, 48000, 88200, 96000, 192000)
ODD_RATES = (16001, 8001, 44101, 22254)


@pytest.mark.parametrize("sr", COMMON_RATES)
def test_common_rates_give_torchaudio_sinc_results_unchanged(sr):
    assert resample_plan(sr).method == "sinc"
    x = (np.random.default_rng(sr).standard_normal(int(sr * 0.7) + 3) * 0.1).astype(np.float32)
    expected = AF.resample(torch.from_numpy(x), sr, 16000).numpy()
    np.testing.assert_array_equal(resample(x, sr), expected)


@pytest.mark.parametrize("sr", ODD_RATES)
def test_odd_rates_use_the_exact_ratio_polyphase_filter(sr):
    plan = resample_plan(sr)
    assert plan.method == "polyphase" and plan.step_out * sr == plan.step_in * 16000
    x = (np.random.default_rng(sr).standard_normal(int(sr * 0.7) + 3) * 0.1).astype(np.float32)
    # scipy's resample_poly with its own default filter, in float64: the reference
    expected = resample_poly(x.astype(np.float64), plan.step_out, plan.step_in).astype(np.float32)
    got = resample(x, sr)
    assert got.dtype == np.float32 and got.shape == expected.shape == (int(np.ceil(len(x) * 16000 / sr)),)
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)


def test_polyphase_keeps_tones_and_removes_what_16_khz_cannot_hold():
    sr = 44101
    t = np.arange(sr * 2) / sr
    x = 0.5 * np.sin(2 * np.pi * 1000 * t) + 0.25 * np.sin(2 * np.pi * 5000 * t)
    alias = 0.5 * np.sin(2 * np.pi * 12000 * t)  # above 8 kHz: would fold to 4 kHz if not filtered
    got = resample((x + alias).astype(np.float32), sr)
    t16 = np.arange(len(got)) / 16000
    wanted = 0.5 * np.sin(2 * np.pi * 1000 * t16) + 0.25 * np.sin(2 * np.pi * 5000 * t16)
    inner = slice(400, -400)  # away from the zero-padded ends
    assert np.abs(got - wanted)[inner].max() < 2e-3
    spectrum = np.abs(np.fft.rfft(got[inner] * np.hanning(len(got[inner]))))
    freqs = np.fft.rfftfreq(len(got[inner]), 1 / 16000)
    at = lambda f: spectrum[np.argmin(np.abs(freqs - f))]  # noqa: E731
    assert at(4000) < 1e-3 * at(1000)  # no alias of the 12 kHz tone at 16 000 - 12 000 Hz


PEAK_SCRIPT = r"""
import json, resource, sys
import numpy as np
import scipy.signal
from atst_sed.audio import read_audio_16k
from atst_sed.audio import load_audio
read_audio_16k(sys.argv[2]); load_audio(sys.argv[2])  # a 16 kHz file: lazy imports in the baseline
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
n = len(read_audio_16k(sys.argv[1])) + len(load_audio(sys.argv[1]))
print(json.dumps({"growth_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before, "n": n}))
"""


@pytest.mark.parametrize("sr", [16001, 8001])
def test_odd_rate_decodes_in_bounded_memory(tmp_path, sr):
    """A 3 s file at 16001 Hz used to peak at 4.9 GB (torchaudio's 16000 × 16015 float64 kernel)."""
    seconds = 3
    sf.write(tmp_path / "odd.wav", np.zeros(sr * seconds, np.float32), sr, subtype="PCM_16")
    sf.write(tmp_path / "warm.wav", np.zeros(1600, np.float32), 16000, subtype="PCM_16")
    proc = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(tmp_path / "odd.wav"), str(tmp_path / "warm.wav")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["n"] == 2 * 16000 * seconds
    assert result["growth_mb"] < 100, result
