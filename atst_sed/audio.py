"""Audio input: any readable file → mono float32 waveform at 16 kHz."""

from __future__ import annotations

import logging
import warnings
from os import PathLike
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from atst_sed.errors import InputError
from atst_sed.fileio import open_output

SAMPLE_RATE = 16000
AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif", ".opus", ".m4a")

log = logging.getLogger(__name__)


def _read_soundfile(path: Path) -> tuple[np.ndarray, int]:
    data, sr = sf.read(str(path), dtype="float32", always_2d=True)  # (samples, channels)
    return data.T, sr


def _read_fallback(path: Path) -> tuple[np.ndarray, int]:
    import librosa  # slow import: only for formats libsndfile cannot read

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data, sr = librosa.load(str(path), sr=None, mono=False, dtype=np.float32)
    return np.atleast_2d(data), int(sr)


def check_audio_path(path: str | PathLike[str]) -> Path:
    """``path`` as a Path; :class:`InputError` if it is not a file or is empty."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such file")
    if path.stat().st_size == 0:
        raise InputError(path, "empty file")
    return path


def read_audio(path: str | PathLike[str]) -> tuple[np.ndarray, int]:
    """Read a file as it is stored: (channels, samples) float32 and its sample rate."""
    path = check_audio_path(path)
    try:
        data, sr = _read_soundfile(path)
    except Exception as first:  # libsndfile does not know the format: try the fallback decoder
        try:
            data, sr = _read_fallback(path)
        except Exception:
            raise InputError(path, f"not a readable audio file ({str(first).strip() or type(first).__name__})") from None
    return data, sr


def to_mono_16k(data: np.ndarray, sr: int, target_sr: int = SAMPLE_RATE) -> torch.Tensor:
    """(channels, samples) at ``sr`` → mono float32 tensor (samples,) at ``target_sr``."""
    wav = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32)).mean(dim=0)
    if sr != target_sr:
        wav = AF.resample(wav, sr, target_sr)
    return wav.contiguous()


def load_audio(path: str | PathLike[str], target_sr: int = SAMPLE_RATE) -> torch.Tensor:
    """Load any common audio file as a mono float32 waveform (samples,) at ``target_sr`` Hz.

    Raises :class:`InputError` (one line naming the file) for missing, empty, unreadable,
    zero-length or non-finite audio.
    """
    data, sr = read_audio(path)
    if data.size == 0 or data.shape[-1] == 0:
        raise InputError(path, "contains no audio samples")
    if sr <= 0:
        raise InputError(path, f"invalid sample rate {sr}")
    if not np.isfinite(data).all():
        raise InputError(path, "contains NaN or infinite samples")
    return to_mono_16k(data, sr, target_sr)


def is_audio_file(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_EXTENSIONS


def write_wav(path: str | PathLike[str], wave: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write ``wave`` ((n,) float in [-1, 1]) as 16-bit PCM WAV to the output ``path``
    (atomically for a file: :mod:`atst_sed.fileio`)."""
    with open_output(path, seekable=True) as handle:  # libsndfile seeks back to fill the header
        sf.write(handle, wave, sample_rate, subtype="PCM_16", format="WAV")
