"""Long audio → 10 s windows → one continuous score track (overlap-add), with streamed audio input.

All window arithmetic is in integer encoder tokens (40 ms = 640 samples at 16 kHz). A recording of
``n`` samples has ``samples_to_tokens(n)`` output frames. Windows are 250 tokens (160 000 samples =
1001 mel frames) and start every ``hop`` tokens; the last one is aligned to the end of the
recording. A recording no longer than one window is run once at its exact length.

Overlapping window outputs are averaged with a taper that discounts window edges (where the
transformer sees one-sided context) but never reaches zero, normalised by the summed weights, so
constant window outputs give exactly that constant everywhere (pyannote.audio's scheme).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from atst_sed.audio import SAMPLE_RATE, check_audio_path, load_audio
from atst_sed.errors import InputError
from atst_sed.features import FRAMES_PER_TOKEN, HOP_SAMPLES, samples_to_tokens, seconds_to_token

log = logging.getLogger(__name__)

SAMPLES_PER_TOKEN = HOP_SAMPLES * FRAMES_PER_TOKEN  # 640
WINDOW_SAMPLES = 10 * SAMPLE_RATE  # 160 000 samples = 1001 mel frames
WINDOW_TOKENS = samples_to_tokens(WINDOW_SAMPLES)  # 250
DEFAULT_HOP_SECONDS = 5.0
_LIBSNDFILE_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".aiff", ".aif", ".mp3")


def hop_to_tokens(hop_seconds: float) -> int:
    """Hop in seconds → whole tokens (1 … 250); must lie on the 40 ms grid."""
    hop = seconds_to_token(hop_seconds, "round")
    if not 1 <= hop <= WINDOW_TOKENS:
        raise ValueError(f"hop must be between 0.04 s and 10 s, got {hop_seconds} s")
    return hop


def window_starts(n_tokens: int, hop_tokens: int, window_tokens: int = WINDOW_TOKENS) -> np.ndarray:
    """Start tokens of the windows covering ``n_tokens`` output frames.

    ``[0]`` when the recording fits one window; otherwise ``0, hop, 2·hop, …`` while a window ends
    before the recording does, then one window ending exactly at ``n_tokens``.
    """
    if n_tokens <= window_tokens:
        return np.zeros(1, dtype=np.int64)
    last = n_tokens - window_tokens
    starts = np.arange(0, last, hop_tokens, dtype=np.int64)
    return np.append(starts, last)


def taper(n: int) -> np.ndarray:
    """Edge-discounting weights (n,) float64: a Hamming window, 0.08 at the edges, 1 in the middle."""
    i = np.arange(n, dtype=np.float64)
    return 0.54 - 0.46 * np.cos(2.0 * np.pi * (i + 0.5) / n)


class OverlapAdd:
    """Accumulates per-window frame scores into one (T, C) track: Σ w·p / Σ w per frame."""

    def __init__(self, n_tokens: int, n_classes: int, window_tokens: int = WINDOW_TOKENS):
        self.num = np.zeros((n_tokens, n_classes), dtype=np.float64)
        self.den = np.zeros((n_tokens, 1), dtype=np.float64)
        self.weights = taper(window_tokens)

    def add(self, start: int, probs: np.ndarray) -> None:
        """Add one window's scores ``probs`` (n, C) starting at token ``start``."""
        n = probs.shape[0]
        w = self.weights[:n] if n == len(self.weights) else taper(n)
        self.num[start : start + n] += w[:, None] * probs
        self.den[start : start + n, 0] += w

    def result(self) -> np.ndarray:
        """The track (T, C) float32. Every frame must have been covered by a window."""
        if (self.den <= 0).any():
            raise RuntimeError("overlap-add: some frames are covered by no window")
        return (self.num / self.den).astype(np.float32)


@dataclass(frozen=True)
class Window:
    """One window: output tokens ``[start, start + n_tokens)`` from samples ``[sample_start, sample_stop)``."""

    start: int
    n_tokens: int
    sample_start: int
    sample_stop: int


def plan_windows(n_samples: int, hop_tokens: int) -> list[Window]:
    """Windows over a 16 kHz recording of ``n_samples`` (see :func:`window_starts`)."""
    n_tokens = int(samples_to_tokens(n_samples))
    if n_tokens <= WINDOW_TOKENS:  # one window: the whole recording at its exact length
        return [Window(0, n_tokens, 0, n_samples)]
    out = []
    for s in window_starts(n_tokens, hop_tokens).tolist():
        a = s * SAMPLES_PER_TOKEN
        b = min(a + WINDOW_SAMPLES, n_samples)
        out.append(Window(s, min(int(samples_to_tokens(b - a)), n_tokens - s), a, b))
    return out


def overlap_add(windows: list[Window], probs: list[np.ndarray], n_tokens: int) -> np.ndarray:
    """Combine per-window scores (each (n_tokens_w, C)) into one (n_tokens, C) track."""
    acc = OverlapAdd(n_tokens, probs[0].shape[1])
    for w, p in zip(windows, probs):
        acc.add(w.start, p[: w.n_tokens])
    return acc.result()


# ---------------------------------------------------------------------------------------------
# Streamed audio input


def _resample_margin(sr: int) -> tuple[int, int, int]:
    """(input step, output step, margin in input samples) for block-wise resampling sr → 16 kHz.

    Blocks start on multiples of the input step so that each block's output grid coincides with the
    whole file's; the margin (a multiple of the step) covers torchaudio's sinc kernel, so the inner
    samples of each block equal those of resampling the whole file.
    """
    g = math.gcd(sr, SAMPLE_RATE)
    step_in, step_out = sr // g, SAMPLE_RATE // g
    kernel = math.ceil(6 * step_in / (min(step_in, step_out) * 0.99)) + 2  # torchaudio default width 6
    margin = step_in * max(1, math.ceil(max(kernel, 64) / step_in))
    return step_in, step_out, margin


def read_audio_16k(path: str | PathLike[str], block_seconds: float = 10.0) -> np.ndarray:
    """Read any audio file as mono float32 (N,) at 16 kHz, decoding in blocks.

    Formats libsndfile reads are decoded ``block_seconds`` at a time (downmix and resampling per
    block), so peak memory is the 16 kHz result (≈ 230 MB per hour) plus one block — never the
    whole file at its own rate and channel count. Other formats go through
    :func:`atst_sed.audio.load_audio`. Raises :class:`InputError` for unreadable, empty or
    non-finite audio.
    """
    path = check_audio_path(path)
    try:
        f = sf.SoundFile(str(path))
    except Exception as err:
        if path.suffix.lower() in _LIBSNDFILE_SUFFIXES:  # no other decoder would do better
            raise InputError(path, f"not a readable audio file ({str(err).strip() or type(err).__name__})") from None
        return load_audio(path).numpy()
    with f:
        sr, n_in = int(f.samplerate), int(f.frames)
        if sr <= 0:
            raise InputError(path, f"invalid sample rate {sr}")
        if n_in <= 0:
            raise InputError(path, "contains no audio samples")
        try:
            if sr == SAMPLE_RATE:
                return _read_native(f, path, n_in, block_seconds)
            return _read_resampled(f, path, sr, n_in, block_seconds)
        except InputError:
            raise
        except Exception as err:
            raise InputError(path, f"cannot decode audio ({type(err).__name__}: {str(err).strip()[:120]})") from None


def _mono_block(f: sf.SoundFile, path: Path, n: int) -> np.ndarray:
    data = f.read(n, dtype="float32", always_2d=True)
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(mono).all():
        raise InputError(path, "contains NaN or infinite samples")
    return mono


def _read_native(f: sf.SoundFile, path: Path, n_in: int, block_seconds: float) -> np.ndarray:
    block = max(1, int(block_seconds * SAMPLE_RATE))
    out = np.empty(n_in, dtype=np.float32)
    pos = 0
    while pos < n_in:
        mono = _mono_block(f, path, min(block, n_in - pos))
        if len(mono) == 0:  # truncated: the header promised more frames than the file holds
            break
        out[pos : pos + len(mono)] = mono
        pos += len(mono)
    if pos == 0:
        raise InputError(path, "contains no audio samples")
    if pos < n_in:
        log.warning("%s: truncated (%d of %d samples)", path, pos, n_in)
    return out[:pos]


def _read_resampled(f: sf.SoundFile, path: Path, sr: int, n_in: int, block_seconds: float) -> np.ndarray:
    step_in, step_out, margin = _resample_margin(sr)
    block = max(step_in, int(block_seconds * sr) // step_in * step_in)
    n_out = math.ceil(n_in * step_out / step_in)  # torchaudio's output length
    out = np.empty(n_out, dtype=np.float32)
    # A sliding buffer of decoded mono input: [buf_start, buf_start + len(buf)).
    buf = np.zeros(0, dtype=np.float32)
    buf_start = 0
    a = 0
    while a < n_in:
        b = min(a + block, n_in)
        want_stop = min(b + margin, n_in)
        have_stop = buf_start + len(buf)
        if want_stop > have_stop:
            more = _mono_block(f, path, want_stop - have_stop)
            buf = np.concatenate([buf, more])
            if len(more) < want_stop - have_stop:  # truncated file
                n_in = buf_start + len(buf)
                n_out = math.ceil(n_in * step_out / step_in)
                b = min(b, n_in)
                if a >= n_in:
                    break
        lo = max(0, a - margin)
        seg = buf[lo - buf_start : min(b + margin, n_in) - buf_start]
        res = AF.resample(torch.from_numpy(np.ascontiguousarray(seg)), sr, SAMPLE_RATE).numpy()
        o0 = (a - lo) // step_in * step_out
        out_a = a // step_in * step_out
        out_b = n_out if b >= n_in else b // step_in * step_out
        out[out_a:out_b] = res[o0 : o0 + (out_b - out_a)]
        # keep only the margin before the next block
        keep_from = max(0, b - margin)
        buf = buf[keep_from - buf_start :]
        buf_start = keep_from
        a = b
    if n_out == 0:
        raise InputError(path, "contains no audio samples")
    return out[:n_out]


def iter_batches(windows: list[Window], batch_size: int) -> Iterator[list[Window]]:
    """Consecutive groups of at most ``batch_size`` windows."""
    for i in range(0, len(windows), batch_size):
        yield windows[i : i + batch_size]
