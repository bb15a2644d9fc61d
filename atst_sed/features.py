"""The ATST log-mel frontend and the one place that converts seconds ↔ frames ↔ tokens.

Time grid (all integer arithmetic):
- a *mel frame* is one STFT hop of 160 samples (10 ms at 16 kHz); ``n`` samples give ``n // 160 + 1`` frames;
- a *token* (the encoder's and the labels' resolution) stacks 4 mel frames: 40 ms, 25 per second;
  ``f`` mel frames give ``f // 4`` tokens. Token ``t`` starts at ``0.04 * t`` s.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

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
    """The official ATST frontend (audiossl): power mel → dB (top_db per clip) → global min-max.

    ``clamp_db_min`` / ``clamp_db_max`` (None: no clamp) clamp the dB values after the top_db floor
    and before the min-max mapping: ATST-SED feeds its ATST branch with dB clamped to [-50, 80]
    (:data:`ATST_SED_BRANCH`); audiossl does not clamp.
    """

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
    clamp_db_min: float | None = None
    clamp_db_max: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


#: The ATST branch of ATST-SED: the audiossl frontend with dB clamped to [-50, 80] before min-max.
ATST_SED_BRANCH = FrontendConfig(clamp_db_min=-50.0, clamp_db_max=80.0)


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


def mel_spectrogram(config: FrontendConfig | ClipMinMaxMelConfig, power: float, **window: Any) -> nn.Module:
    """torchaudio's centred MelSpectrogram with a frontend config's STFT and mel settings."""
    c = config
    return torchaudio.transforms.MelSpectrogram(
        sample_rate=c.sample_rate, n_fft=c.n_fft, win_length=c.win_length, hop_length=c.hop_length,
        f_min=c.f_min, f_max=c.f_max, n_mels=c.n_mels, power=power, **window,
    )


def check_long_enough(n_samples: int, n_fft: int, sample_rate: int = SAMPLE_RATE) -> None:
    """A centred STFT reflects ``n_fft // 2`` samples at each end: shorter audio cannot be analysed."""
    if n_samples <= n_fft // 2:
        raise AtstSedError(
            f"audio of {n_samples} samples is too short: at least {n_fft // 2 + 1} samples "
            f"({(n_fft // 2 + 1) / sample_rate * 1000:.0f} ms) are needed"
        )


def as_batch(
    waveform: Tensor, lengths: Tensor | None, config: FrontendConfig | ClipMinMaxMelConfig
) -> tuple[Tensor, Tensor | None, bool]:
    """A frontend's input as a float32 batch (B, N), ``lengths`` on its device, and whether it was a
    single clip (N,); audio too short for the config's STFT → :class:`AtstSedError`."""
    squeeze = waveform.dim() == 1
    if squeeze:
        waveform = waveform[None]
    check_long_enough(int(lengths.min()) if lengths is not None else waveform.shape[-1], config.n_fft, config.sample_rate)
    return waveform.float(), None if lengths is None else lengths.to(waveform.device), squeeze


def mel_per_clip(mel: nn.Module, waveform: Tensor, lengths: Tensor | None) -> Tensor:
    """``mel(waveform)`` (B, M, F) for a zero-padded batch, computed so that each clip's frames equal
    those of the clip alone: the centred STFT reflects the signal at its end, so the frames near a
    shorter clip's end are recomputed from the clip by itself; frames past it are 0.
    ``lengths`` (B,) valid samples (None: all valid)."""
    spec = mel(waveform)
    if lengths is None or not bool((lengths < waveform.shape[-1]).any()):
        return spec
    spec = spec.clone()
    for i in torch.nonzero(lengths < waveform.shape[-1]).flatten().tolist():
        own = mel(waveform[i, : int(lengths[i])])
        spec[i, :, : own.shape[-1]] = own
        spec[i, :, own.shape[-1] :] = 0.0
    return spec


def frames_inside(n_frames: int, valid_frames: Tensor, device: torch.device) -> Tensor:
    """(B, 1, n_frames) bool: True for the frames inside each clip (``valid_frames`` (B,))."""
    t = torch.arange(n_frames, device=device)
    return (t[None, :] < valid_frames[:, None])[:, None, :]


def keep_buffers_out_of_state_dict(frontend: nn.Module) -> None:
    """Make a frontend's buffers (STFT window, mel filters: they follow from its config) non-persistent,
    so a model that owns the frontend saves and loads only its learned weights."""
    for m in frontend.modules():
        for name, buf in list(m._buffers.items()):
            if buf is not None:
                m.register_buffer(name, buf, persistent=False)


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
        self.mel = mel_spectrogram(c, power=2.0)

    def _normalise(self, power: Tensor, valid_frames: Tensor | None) -> Tensor:
        c = self.config
        db = 10.0 * torch.log10(torch.clamp(power, min=1e-10))
        if valid_frames is None:
            peak = db.amax(dim=(-2, -1), keepdim=True)
        else:
            inside = frames_inside(db.shape[-1], valid_frames, db.device)
            peak = db.masked_fill(~inside, float("-inf")).amax(dim=(-2, -1), keepdim=True)
        db = torch.maximum(db, peak - c.top_db)
        if c.clamp_db_min is not None or c.clamp_db_max is not None:
            db = db.clamp(c.clamp_db_min, c.clamp_db_max)
        return (db - c.db_min) / (c.db_max - c.db_min) * 2.0 - 1.0

    def forward(self, waveform: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``waveform`` (B, N) or (N,); ``lengths`` (B,) valid samples per clip (None: all valid).

        Returns (B, 64, N // 160 + 1). Frames past a clip's valid length hold the features of its
        zero padding; use :func:`samples_to_frames` on ``lengths`` to mask them.
        """
        waveform, lengths, squeeze = as_batch(waveform, lengths, self.config)
        with torch.autocast(device_type=waveform.device.type, enabled=False):
            power = mel_per_clip(self.mel, waveform, lengths)
            valid_frames = None if lengths is None else samples_to_frames(lengths)
            features = self._normalise(power, valid_frames)
        return features[0] if squeeze else features


@dataclass(frozen=True)
class ClipMinMaxMelConfig:
    """ATST-SED's CNN-branch frontend: 128-mel amplitude spectrogram (hop 256 = 16 ms, Hamming window
    with ``periodic=False``) → dB (``20·log10(max(x, amin))``) clamped to [-50, 80] → min-max over
    each clip's mels × frames, ``(x - min) / (max - min + eps)``."""

    sample_rate: int = SAMPLE_RATE
    n_fft: int = 2048
    win_length: int = 2048
    hop_length: int = 256
    f_min: float = 0.0
    f_max: float = 8000.0
    n_mels: int = 128
    amin: float = 1e-5
    clamp_db_min: float = -50.0
    clamp_db_max: float = 80.0
    eps: float = 1e-8

    def to_dict(self) -> dict:
        return asdict(self)


class ClipMinMaxMelFrontend(nn.Module):
    """Waveform (B, N) at 16 kHz → per-clip min-max normalised dB mel (B, 128, N // 256 + 1), float32.

    The min and max are each clip's own, over its valid frames when ``lengths`` is given (so a padded
    clip equals the clip alone); frames past a clip's end are 0. Always float32, also under autocast.
    """

    def __init__(self, config: ClipMinMaxMelConfig | None = None):
        super().__init__()
        self.config = c = config or ClipMinMaxMelConfig()
        self.mel = mel_spectrogram(c, power=1.0, window_fn=torch.hamming_window, wkwargs={"periodic": False})

    def n_frames(self, n_samples: int | Tensor) -> int | Tensor:
        """Mel frames for ``n_samples`` (centred STFT)."""
        return n_samples // self.config.hop_length + 1

    def forward(self, waveform: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``waveform`` (B, N) or (N,); ``lengths`` (B,) valid samples per clip (None: all valid)."""
        c = self.config
        waveform, lengths, squeeze = as_batch(waveform, lengths, c)
        with torch.autocast(device_type=waveform.device.type, enabled=False):
            amplitude = mel_per_clip(self.mel, waveform, lengths)
            db = (20.0 * torch.log10(torch.clamp(amplitude, min=c.amin))).clamp(c.clamp_db_min, c.clamp_db_max)
            if lengths is None:
                low = db.amin(dim=(-2, -1), keepdim=True)
                high = db.amax(dim=(-2, -1), keepdim=True)
                features = (db - low) / (high - low + c.eps)
            else:
                inside = frames_inside(db.shape[-1], self.n_frames(lengths), db.device)
                low = db.masked_fill(~inside, float("inf")).amin(dim=(-2, -1), keepdim=True)
                high = db.masked_fill(~inside, float("-inf")).amax(dim=(-2, -1), keepdim=True)
                features = ((db - low) / (high - low + c.eps)).masked_fill(~inside, 0.0)
        return features[0] if squeeze else features
