"""A SED model's contract with the code around it (pyannote's ``Specifications``, for SED).

Training (label encoding), ``detect`` (sliding windows, decoding, score files, pictures), the test
stage and the Python API read these from the model or its checkpoint; families differ only in
``models/``: :class:`~atst_sed.models.sed.SEDModel` (ATST-Frame / ATST-Clip tokens, 40 ms) and
:class:`~atst_sed.models.crnn.ATSTSEDModel` (ATST-SED, 64 ms) state the same contract.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor, nn

from atst_sed.decoding import Decoding
from atst_sed.errors import AtstSedError
from atst_sed.frontend import FrontendConfig
from atst_sed.timegrid import FrameGrid

ShortClips = Literal["mask", "pad"]
#: How a clip shorter than the model's window is scored: ``mask`` — the clip alone (its own frames,
#: attention and pooling over them only); ``pad`` — zero-padded to the window and scored with the
#: padding as audio, as every official test path does (audiossl, ATST-SED devtest).
SHORT_CLIPS: tuple[str, ...] = ("mask", "pad")
#: Clip pooling of a model's clip output: its trained attention head, or the maximum over frames
#: (derived, for a file without a clip head such as the AudioSet-strong release).
CLIP_POOLINGS: tuple[str, ...] = ("attention", "max")


@dataclass(frozen=True)
class ModelSpec:
    """What a SED model promises.

    Attributes:
        family: the architecture's name as result tables name it: ``ATST-Frame``, ``ATST-Clip`` or
            ``ATST-SED``.
        grid: its output frame grid (:class:`~atst_sed.timegrid.FrameGrid`; ATST 40 ms, ATST-SED 64 ms).
        window_samples: the longest input of one forward pass (160 000 samples = 10 s for every
            published model); longer recordings are scored in overlapping windows of this length.
        min_samples: the shortest input it takes (ATST: 513 samples, for the STFT's reflection).
        classes: output classes, in order.
        decoding: default post-processing (thresholds, median filters per class, in output frames).
        frontends: every frontend the model owns, name → config (``atst``: the ATST log-mel its
            transformer reads; ``cnn``: ATST-SED's CNN-branch frontend).
        clip_pooling: ``attention`` (a trained clip head) or ``max`` (no clip head: derived).
        short_clips: how the model's own pipeline scored clips shorter than the window (``mask``
            for models trained here, ``pad`` for the official files); ``detect`` does the same by default.
        meta: provenance (published layout, role, stage, registry name, reported scores …).
    """

    family: str
    grid: FrameGrid
    window_samples: int
    min_samples: int
    classes: tuple[str, ...]
    decoding: Decoding
    frontends: dict[str, Any]
    clip_pooling: str = "attention"
    short_clips: str = "mask"
    meta: dict[str, Any] = field(default_factory=dict, compare=False)  # provenance, not part of the contract

    @property
    def frontend(self) -> FrontendConfig:
        """The ATST log-mel frontend (what the transformer reads; what pictures show)."""
        return self.frontends["atst"]

    @property
    def window_frames(self) -> int:
        """Output frames of one full window (ATST: 250; ATST-SED: 156)."""
        return int(self.grid.n_frames(self.window_samples))

    @property
    def window_seconds(self) -> float:
        return self.window_samples / self.grid.sample_rate

    @property
    def sample_rate(self) -> int:
        return self.grid.sample_rate


def check_short_clips(mode: str) -> ShortClips:
    """``mode`` when it is one of :data:`SHORT_CLIPS`, else :class:`AtstSedError`."""
    if mode not in SHORT_CLIPS:
        raise AtstSedError(f"short_clips must be one of {', '.join(SHORT_CLIPS)}, not {mode!r}")
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


class ParameterPart(NamedTuple):
    """A named part of a model's parameters, as training groups them for its learning rates.

    ``kind``: the part's family (``head``/``encoder`` for ATST SED models; ``cnn``/``rnn``/
    ``transformer`` for ATST-SED), whose peak learning rate a recipe may set on its own.
    ``layer``: depth from the top of the transformer for layer-wise decay (rate × decay^layer),
    None for parts outside it."""

    name: str
    kind: str
    layer: int | None
    params: list[nn.Parameter]
