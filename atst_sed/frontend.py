"""Frontends: waveform → the features a model reads.

* :class:`LogMelFrontend` (:class:`FrontendConfig`) — the ATST log-mel (audiossl): 64 mels, hop 160,
  power dB floored ``top_db`` below each clip's peak, global min-max. ATST-SED's transformer branch
  uses it with the dB values clamped to [-50, 80] (:data:`ATST_SED_BRANCH`).
* :class:`ClipMinMaxMelFrontend` (:class:`ClipMinMaxMelConfig`) — ATST-SED's CNN branch: 128 mels,
  hop 256, amplitude dB clamped to [-50, 80], min-max over each clip.

A model owns its frontends (``features()`` of :mod:`atst_sed.models`); the mel hop of the one that
sets its output rate, with the model's frames per output, makes the model's
:class:`~atst_sed.timegrid.FrameGrid`. A frontend's buffers (STFT window, mel filters) follow from its
config and are not saved in state dicts: a model's checkpoint holds its learned weights only.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torchaudio
from torch import Tensor, nn

from atst_sed.audio import SAMPLE_RATE
from atst_sed.errors import AtstSedError
from atst_sed.timegrid import ATST_GRID


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
    hop_length: int = ATST_GRID.mel_hop_samples
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


def _mel_spectrogram(config: FrontendConfig | ClipMinMaxMelConfig, power: float, **window: Any) -> nn.Module:
    """torchaudio's centred MelSpectrogram with a frontend config's STFT and mel settings; its
    buffers are derived from the config, hence left out of state dicts."""
    c = config
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=c.sample_rate, n_fft=c.n_fft, win_length=c.win_length, hop_length=c.hop_length,
        f_min=c.f_min, f_max=c.f_max, n_mels=c.n_mels, power=power, **window,
    )
    for module in mel.modules():
        for name, buffer in list(module.named_buffers(recurse=False)):
            module.register_buffer(name, buffer, persistent=False)
    return mel


def _as_batch(waveform: Tensor, lengths: Tensor | None, min_samples: int, sample_rate: int) -> tuple[Tensor, Tensor | None, bool]:
    """A frontend's input as a float32 batch (B, N), ``lengths`` on its device, and whether it was a
    single clip (N,). Audio shorter than ``min_samples`` → :class:`AtstSedError`."""
    squeeze = waveform.dim() == 1
    if squeeze:
        waveform = waveform[None]
    shortest = int(lengths.min()) if lengths is not None else waveform.shape[-1]
    if shortest < min_samples:
        raise AtstSedError(
            f"audio of {shortest} samples is too short: at least {min_samples} samples "
            f"({min_samples / sample_rate * 1000:.0f} ms) are needed"
        )
    return waveform.float(), None if lengths is None else lengths.to(waveform.device), squeeze


def _mel_per_clip(mel: nn.Module, waveform: Tensor, lengths: Tensor | None) -> Tensor:
    """``mel(waveform)`` (B, M, F) of a zero-padded batch such that each clip's frames equal those of
    the clip alone: the centred STFT reflects the signal at its end, so the frames near a shorter
    clip's end are recomputed from the clip by itself; frames past it are 0."""
    spec = mel(waveform)
    if lengths is None or not bool((lengths < waveform.shape[-1]).any()):
        return spec
    spec = spec.clone()
    for i in torch.nonzero(lengths < waveform.shape[-1]).flatten().tolist():
        own = mel(waveform[i, : int(lengths[i])])
        spec[i, :, : own.shape[-1]] = own
        spec[i, :, own.shape[-1] :] = 0.0
    return spec


def _frames_inside(n_frames: int, valid_frames: Tensor, device: torch.device) -> Tensor:
    """(B, 1, n_frames) bool: True for the frames inside each clip (``valid_frames`` (B,))."""
    t = torch.arange(n_frames, device=device)
    return (t[None, :] < valid_frames[:, None])[:, None, :]


class _MelFrontend(nn.Module):
    """What both frontends share: centred STFT frame counts and the shortest usable input."""

    config: FrontendConfig | ClipMinMaxMelConfig

    def n_frames(self, n_samples):
        """Mel frames of ``n_samples`` samples (an int or an integer tensor; centred STFT)."""
        return n_samples // self.config.hop_length + 1

    @property
    def min_samples(self) -> int:
        """The shortest input: the centred STFT reflects ``n_fft / 2`` samples at each end."""
        return self.config.n_fft // 2 + 1


class LogMelFrontend(_MelFrontend):
    """Waveform (B, N) at 16 kHz → normalised log-mel (B, 64, N // hop + 1), float32 (hop 160).

    dB values are floored at ``top_db`` below *each clip's own* maximum (over its valid samples
    when ``lengths`` is given), optionally clamped (``clamp_db_*``), then mapped with the published
    global min-max constants to ≈[-1, 1]. Always computed in float32, also under autocast.
    """

    def __init__(self, config: FrontendConfig | None = None):
        super().__init__()
        self.config = config or FrontendConfig()
        self.mel = _mel_spectrogram(self.config, power=2.0)

    def _normalise(self, power: Tensor, valid_frames: Tensor | None) -> Tensor:
        c = self.config
        db = 10.0 * torch.log10(torch.clamp(power, min=1e-10))
        if valid_frames is None:
            peak = db.amax(dim=(-2, -1), keepdim=True)
        else:
            inside = _frames_inside(db.shape[-1], valid_frames, db.device)
            peak = db.masked_fill(~inside, float("-inf")).amax(dim=(-2, -1), keepdim=True)
        db = torch.maximum(db, peak - c.top_db)
        if c.clamp_db_min is not None or c.clamp_db_max is not None:
            db = db.clamp(c.clamp_db_min, c.clamp_db_max)
        return (db - c.db_min) / (c.db_max - c.db_min) * 2.0 - 1.0

    def forward(self, waveform: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``waveform`` (B, N) or (N,); ``lengths`` (B,) valid samples per clip (None: all valid).

        Returns (B, 64, N // hop + 1). Frames past a clip's valid length hold the features of its
        zero padding; :meth:`n_frames` of ``lengths`` masks them.
        """
        waveform, lengths, squeeze = _as_batch(waveform, lengths, self.min_samples, self.config.sample_rate)
        with torch.autocast(device_type=waveform.device.type, enabled=False):
            power = _mel_per_clip(self.mel, waveform, lengths)
            features = self._normalise(power, None if lengths is None else self.n_frames(lengths))
        return features[0] if squeeze else features


class ClipMinMaxMelFrontend(_MelFrontend):
    """Waveform (B, N) at 16 kHz → per-clip min-max normalised dB mel (B, 128, N // 256 + 1), float32.

    The min and max are each clip's own, over its valid frames when ``lengths`` is given (so a padded
    clip equals the clip alone); frames past a clip's end are 0. Always float32, also under autocast.
    """

    def __init__(self, config: ClipMinMaxMelConfig | None = None):
        super().__init__()
        self.config = config or ClipMinMaxMelConfig()
        self.mel = _mel_spectrogram(self.config, power=1.0, window_fn=torch.hamming_window, wkwargs={"periodic": False})

    def forward(self, waveform: Tensor, lengths: Tensor | None = None) -> Tensor:
        """``waveform`` (B, N) or (N,); ``lengths`` (B,) valid samples per clip (None: all valid)."""
        c = self.config
        waveform, lengths, squeeze = _as_batch(waveform, lengths, self.min_samples, c.sample_rate)
        with torch.autocast(device_type=waveform.device.type, enabled=False):
            amplitude = _mel_per_clip(self.mel, waveform, lengths)
            db = (20.0 * torch.log10(torch.clamp(amplitude, min=c.amin))).clamp(c.clamp_db_min, c.clamp_db_max)
            if lengths is None:
                low = db.amin(dim=(-2, -1), keepdim=True)
                high = db.amax(dim=(-2, -1), keepdim=True)
                features = (db - low) / (high - low + c.eps)
            else:
                inside = _frames_inside(db.shape[-1], self.n_frames(lengths), db.device)
                low = db.masked_fill(~inside, float("inf")).amin(dim=(-2, -1), keepdim=True)
                high = db.masked_fill(~inside, float("-inf")).amax(dim=(-2, -1), keepdim=True)
                features = ((db - low) / (high - low + c.eps)).masked_fill(~inside, 0.0)
        return features[0] if squeeze else features


__all__ = ["ATST_SED_BRANCH", "ClipMinMaxMelConfig", "ClipMinMaxMelFrontend", "FrontendConfig", "LogMelFrontend"]
