"""The ATST log-mel frontend and the one place that converts seconds ↔ frames ↔ tokens.

Time grid (all integer arithmetic):
- a *mel frame* is one STFT hop of 160 samples (10 ms at 16 kHz); ``n`` samples give ``n // 160 + 1`` frames;
- a *token* (the encoder's and the labels' resolution) stacks 4 mel frames: 40 ms, 25 per second;
  ``f`` mel frames give ``f // 4`` tokens. Token ``t`` starts at ``0.04 * t`` s.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torchaudio
from torch import Tensor, nn

from atst_sed.errors import AtstSedError

SAMPLE_RATE = 16000
HOP_SAMPLES = 160
FRAMES_PER_TOKEN = 4
TOKENS_PER_SECOND = SAMPLE_RATE // (HOP_SAMPLES * FRAMES_PER_TOKEN)  # 25
TOKEN_SECONDS = 1.0 / TOKENS_PER_SECOND  # 0.04


@dataclass(frozen=True)
class FrontendConfig:
    """The official ATST frontend (audiossl): power mel → dB (top_db per clip) → global min-max."""

    sample_rate: int = SAMPLE_RATE
    n_fft: int = 1024
    win_length: int = 1024
    hop_length: int = HOP_SAMPLES
    f_min: float = 60.0
    f_max: float = 7800.0
    n_mels: int = 64
    top_db: float = 80.0
    db_min: float = -79.6482
    db_max: float = 50.6842

    def to_dict(self) -> dict:
        return asdict(self)


def samples_to_frames(n_samples: int | Tensor) -> int | Tensor:
    """Number of mel frames for ``n_samples`` (centred STFT)."""
    return n_samples // HOP_SAMPLES + 1


def frames_to_tokens(n_frames: int | Tensor) -> int | Tensor:
    """Number of encoder tokens for ``n_frames`` mel frames (trailing 1–3 frames are dropped)."""
    return n_frames // FRAMES_PER_TOKEN


def samples_to_tokens(n_samples: int | Tensor) -> int | Tensor:
    return frames_to_tokens(samples_to_frames(n_samples))


def seconds_to_token(seconds: float, rounding: str = "floor") -> int:
    """Token index of a time in seconds; ``rounding`` is ``floor`` (onsets), ``ceil`` (offsets) or ``round``.

    Uses exact rational arithmetic on the millisecond grid so that 0.12 s → token 3 (not 2.9999…).
    """
    ms = round(seconds * 1000.0, 6)
    value = ms * TOKENS_PER_SECOND / 1000.0
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


def token_to_seconds(token: int | Tensor) -> float | Tensor:
    """Start time in seconds of token ``token`` (also the end time of token ``token - 1``)."""
    return token * TOKEN_SECONDS


def seconds_to_samples(seconds: float, sample_rate: int = SAMPLE_RATE) -> int:
    return int(round(seconds * sample_rate))


class LogMelFrontend(nn.Module):
    """Waveform (B, N) at 16 kHz → normalised log-mel (B, 64, N // 160 + 1), float32.

    dB values are floored at ``top_db`` below *each clip's own* maximum (over its valid samples
    when ``lengths`` is given), then mapped with the published global min-max constants to ≈[-1, 1].
    Always computed in float32, also under autocast.
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

        Returns (B, 64, N // 160 + 1). Frames past a clip's valid length hold the features of its
        zero padding; use :func:`samples_to_frames` on ``lengths`` to mask them.
        """
        squeeze = waveform.dim() == 1
        if squeeze:
            waveform = waveform[None]
        shortest = int(lengths.min()) if lengths is not None else waveform.shape[-1]
        if shortest <= self.config.n_fft // 2:  # the centred STFT reflects n_fft / 2 samples at each end
            raise AtstSedError(
                f"audio of {shortest} samples is too short: at least {self.config.n_fft // 2 + 1} samples "
                f"({(self.config.n_fft // 2 + 1) / self.config.sample_rate * 1000:.0f} ms) are needed"
            )
        with torch.autocast(device_type=waveform.device.type, enabled=False):
            waveform = waveform.float()
            power = self.mel(waveform)
            valid_frames = None
            if lengths is not None:
                lengths = lengths.to(waveform.device)
                valid_frames = samples_to_frames(lengths)
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
