"""A fine-tuned SED model applied to recordings of any length: scores and events per file.

Everything model-specific — the frame grid, the window length, the frontend, the classes and the
default decoding — comes from the model's :class:`~atst_sed.models.spec.ModelSpec`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from atst_sed.audio import load_audio
from atst_sed.decoding import Decoding
from atst_sed.errors import AtstSedError, InputError
from atst_sed.events import SCORED_EVENT_COLUMNS
from atst_sed.inference.windows import DEFAULT_HOP_SECONDS, SlidingWindows, iter_batches
from atst_sed.models.checkpoint import AnySEDModel
from atst_sed.models.spec import check_short_clips

log = logging.getLogger(__name__)


@dataclass
class FileScores:
    """Frame probabilities of one recording: ``probs`` (T, C) float32, frame ``t`` starting at
    ``t * frame_seconds`` s (the model's grid; T = ``grid.n_frames(samples)``); ``duration`` in seconds."""

    filename: str
    probs: np.ndarray
    frame_seconds: float
    duration: float


PRECISIONS = ("auto", "fp32", "bf16")
#: CPU features that multiply bf16 in hardware (``torch.cpu.get_capabilities()`` names): AVX-512 BF16
#: (AMD Zen 4+, Intel Cooper Lake / Sapphire Rapids+) and AMX-BF16 (Intel Sapphire Rapids+).
NATIVE_BF16_CPU_FEATURES = ("avx512_bf16", "amx_bf16")


def cpu_has_native_bf16() -> bool:
    """True when this CPU multiplies bf16 in hardware (:data:`NATIVE_BF16_CPU_FEATURES`, as
    ``torch.cpu.get_capabilities()`` reports them from cpuinfo). Elsewhere bf16 is emulated and
    slower than float32."""
    capabilities = torch.cpu.get_capabilities()
    return any(bool(capabilities.get(name, False)) for name in NATIVE_BF16_CPU_FEATURES)


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` → ``bf16`` (autocast) on a CUDA GPU that supports it and on a CPU with native bf16
    (:func:`cpu_has_native_bf16`), ``fp32`` elsewhere; ``fp32`` / ``bf16`` are kept as asked."""
    if precision not in PRECISIONS:
        raise AtstSedError(f"unknown precision {precision!r} (use {', '.join(PRECISIONS)})")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU → :class:`AtstSedError`."""
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise AtstSedError("--device cuda requested but no CUDA GPU is available")
    if name != "cpu" and not name.startswith("cuda"):
        raise AtstSedError(f"unknown device {name!r} (use auto, cpu or cuda)")
    return torch.device(name)


#: Windows per forward pass when none is asked for. CPU: 8 (frame_base in bf16 on 2 AVX-512 BF16 cores
#: ran ~7 % faster per window than at 4, and a folder of short files then shares each pass among 8
#: files; more only adds memory). CUDA: 64 (a few hundred MB of bf16 activations for frame_base: it fits
#: any CUDA GPU with bf16; larger batches pay off only for folders of many files, see --batch-size).
DEFAULT_BATCH_SIZES = {"cpu": 8, "cuda": 64}


def default_batch_size(device: torch.device) -> int:
    """Windows per forward pass for ``device`` (:data:`DEFAULT_BATCH_SIZES`)."""
    return DEFAULT_BATCH_SIZES.get(device.type, DEFAULT_BATCH_SIZES["cpu"])


class Detector:
    """Sliding-window SED inference with a model's own contract: windows of its input length
    (hop ``hop_seconds``), overlap-add on its frame grid, decoding.

    ``model`` is a SED model of either family (put in eval mode); ``decoding`` defaults to the model's
    (median filter sizes in the model's frames). ``precision`` (see :func:`resolve_precision`):
    ``auto`` runs the encoder under bf16 autocast where the hardware multiplies bf16 natively (CUDA
    GPUs with bf16, CPUs with AVX-512 BF16 or AMX) and in float32 elsewhere; the frontend and the
    head are always float32. ``batch_size``: windows per forward pass, default
    :func:`default_batch_size`.

    ``short_clips``: how a recording shorter than the model's window is scored — ``mask`` (alone, on
    its own frames) or ``pad`` (zero-padded to the window, the padding scored as audio, as the
    official test paths do); default: the model's own (``spec.short_clips``: ``pad`` for the
    published files, ``mask`` for models trained here).
    """

    def __init__(
        self,
        model: AnySEDModel,
        decoding: Decoding | None = None,
        device: str | torch.device = "auto",
        batch_size: int | None = None,
        hop_seconds: float = DEFAULT_HOP_SECONDS,
        precision: str = "auto",
        short_clips: str | None = None,
    ):
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.model = model.eval().to(self.device)
        self.spec = model.spec
        self.short_clips = check_short_clips(short_clips or self.spec.short_clips)
        self.classes = list(self.spec.classes)
        self.decoding = decoding or self.spec.decoding
        if list(self.decoding.classes) != self.classes:
            raise AtstSedError(f"decoding settings are for {list(self.decoding.classes)}, the model's classes are {self.classes}")
        self.batch_size = int(batch_size or default_batch_size(self.device))
        if self.batch_size < 1:
            raise AtstSedError("batch size must be at least 1")
        self.windows = SlidingWindows.with_hop_seconds(self.spec.grid, self.spec.window_samples, hop_seconds)
        self._bf16_cache: dict[str, torch.Tensor] | None = None

    @property
    def thresholds(self) -> list[float]:
        return list(self.decoding.thresholds)

    @property
    def median_sizes(self) -> list[int]:
        return list(self.decoding.median_filter)

    @classmethod
    def from_checkpoint(
        cls,
        path: str | PathLike[str],
        device: str | torch.device = "auto",
        batch_size: int | None = None,
        hop_seconds: float = DEFAULT_HOP_SECONDS,
        thresholds: float | Sequence[float] | Mapping[str, float] | None = None,
        median_filter: int | Sequence[int] | Mapping[str, int] | None = None,
        precision: str = "auto",
        variant: str | None = None,
        role: str | None = None,
        short_clips: str | None = None,
    ) -> "Detector":
        """Load a SED checkpoint: ours (kind ``sed``), a published SED file (audiossl DESED /
        AudioSet-strong / C2F, ATST-SED stage 1 / 2) or a published model's name (``atst-sed:stage2``;
        downloaded once, :mod:`atst_sed.hub`). Decoding settings come from the checkpoint (or the
        registry) and are overridden by ``thresholds`` / ``median_filter``: one value for all
        classes, one per class, or ``{class: value}``. ``variant`` (``frame``/``clip``) is checked
        against the file; ``role`` picks ``teacher`` (default) or ``student`` of an ATST-SED file, see
        :func:`~atst_sed.models.checkpoint.load_checkpoint`; ``short_clips`` as in :class:`Detector`."""
        from atst_sed.models.checkpoint import load_checkpoint

        loaded = load_checkpoint(path, variant=variant, role=role, mmap=True)
        if loaded.kind != "sed" or loaded.model is None:
            raise InputError(
                path,
                "this is an encoder-only checkpoint (no SED head); detect needs a fine-tuned SED checkpoint "
                "(e.g. RUN_DIR/<stage>/checkpoints/best.ckpt from atst-sed train)",
            )
        model = loaded.model
        decoding = Decoding.for_classes(model.classes, thresholds, median_filter, base=model.decoding)
        return cls(model, decoding, device, batch_size, hop_seconds, precision, short_clips)

    # -- scores ----------------------------------------------------------------------------------

    def _bf16_forward(self, inputs: tuple) -> Any:
        """The model under bf16 autocast, with its weights cast to bf16 once per detector.

        Autocast casts a float32 weight on every forward pass it is entered for (it caches the copy
        only until the ``with`` block ends): for frame_base that is 85 M values, about as long as
        one 10 s window's forward on two CPU cores. The first pass runs under plain autocast and
        notes which Linear / Conv layers ran with autocast on (a model may keep parts in float32,
        e.g. :class:`SEDModel`'s head); later passes get bf16 copies of exactly those weights, which
        autocast leaves as they are, so the numbers are the same without the repeated casts."""
        if self._bf16_cache is not None:
            with torch.autocast(self.device.type, dtype=torch.bfloat16):
                return torch.func.functional_call(self.model, self._bf16_cache, inputs, strict=False)
        device_type = self.device.type
        cast: list[torch.nn.Module] = []

        def note(module: torch.nn.Module, _args: tuple) -> None:
            if torch.is_autocast_enabled(device_type):
                cast.append(module)

        layers = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)
        hooks = [m.register_forward_pre_hook(note) for m in self.model.modules() if isinstance(m, layers)]
        try:
            with torch.autocast(device_type, dtype=torch.bfloat16):
                out = self.model(*inputs)
        finally:
            for hook in hooks:
                hook.remove()
        names = {id(module): name for name, module in self.model.named_modules()}
        self._bf16_cache = {
            f"{names[id(module)]}.{name}": param.detach().to(torch.bfloat16)
            for module in {id(m): m for m in cast}.values()
            for name, param in module.named_parameters(recurse=False)
        }
        return out

    @torch.inference_mode()
    def _run_batch(self, waves: torch.Tensor, lengths: torch.Tensor | None) -> np.ndarray:
        """(B, S) waveforms (+ valid lengths) → frame probabilities (B, N, C) float32."""
        waves = waves.to(self.device, non_blocking=True)
        if lengths is not None:
            lengths = lengths.to(self.device)
        inputs = self.model.features(waves, lengths, self.short_clips)  # the frontend stays float32
        out = self._bf16_forward(tuple(inputs)) if self.precision == "bf16" else self.model(*inputs)
        return out.frame_probs.float().cpu().numpy()

    def check_length(self, n_samples: int, filename: str | None = None) -> None:
        """Raise :class:`InputError` when a recording is too short for the model (one output frame)."""
        rate, shortest = self.spec.sample_rate, self.spec.min_samples
        if n_samples < shortest:
            raise InputError(
                filename or None,
                f"too short ({n_samples / rate * 1000:.1f} ms at {rate / 1000:g} kHz; at least {shortest / rate * 1000:.1f} ms needed)",
            )

    def scores_many(self, recordings: Sequence[tuple[np.ndarray | torch.Tensor, str]]) -> list[FileScores]:
        """Scores of several mono waveforms at the model's rate ``(audio (N,), filename)``; their
        windows share batches, so many short files fill whole batches. Each track is (T, C),
        T = ``grid.n_frames(N)``."""
        wavs = [torch.as_tensor(np.asarray(a, dtype=np.float32)) for a, _ in recordings]
        for wav, (_, name) in zip(wavs, recordings):
            self.check_length(int(wav.shape[-1]), name)
        jobs = [(f, w) for f, wav in enumerate(wavs) for w in self.windows.plan(int(wav.shape[-1]))]
        accs = [self.windows.accumulator(int(wav.shape[-1]), len(self.classes)) for wav in wavs]
        for group in iter_batches(jobs, self.batch_size):
            lens = torch.tensor([w.sample_stop - w.sample_start for _, w in group])
            size = int(lens.max())  # one window, or the longest short recording in the batch
            batch = torch.zeros(len(group), size)
            for i, (f, w) in enumerate(group):
                batch[i, : lens[i]] = wavs[f][w.sample_start : w.sample_stop]
            # Padded windows are masked: the frontend and the encoder see each one as if alone.
            probs = self._run_batch(batch, None if bool((lens == size).all()) else lens)
            for i, (f, w) in enumerate(group):
                accs[f].add(w.start, probs[i, : w.n_frames])
        frame_seconds, rate = self.spec.grid.frame_seconds, self.spec.sample_rate
        return [
            FileScores(name, acc.result(), frame_seconds, int(wav.shape[-1]) / rate)
            for acc, wav, (_, name) in zip(accs, wavs, recordings)
        ]

    def scores_audio(self, audio: np.ndarray | torch.Tensor, filename: str = "") -> FileScores:
        """Scores of one mono waveform (N,) at the model's rate: a (T, C) track, T = ``grid.n_frames(N)``."""
        return self.scores_many([(audio, filename)])[0]

    def scores(self, path: str | PathLike[str]) -> FileScores:
        """Read ``path`` (any format, rate, channel count; decoded in blocks) and score it."""
        audio = load_audio(path, self.spec.sample_rate).numpy()
        if not np.any(audio):
            log.warning("%s: the recording is digitally silent", path)
        return self.scores_audio(audio, str(path))

    # -- events ----------------------------------------------------------------------------------

    def events(self, scores: FileScores, filename: str | None = None) -> pd.DataFrame:
        """Decode a file's scores with this detector's thresholds and median filters."""
        return self.decoding.events(scores.probs, filename if filename is not None else scores.filename, grid=self.spec.grid)

    def detect(self, paths: str | PathLike[str] | Iterable[str | PathLike[str]]) -> pd.DataFrame:
        """Events of one file or of every file ``[filename, onset, offset, event_label, score]``
        sorted by filename, onset, label (``filename`` = the file name without folders). Raises on
        the first bad file; the CLI handles files one by one instead."""
        if isinstance(paths, (str, PathLike)):  # one path, not an iterable of its characters
            paths = [paths]
        frames = [self.events(self.scores(p), Path(p).name) for p in paths]
        if not frames:
            return pd.DataFrame(columns=list(SCORED_EVENT_COLUMNS))
        df = pd.concat(frames, ignore_index=True)
        return df.sort_values(["filename", "onset", "event_label"], kind="stable").reset_index(drop=True)


__all__ = ["Detector", "FileScores", "cpu_has_native_bf16", "default_batch_size", "resolve_device", "resolve_precision"]
