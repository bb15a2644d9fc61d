"""What a SED model states about itself: its output time grid, its window and its contract.

Minimal versions of the design's ``FrameGrid`` / ``ModelSpec`` (the lead reconciles the names with
the time-grid refactor): a model family says how its output frames map to seconds, how long one
window of audio is, which frontends it owns and how its outputs are decoded, so nothing downstream
needs a 40 ms constant.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from atst_sed.errors import AtstSedError
from atst_sed.features import SAMPLE_RATE

ShortClips = Literal["mask", "pad"]
SHORT_CLIP_MODES: tuple[str, ...] = ("mask", "pad")


@dataclass(frozen=True)
class FrameGrid:
    """Output frame ``i`` of a clip covers ``[i, i + 1) · frame_seconds``.

    ``mel_hop_samples`` is the frontend's STFT hop and ``frames_per_output`` the model's time
    reduction (4 mel frames per ATST token; 4 after the ATST-SED CNN's time pooling). ``n`` samples
    give ``n // mel_hop_samples + 1`` mel frames (centred STFT) and ``that // frames_per_output``
    output frames (1001 → 250 at 40 ms; 626 → 156 at 64 ms for 10 s).
    """

    mel_hop_samples: int
    frames_per_output: int
    sample_rate: int = SAMPLE_RATE

    @property
    def hop_samples(self) -> int:
        """Samples per output frame (640 | 1024)."""
        return self.mel_hop_samples * self.frames_per_output

    @property
    def frame_seconds(self) -> float:
        """Seconds per output frame (0.04 | 0.064)."""
        return self.hop_samples / self.sample_rate

    def n_frames(self, n_samples: int | Tensor) -> int | Tensor:
        """Output frames for ``n_samples`` samples (int or integer tensor)."""
        return (n_samples // self.mel_hop_samples + 1) // self.frames_per_output

    def frame_to_seconds(self, i: int | Tensor) -> float | Tensor:
        """Start time of output frame ``i`` (= end time of frame ``i - 1``)."""
        return i * self.hop_samples / self.sample_rate

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


ATST_GRID = FrameGrid(160, 4)  # ATST-Frame / ATST-Clip tokens: 40 ms, 250 per 10 s
CRNN_GRID = FrameGrid(256, 4)  # ATST-SED: CNN hop 256 × time pooling 4 = 64 ms, 156 per 10 s
WINDOW_SAMPLES = 10 * SAMPLE_RATE  # every published model was trained and tested on 10-s clips


@dataclass(frozen=True)
class ModelSpec:
    """The contract of a loaded SED model (pyannote's ``Specifications``, for our families).

    ``family``: ``atst-frame`` | ``atst-clip`` (an ATST encoder + frame head, 40 ms) or ``atst-sed``
    (CNN + ATST-Frame + BiGRU, 64 ms). ``frontends``: name → config dict of each frontend the model
    owns (``atst``; ``cnn`` for ATST-SED). ``clip_pooling``: ``attention`` (the model's own clip
    head) or ``max`` (no clip head in the file: clip probability = max over the clip's frames,
    derived, not trained). ``decoding``: ``{"thresholds": [C], "median_filter": [C]}`` in output
    frames. ``short_clips``: how the model's own test path scored clips shorter than the window
    (``pad``: zero-padded to 10 s, outputs over the padding too) — ``mask`` (the default here)
    scores the clip alone.
    """

    family: str
    grid: FrameGrid
    classes: tuple[str, ...]
    frontends: dict[str, dict[str, Any]]
    decoding: dict[str, list[float] | list[int]]
    window_samples: int = WINDOW_SAMPLES
    clip_pooling: str = "attention"
    official_short_clips: ShortClips = "pad"
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def window_seconds(self) -> float:
        return self.window_samples / self.grid.sample_rate


def check_short_clips(mode: str) -> ShortClips:
    if mode not in SHORT_CLIP_MODES:
        raise AtstSedError(f"short_clips must be one of {', '.join(SHORT_CLIP_MODES)}, not {mode!r}")
    return mode  # type: ignore[return-value]


def pad_to_window(waves: Tensor, lengths: Tensor | None, window_samples: int) -> Tensor:
    """The official test path for short clips: zero-pad every clip to ``window_samples`` (samples
    past each clip's ``lengths`` are zeroed too) and treat the padding as audio (no mask).
    ``waves`` (B, N) with N ≤ ``window_samples`` → (B, window_samples)."""
    if waves.shape[-1] > window_samples:
        raise AtstSedError(
            f"input of {waves.shape[-1]} samples is longer than the model's {window_samples}-sample window; "
            "split long audio into windows"
        )
    if lengths is not None:
        inside = torch.arange(waves.shape[-1], device=waves.device)[None, :] < lengths.to(waves.device)[:, None]
        waves = waves * inside
    return torch.nn.functional.pad(waves, (0, window_samples - waves.shape[-1]))
