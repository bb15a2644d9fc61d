"""The one seconds ↔ frames conversion: a model's output frame grid, as a value.

A SED model turns audio at ``sample_rate`` into mel frames every ``mel_hop_samples`` samples (a
centred STFT: ``n`` samples give ``n // mel_hop_samples + 1`` mel frames) and gives one output frame
per ``frames_per_output`` mel frames (trailing mel frames that do not fill one are dropped). Output
frame ``t`` covers ``[t · frame_seconds, (t + 1) · frame_seconds)`` seconds. Everything that maps
times to frames — label encoding, decoding, sliding windows, score files, pictures, embeddings —
takes a :class:`FrameGrid` and calls it; nothing else knows a frame length.

=========================  ===========  ===================  ==============  ====================
grid                       mel hop      frames per output    frame           10 s (160 000 samp.)
=========================  ===========  ===================  ==============  ====================
:data:`ATST_GRID`          160 (10 ms)  4 (ATST tokens)      640 = 40 ms     1001 mel → 250
ATST-SED's CNN branch      256 (16 ms)  4 (time pooling)     1024 = 64 ms    626 mel → 156
=========================  ===========  ===================  ==============  ====================

All arithmetic on frame indices is integer; times on the grid convert exactly both ways.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from atst_sed.audio import SAMPLE_RATE, seconds_to_samples

Count = TypeVar("Count")  # an int, a NumPy integer array or an integer torch.Tensor


@dataclass(frozen=True)
class FrameGrid:
    """Output frames of a model: ``frames_per_output`` mel frames of ``mel_hop_samples`` samples each.

    Attributes:
        mel_hop_samples: STFT hop in samples (160 for ATST: 10 ms at 16 kHz).
        frames_per_output: mel frames per output frame (4 for ATST's 40 ms tokens).
        sample_rate: Hz.
    """

    mel_hop_samples: int
    frames_per_output: int
    sample_rate: int = SAMPLE_RATE

    def __post_init__(self) -> None:
        if self.mel_hop_samples < 1 or self.frames_per_output < 1 or self.sample_rate < 1:
            raise ValueError(f"a frame grid needs positive sizes, got {self}")

    # ------------------------------------------------------------------------------- sizes
    @property
    def hop_samples(self) -> int:
        """Samples per output frame (640 for ATST)."""
        return self.mel_hop_samples * self.frames_per_output

    @property
    def frame_seconds(self) -> float:
        """Length of one output frame in seconds (0.04 for ATST)."""
        return self.hop_samples / self.sample_rate

    @property
    def frames_per_second(self) -> float:
        """Output frames per second (25.0 for ATST)."""
        return self.sample_rate / self.hop_samples

    @property
    def mel_hop_seconds(self) -> float:
        """Length of one mel frame hop in seconds (0.01 for ATST)."""
        return self.mel_hop_samples / self.sample_rate

    # ------------------------------------------------------------------------------ counts
    def n_mel_frames(self, n_samples: Count) -> Count:
        """Mel frames of ``n_samples`` samples (centred STFT): ``n // mel_hop + 1``."""
        return n_samples // self.mel_hop_samples + 1

    def outputs_of_mel_frames(self, n_mel_frames: Count) -> Count:
        """Output frames of ``n_mel_frames`` mel frames (trailing partial frames dropped)."""
        return n_mel_frames // self.frames_per_output

    def n_frames(self, n_samples: Count) -> Count:
        """Output frames of ``n_samples`` samples (ATST: 160 000 → 250; the 64 ms grid: → 156)."""
        return self.outputs_of_mel_frames(self.n_mel_frames(n_samples))

    # ------------------------------------------------------------------------------ times
    def seconds_to_frame(self, seconds: float, rounding: str = "floor") -> int:
        """Frame index of a time in seconds; ``rounding`` is ``floor`` (onsets), ``ceil`` (offsets)
        or ``round``.

        Times are taken on the millisecond grid (to 1 ns) and a value within 1e-6 of a frame
        boundary is that boundary, so that 0.12 s → ATST frame 3 (not 2.9999…).
        """
        ms = round(seconds * 1000.0, 6)
        value = ms * self.frames_per_second / 1000.0
        nearest = round(value)
        if abs(value - nearest) < 1e-6:  # on the grid: no float noise decides the side
            return int(nearest)
        if rounding == "floor":
            return math.floor(value)
        if rounding == "ceil":
            return math.ceil(value)
        if rounding == "round":
            return int(nearest)
        raise ValueError(f"unknown rounding {rounding!r}")

    def frame_to_seconds(self, frame: Any) -> Any:
        """Start time in seconds of frame ``frame`` (an int or an array of them), which is also the
        end time of frame ``frame - 1``."""
        return frame * self.frame_seconds

    def seconds_to_samples(self, seconds: float) -> int:
        """The nearest whole number of samples to ``seconds``."""
        return seconds_to_samples(seconds, self.sample_rate)

    # ------------------------------------------------------------------------------ I/O
    def to_dict(self) -> dict[str, int]:
        return asdict(self)

    def describe(self) -> str:
        """``40 ms frames (4 × 160-sample mel hops at 16000 Hz)``: for messages and logs."""
        return (f"{self.frame_seconds * 1000:g} ms frames ({self.frames_per_output} × "
                f"{self.mel_hop_samples}-sample mel hops at {self.sample_rate} Hz)")


#: ATST-Frame / ATST-Clip: 40 ms tokens of four 10 ms mel frames.
ATST_GRID = FrameGrid(mel_hop_samples=160, frames_per_output=4)

__all__ = ["ATST_GRID", "FrameGrid"]
