"""Audio input: formats, resampling, down-mixing and one-line errors for unusable files."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF

from atst_sed.audio import load_audio
from atst_sed.errors import InputError


def _stereo_44k(seconds: float = 1.5) -> np.ndarray:
    rng = np.random.default_rng(0)
    t = np.arange(int(44100 * seconds)) / 44100.0
    left = 0.4 * np.sin(2 * np.pi * 440 * t)
    right = 0.3 * np.sin(2 * np.pi * 1250 * t) + 0.05 * rng.standard_normal(t.size)
    return np.stack([left, right], axis=1).astype(np.float32)  # (samples, 2)


@pytest.mark.parametrize("fmt,subtype", [("WAV", "FLOAT"), ("FLAC", "PCM_24"), ("OGG", "VORBIS")])
def test_stereo_44k_becomes_mono_16k(fmt, subtype, tmp_path):
    data = _stereo_44k()
    path = tmp_path / f"clip.{fmt.lower()}"
    sf.write(path, data, 44100, format=fmt, subtype=subtype)
    stored, sr = sf.read(path, dtype="float32", always_2d=True)  # what the file really holds (lossy for ogg)
    assert sr == 44100 and stored.shape[1] == 2
    expected = AF.resample(torch.from_numpy(stored.T.copy()).mean(dim=0), 44100, 16000)
    wav = load_audio(path)
    assert wav.dtype == torch.float32 and wav.dim() == 1
    assert wav.shape[0] == expected.shape[0] == int(np.ceil(stored.shape[0] * 16000 / 44100))
    torch.testing.assert_close(wav, expected, atol=1e-6, rtol=0)
    if fmt != "OGG":  # lossless: also equal to the original signal's mix
        direct = AF.resample(torch.from_numpy(data.T.copy()).mean(dim=0), 44100, 16000)
        torch.testing.assert_close(wav, direct, atol=1e-4, rtol=0)


def test_int16_pcm_16k_is_scaled_not_resampled(tmp_path):
    pcm = (np.random.default_rng(1).uniform(-0.9, 0.9, 16000) * 32767).astype(np.int16)
    path = tmp_path / "pcm.wav"
    sf.write(path, pcm, 16000, subtype="PCM_16")
    wav = load_audio(path)
    np.testing.assert_array_equal(wav.numpy(), pcm.astype(np.float32) / 32768.0)


def _zero_length_wav(path):
    sf.write(path, np.zeros((0, 1), dtype=np.float32), 16000)


def _nan_wav(path):
    data = np.zeros(1600, dtype=np.float32)
    data[100] = np.nan
    sf.write(path, data, 16000, subtype="FLOAT")


def _inf_wav(path):
    data = np.zeros(1600, dtype=np.float32)
    data[5] = np.inf
    sf.write(path, data, 16000, subtype="FLOAT")


@pytest.mark.parametrize(
    "name,make,problem",
    [
        ("empty.wav", lambda p: p.write_bytes(b""), "empty"),
        ("zero.wav", _zero_length_wav, "no audio"),
        ("nan.wav", _nan_wav, "NaN"),
        ("inf.wav", _inf_wav, "infinite"),
        ("text.wav", lambda p: p.write_bytes(b"this is not audio at all\n" * 50), "not a readable audio"),
        ("truncated.flac", lambda p: p.write_bytes(b"fLaC\x00\x00\x00\x22" + b"\x00" * 10), "not a readable audio"),
        ("missing.wav", lambda p: None, "no such file"),
    ],
)
def test_bad_audio_is_one_line_naming_the_file(name, make, problem, tmp_path):
    path = tmp_path / name
    make(path)
    with pytest.raises(InputError) as info:
        load_audio(path)
    message = str(info.value)
    assert message.startswith(str(path)) and problem in message and "\n" not in message
