"""Frontends: waveform → the features a model reads. The ATST log-mel frontend (:class:`LogMelFrontend`).

A model owns its frontend (:meth:`atst_sed.models.sed.SEDModel.features`); its mel hop, with the
model's frames per output, makes the model's :class:`~atst_sed.timegrid.FrameGrid`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torchaudio
from torch import Tensor, nn

from atst_sed.audio import SAMPLE_RATE
from atst_sed.errors import AtstSedError
from atst_sed.timegrid import ATST_GRID


@dataclass(frozen=True)
class FrontendConfig:
    """The official ATST frontend (audiossl): power mel → dB (top_db per clip) → global min-max."""

    sample_rate: int = SAMPLE_RATE
    n_fft: int = 1024
    win_length: int = 1024
    hop_length: int = ATST_GRID.mel_hop_samples
    f_min: float = 60.0
    f_max: float = 7800.0
    n_mels: int = 64
    top_db: float = 80.0
    db_min: float = -79.6482
    db_max: float = 50.6842

    def to_dict(self) -> dict:
        return asdict(self)


class LogMelFrontend(nn.Module):
    """Waveform (B, N) at 16 kHz → normalised log-mel (B, 64, N // hop + 1), float32 (hop 160).

    dB values are floored at ``top_db`` below *each clip's own* maximum (over its valid samples
    when ``lengths`` is given), then mapped with the published global min-max constants to ≈[-1, 1].
    Always computed in float32, also under autocast. Its buffers (STFT window, mel filters) follow
    from the config and are not saved in state dicts: a model holding a frontend keeps the
    checkpoint keys of its encoder and head only.
    """

    def __init__(self, config: FrontendConfig | None = None):
        super().__init__()
        self.config = config or FrontendConfig()
        c = self.config
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=c.sample_rate,
            n_fft=c.n_fft,
            win_length=c.win_length,
            hop_length=c.hop_length,
            f_min=c.f_min,
            f_max=c.f_max,
            n_mels=c.n_mels,
            power=2.0,
        )
        for module in self.mel.modules():  # derived from the config: not part of any checkpoint
            for name, buffer in list(module.named_buffers(recurse=False)):
                module.register_buffer(name, buffer, persistent=False)

    def n_frames(self, n_samples):
        """Mel frames of ``n_samples`` samples (an int or an integer tensor; centred STFT)."""
        return n_samples // self.config.hop_length + 1

    @property
    def min_samples(self) -> int:
        """The shortest input: the centred STFT reflects ``n_fft / 2`` samples at each end."""
        return self.config.n_fft // 2 + 1

    def _normalise(self, power: Tensor, valid_frames: Tensor | None) -> Tensor:
        c = self.config
        db = 10.0 * torch.log10(torch.clamp(power, min=1e-10))
        if valid_frames is None:
            peak = db.amax(dim=(-2, -1), keepdim=True)
        else:
            t = torch.arange(db.shape[-1], device=db.device)
            inside = (t[None, :] < valid_frames[:, None])[:, None, :]
            peak = db.masked_fill(~inside, float("-inf")).amax(dim=(-2, -1), keepdim=True)
        db = torch.maximum(db, peak - c.top_db)
        return (db - c.db_min) / (c.db_max - c.db_min) * 2.0 - 1.0

    def forward(self, waveform: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``waveform`` (B, N) or (N,); ``lengths`` (B,) valid samples per clip (None: all valid).

        Returns (B, 64, N // hop + 1). Frames past a clip's valid length hold the features of its
        zero padding; :meth:`n_frames` of ``lengths`` masks them.
        """
        squeeze = waveform.dim() == 1
        if squeeze:
            waveform = waveform[None]
        shortest = int(lengths.min()) if lengths is not None else waveform.shape[-1]
        if shortest < self.min_samples:
            raise AtstSedError(
                f"audio of {shortest} samples is too short: at least {self.min_samples} samples "
                f"({self.min_samples / self.config.sample_rate * 1000:.0f} ms) are needed"
            )
        with torch.autocast(device_type=waveform.device.type, enabled=False):
            waveform = waveform.float()
            power = self.mel(waveform)
            valid_frames = None
            if lengths is not None:
                lengths = lengths.to(waveform.device)
                valid_frames = self.n_frames(lengths)
                ragged = bool((lengths < waveform.shape[-1]).any())
                if ragged:
                    # The centred STFT reflects the signal at its end: recompute the frames near each
                    # clip's end from the clip alone so that a padded clip equals the clip by itself.
                    power = power.clone()
                    for i in torch.nonzero(lengths < waveform.shape[-1]).flatten().tolist():
                        n = int(lengths[i])
                        own = self.mel(waveform[i, :n])
                        power[i, :, : own.shape[-1]] = own
                        power[i, :, own.shape[-1] :] = 0.0
            features = self._normalise(power, valid_frames)
        return features[0] if squeeze else features
