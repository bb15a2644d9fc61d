"""An ATST-Frame / ATST-Clip SED model that owns its frontend: waveform in, 40 ms frames out.

The same contract as :class:`~atst_sed.models.crnn.ATSTSEDModel` (``features`` then ``forward``,
``grid``, ``window_samples``) for the encoder + frame-head family, so a published audiossl model and
an ATST-SED model are driven the same way.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from torch import Tensor, nn

from atst_sed.features import FrontendConfig, LogMelFrontend, keep_buffers_out_of_state_dict, samples_to_frames
from atst_sed.models.head import SEDOutput
from atst_sed.models.sed import SEDModel
from atst_sed.models.spec import ATST_GRID, WINDOW_SAMPLES, FrameGrid, check_short_clips, pad_to_window


class TokenFeatures(NamedTuple):
    mel: Tensor  # (B, 64, T) normalised ATST log-mel, hop 160
    lengths: Tensor | None  # (B,) valid samples per clip; None: all valid


class TokenSEDModel(nn.Module):
    """:class:`SEDModel` + its :class:`LogMelFrontend`; outputs on :data:`ATST_GRID` (250 frames per 10 s).

    ``short_clips="mask"`` (default) scores each clip alone (its own dB peak; attention and clip
    pooling over its own tokens); ``"pad"`` is the audiossl test path: zero-pad to 10 s, no mask.
    """

    grid: FrameGrid = ATST_GRID

    def __init__(self, sed: SEDModel, frontend: FrontendConfig | None = None, window_samples: int = WINDOW_SAMPLES):
        super().__init__()
        self.sed = sed
        self.frontend = LogMelFrontend(frontend or FrontendConfig())
        keep_buffers_out_of_state_dict(self.frontend)
        self.window_samples = window_samples

    @property
    def n_classes(self) -> int:
        return self.sed.n_classes

    def frontend_configs(self) -> dict[str, dict[str, Any]]:
        return {"atst": self.frontend.config.to_dict()}

    def features(self, waves: Tensor, lengths: Tensor | None = None, short_clips: str = "mask") -> TokenFeatures:
        """16 kHz ``waves`` (B, N) or (N,), optional valid ``lengths`` (B,) → :class:`TokenFeatures`."""
        if waves.dim() == 1:
            waves = waves[None]
        if check_short_clips(short_clips) == "pad":
            waves, lengths = pad_to_window(waves, lengths, self.window_samples), None
        return TokenFeatures(self.frontend(waves, lengths), lengths)

    def output_frames(self, features: TokenFeatures) -> Tensor | None:
        """(B,) valid output frames per clip (None: all frames valid)."""
        return None if features.lengths is None else self.grid.n_frames(features.lengths)

    def forward(self, features: TokenFeatures) -> SEDOutput:
        frames = None if features.lengths is None else samples_to_frames(features.lengths)
        return self.sed(features.mel, frames)
