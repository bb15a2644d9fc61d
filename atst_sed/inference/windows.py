"""Long audio → 10 s windows → one continuous score track (overlap-add).

All window arithmetic is in integer encoder tokens (40 ms = 640 samples at 16 kHz). A recording of
``n`` samples has ``samples_to_tokens(n)`` output frames. Windows are 250 tokens (160 000 samples =
1001 mel frames) and start every ``hop`` tokens; the last one is aligned to the end of the
recording. A recording no longer than one window is run once at its exact length.

Overlapping window outputs are averaged with a taper that discounts window edges (where the
transformer sees one-sided context) but never reaches zero, normalised by the summed weights, so
constant window outputs give exactly that constant everywhere (pyannote.audio's scheme).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

# read_audio_16k (block-wise decoding, in atst_sed.audio) is re-exported: the window pipeline's reader.
from atst_sed.audio import SAMPLE_RATE, read_audio_16k  # noqa: F401
from atst_sed.features import FRAMES_PER_TOKEN, HOP_SAMPLES, samples_to_tokens, seconds_to_token


SAMPLES_PER_TOKEN = HOP_SAMPLES * FRAMES_PER_TOKEN  # 640
WINDOW_SAMPLES = 10 * SAMPLE_RATE  # 160 000 samples = 1001 mel frames
WINDOW_TOKENS = samples_to_tokens(WINDOW_SAMPLES)  # 250
DEFAULT_HOP_SECONDS = 5.0


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


def iter_batches(windows: list[Window], batch_size: int) -> Iterator[list[Window]]:
    """Consecutive groups of at most ``batch_size`` windows."""
    for i in range(0, len(windows), batch_size):
        yield windows[i : i + batch_size]
