"""A SED model's contract with the code around it (pyannote's ``Specifications``, for SED).

Training (label encoding), ``detect`` (sliding windows, decoding, score files, pictures) and the
test stage read these from the model or its checkpoint; families differ only in ``models/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from torch import nn

from atst_sed.decoding import Decoding
from atst_sed.frontend import FrontendConfig
from atst_sed.timegrid import FrameGrid


@dataclass(frozen=True)
class ModelSpec:
    """What a SED model promises.

    Attributes:
        family: the architecture's name (``ATST-Frame``, ``ATST-Clip``, ...), as result tables name it.
        grid: its output frame grid (:class:`~atst_sed.timegrid.FrameGrid`; ATST: 40 ms).
        window_samples: the longest input of one forward pass (ATST: 160 000 samples = 10 s);
            longer recordings are scored in overlapping windows of this length.
        min_samples: the shortest input it takes (ATST: 513 samples, for the STFT's reflection).
        classes: output classes, in order.
        decoding: default post-processing (thresholds, median filters per class).
        frontend: the settings of its (first) frontend; its sample rate is the model's input rate.
    """

    family: str
    grid: FrameGrid
    window_samples: int
    min_samples: int
    classes: tuple[str, ...]
    decoding: Decoding
    frontend: FrontendConfig

    @property
    def window_frames(self) -> int:
        """Output frames of one full window (ATST: 250)."""
        return int(self.grid.n_frames(self.window_samples))

    @property
    def window_seconds(self) -> float:
        return self.window_samples / self.grid.sample_rate

    @property
    def sample_rate(self) -> int:
        return self.grid.sample_rate


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
