"""Long audio → windows of a model's input length → one continuous score track (overlap-add).

All window arithmetic is in integer output frames of the model's
:class:`~atst_sed.timegrid.FrameGrid` (ATST: 40 ms = 640 samples at 16 kHz). A recording of ``n``
samples has ``grid.n_frames(n)`` output frames. Windows are ``window_samples`` long (the model's
:attr:`~atst_sed.models.spec.ModelSpec.window_samples`; ATST: 160 000 samples = 1001 mel frames =
250 output frames), start every ``hop`` frames, and the last one is aligned to the end of the
recording. A recording no longer than one window is run once at its exact length.

Overlapping window outputs are averaged with a taper that discounts window edges (where the
transformer sees one-sided context) but never reaches zero, normalised by the summed weights, so
constant window outputs give exactly that constant everywhere (pyannote.audio's scheme).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from atst_sed.timegrid import FrameGrid

DEFAULT_HOP_SECONDS = 5.0


def window_starts(n_frames: int, hop_frames: int, window_frames: int) -> np.ndarray:
    """Start frames of the windows covering ``n_frames`` output frames.

    ``[0]`` when the recording fits one window; otherwise ``0, hop, 2·hop, …`` while a window ends
    before the recording does, then one window ending exactly at ``n_frames``.
    """
    if n_frames <= window_frames:
        return np.zeros(1, dtype=np.int64)
    last = n_frames - window_frames
    starts = np.arange(0, last, hop_frames, dtype=np.int64)
    return np.append(starts, last)


def taper(n: int) -> np.ndarray:
    """Edge-discounting weights (n,) float64: a Hamming window, 0.08 at the edges, 1 in the middle."""
    i = np.arange(n, dtype=np.float64)
    return 0.54 - 0.46 * np.cos(2.0 * np.pi * (i + 0.5) / n)


class OverlapAdd:
    """Accumulates per-window frame scores into one (T, C) track: Σ w·p / Σ w per frame."""

    def __init__(self, n_frames: int, n_classes: int, window_frames: int):
        self.num = np.zeros((n_frames, n_classes), dtype=np.float64)
        self.den = np.zeros((n_frames, 1), dtype=np.float64)
        self.weights = taper(window_frames)

    def add(self, start: int, probs: np.ndarray) -> None:
        """Add one window's scores ``probs`` (n, C) starting at frame ``start``."""
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
    """One window: output frames ``[start, start + n_frames)`` from samples ``[sample_start, sample_stop)``."""

    start: int
    n_frames: int
    sample_start: int
    sample_stop: int


@dataclass(frozen=True)
class SlidingWindows:
    """Windows of ``window_samples`` samples every ``hop_frames`` output frames of ``grid``."""

    grid: FrameGrid
    window_samples: int
    hop_frames: int

    @classmethod
    def with_hop_seconds(cls, grid: FrameGrid, window_samples: int, hop_seconds: float = DEFAULT_HOP_SECONDS) -> "SlidingWindows":
        """Hop in seconds → whole frames (1 … one window); ``ValueError`` off that range."""
        window_frames = int(grid.n_frames(window_samples))
        hop = grid.seconds_to_frame(hop_seconds, "round")
        if not 1 <= hop <= window_frames:
            raise ValueError(f"hop must be between {grid.frame_seconds:g} s and "
                             f"{grid.frame_to_seconds(window_frames):g} s, got {hop_seconds} s")
        return cls(grid, int(window_samples), hop)

    @property
    def window_frames(self) -> int:
        """Output frames of one full window (ATST: 250)."""
        return int(self.grid.n_frames(self.window_samples))

    def plan(self, n_samples: int) -> list[Window]:
        """Windows over a recording of ``n_samples`` samples (see :func:`window_starts`)."""
        n_frames = int(self.grid.n_frames(n_samples))
        if n_frames <= self.window_frames:  # one window: the whole recording at its exact length
            return [Window(0, n_frames, 0, n_samples)]
        out = []
        for s in window_starts(n_frames, self.hop_frames, self.window_frames).tolist():
            a = s * self.grid.hop_samples
            b = min(a + self.window_samples, n_samples)
            out.append(Window(s, min(int(self.grid.n_frames(b - a)), n_frames - s), a, b))
        return out

    def accumulator(self, n_samples: int, n_classes: int) -> OverlapAdd:
        """An :class:`OverlapAdd` for the (T, C) track of a recording of ``n_samples`` samples."""
        return OverlapAdd(int(self.grid.n_frames(n_samples)), n_classes, self.window_frames)

    def overlap_add(self, windows: list[Window], probs: list[np.ndarray], n_samples: int) -> np.ndarray:
        """Combine per-window scores (each (n_frames_w, C)) into one (T, C) track."""
        acc = self.accumulator(n_samples, probs[0].shape[1])
        for w, p in zip(windows, probs):
            acc.add(w.start, p[: w.n_frames])
        return acc.result()


def iter_batches(windows: list[Window], batch_size: int) -> Iterator[list[Window]]:
    """Consecutive groups of at most ``batch_size`` windows."""
    for i in range(0, len(windows), batch_size):
        yield windows[i : i + batch_size]
