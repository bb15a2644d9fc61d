"""A fine-tuned SED checkpoint applied to recordings of any length: scores and events per file."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from atst_sed.errors import AtstSedError, InputError
from atst_sed.features import SAMPLE_RATE, TOKEN_SECONDS, FrontendConfig, LogMelFrontend, samples_to_tokens
from atst_sed.inference.postprocess import (
    DEFAULT_MEDIAN_FILTER,
    DEFAULT_THRESHOLD,
    SCORED_EVENT_COLUMNS,
    decode_events,
)
from atst_sed.inference.windows import (
    DEFAULT_HOP_SECONDS,
    OverlapAdd,
    hop_to_tokens,
    iter_batches,
    plan_windows,
    read_audio_16k,
)
from atst_sed.models.sed import SEDModel

log = logging.getLogger(__name__)


@dataclass
class FileScores:
    """Frame probabilities of one recording: ``probs`` (T, C) float32, frame ``t`` starting at
    ``t * frame_seconds`` s; ``duration`` in seconds (``T = samples_to_tokens(samples)``)."""

    filename: str
    probs: np.ndarray
    frame_seconds: float = TOKEN_SECONDS
    duration: float = 0.0


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


def _per_class_override(
    base: Sequence[float | int], override: float | int | Sequence | Mapping[str, float | int] | None, classes: Sequence[str], what: str
) -> list:
    """Checkpoint values per class, replaced by one value, a full list, or a ``{class: value}`` map."""
    values = list(base)
    if override is None:
        return values
    if isinstance(override, Mapping):
        for name, v in override.items():
            if name not in classes:
                raise AtstSedError(f"{what}: unknown class {name!r} (classes: {', '.join(classes)})")
            values[list(classes).index(name)] = v
        return values
    if isinstance(override, (int, float)):
        return [override] * len(classes)
    override = list(override)
    if len(override) != len(classes):
        raise AtstSedError(f"{what}: expected {len(classes)} values (one per class), got {len(override)}")
    return override


class Detector:
    """Sliding-window SED inference: 10 s windows (hop ``hop_seconds``), overlap-add, decoding.

    ``model`` is an eval-mode :class:`SEDModel`; ``thresholds`` / ``median_sizes`` per class
    (median filter sizes in 40 ms frames). On CUDA the encoder runs under bf16 autocast; the
    frontend is always float32. ``precision`` ``auto`` = bf16 autocast on CUDA, float32 on CPU;
    ``bf16`` on CPU is an opt-in speed-up (about 1.5× with AVX-512 BF16, probabilities within
    ≈0.01 of float32; see benchmarks/README.md).
    """

    def __init__(
        self,
        model: SEDModel,
        classes: Sequence[str],
        frontend: FrontendConfig | None = None,
        thresholds: Sequence[float] | None = None,
        median_sizes: Sequence[int] | None = None,
        device: str | torch.device = "auto",
        batch_size: int | None = None,
        hop_seconds: float = DEFAULT_HOP_SECONDS,
        precision: str = "auto",
    ):
        self.device = resolve_device(device)
        if precision not in ("auto", "fp32", "bf16"):
            raise AtstSedError(f"unknown precision {precision!r} (use auto, fp32 or bf16)")
        # auto: bf16 on GPU; fp32 on CPU, where bf16 is faster only with AVX-512 BF16 / AMX (opt in).
        self.precision = ("bf16" if self.device.type == "cuda" else "fp32") if precision == "auto" else precision
        self.classes = list(classes)
        if model.n_classes != len(self.classes):
            raise AtstSedError(f"model has {model.n_classes} outputs but {len(self.classes)} class names")
        self.model = model.eval().to(self.device)
        self.frontend = LogMelFrontend(frontend).to(self.device)
        n = len(self.classes)
        self.thresholds = [float(t) for t in (thresholds if thresholds is not None else [DEFAULT_THRESHOLD] * n)]
        self.median_sizes = [int(m) for m in (median_sizes if median_sizes is not None else [DEFAULT_MEDIAN_FILTER] * n)]
        if len(self.thresholds) != n or len(self.median_sizes) != n:
            raise AtstSedError(f"decoding settings must have one value per class ({n})")
        self.batch_size = int(batch_size or (32 if self.device.type == "cuda" else 4))
        if self.batch_size < 1:
            raise AtstSedError("batch size must be at least 1")
        self.hop_tokens = hop_to_tokens(hop_seconds)

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
    ) -> "Detector":
        """Load a fine-tuned SED checkpoint (ours, kind ``sed``). Decoding settings come from the
        checkpoint (default 0.5 / 7 frames) and are overridden by ``thresholds`` /
        ``median_filter``: one value for all classes, one per class, or ``{class: value}``.
        ``variant`` (``frame``/``clip``) is checked against the file, see
        :func:`~atst_sed.models.checkpoint.load_checkpoint`."""
        from atst_sed.models.checkpoint import load_checkpoint

        loaded = load_checkpoint(path, variant=variant)
        if loaded.kind != "sed" or loaded.model is None:
            raise InputError(
                path,
                "this is an encoder-only checkpoint (no SED head); detect needs a fine-tuned SED checkpoint "
                "(e.g. RUN_DIR/<stage>/checkpoints/best.ckpt from atst-sed train)",
            )
        classes = loaded.classes
        n = len(classes)
        decoding = loaded.decoding or {}
        th = _per_class_override(decoding.get("thresholds", [DEFAULT_THRESHOLD] * n), thresholds, classes, "thresholds")
        mf = _per_class_override(decoding.get("median_filter", [DEFAULT_MEDIAN_FILTER] * n), median_filter, classes, "median filter")
        if len(th) != n or len(mf) != n:
            raise InputError(path, f"checkpoint decoding settings do not have one value per class ({n})")
        return cls(loaded.model, classes, loaded.frontend, th, mf, device, batch_size, hop_seconds, precision)

    # -- scores ----------------------------------------------------------------------------------

    def _autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def _run_batch(self, waves: torch.Tensor, lengths: torch.Tensor | None) -> np.ndarray:
        """(B, S) waveforms (+ valid lengths) → frame probabilities (B, N, C) float32."""
        waves = waves.to(self.device, non_blocking=True)
        if lengths is not None:
            lengths = lengths.to(self.device)
        features = self.frontend(waves, lengths)
        frame_lengths = None if lengths is None else lengths // 160 + 1
        with self._autocast():
            out = self.model(features, frame_lengths)
        return out.frame_probs.float().cpu().numpy()

    def check_length(self, n_samples: int, filename: str | None = None) -> None:
        """Raise :class:`InputError` when a recording is too short to give one 40 ms frame."""
        min_samples = self.frontend.config.n_fft // 2 + 1  # the centred STFT reflects n_fft / 2 samples
        if n_samples < min_samples or samples_to_tokens(n_samples) < 1:
            raise InputError(
                filename or None,
                f"too short ({n_samples / SAMPLE_RATE * 1000:.1f} ms at 16 kHz; at least {min_samples / SAMPLE_RATE * 1000:.1f} ms needed)",
            )

    def scores_many(self, recordings: Sequence[tuple[np.ndarray | torch.Tensor, str]]) -> list[FileScores]:
        """Scores of several 16 kHz mono waveforms ``(audio (N,), filename)``; their windows share
        batches, so many short files fill whole batches. Each track is (T, C), T = samples_to_tokens(N)."""
        wavs = [torch.as_tensor(np.asarray(a, dtype=np.float32)) for a, _ in recordings]
        for wav, (_, name) in zip(wavs, recordings):
            self.check_length(int(wav.shape[-1]), name)
        jobs = [(f, w) for f, wav in enumerate(wavs) for w in plan_windows(int(wav.shape[-1]), self.hop_tokens)]
        accs = [OverlapAdd(int(samples_to_tokens(wav.shape[-1])), len(self.classes)) for wav in wavs]
        for group in iter_batches(jobs, self.batch_size):
            lens = torch.tensor([w.sample_stop - w.sample_start for _, w in group])
            size = int(lens.max())  # WINDOW_SAMPLES, or the longest short recording in the batch
            batch = torch.zeros(len(group), size)
            for i, (f, w) in enumerate(group):
                batch[i, : lens[i]] = wavs[f][w.sample_start : w.sample_stop]
            # Padded windows are masked: the frontend and the encoder see each one as if alone.
            probs = self._run_batch(batch, None if bool((lens == size).all()) else lens)
            for i, (f, w) in enumerate(group):
                accs[f].add(w.start, probs[i, : w.n_tokens])
        return [
            FileScores(name, acc.result(), TOKEN_SECONDS, int(wav.shape[-1]) / SAMPLE_RATE)
            for acc, wav, (_, name) in zip(accs, wavs, recordings)
        ]

    def scores_audio(self, audio: np.ndarray | torch.Tensor, filename: str = "") -> FileScores:
        """Scores of one 16 kHz mono waveform (N,): a (T, C) track, T = samples_to_tokens(N)."""
        return self.scores_many([(audio, filename)])[0]

    def scores(self, path: str | PathLike[str]) -> FileScores:
        """Read ``path`` (any format, rate, channel count; decoded in blocks) and score it."""
        audio = read_audio_16k(path)
        if not np.any(audio):
            log.warning("%s: the recording is digitally silent", path)
        return self.scores_audio(audio, str(path))

    # -- events ----------------------------------------------------------------------------------

    def events(self, scores: FileScores, filename: str | None = None) -> pd.DataFrame:
        """Decode a file's scores with this detector's thresholds and median filters."""
        return decode_events(
            scores.probs, self.classes, self.thresholds, self.median_sizes, filename if filename is not None else scores.filename
        )

    def detect(self, paths: Iterable[str | PathLike[str]]) -> pd.DataFrame:
        """Events of every file ``[filename, onset, offset, event_label, score]`` sorted by filename,
        onset, label (``filename`` = the file name without folders). Raises on the first bad file;
        the CLI handles files one by one instead."""
        frames = [self.events(self.scores(p), Path(p).name) for p in paths]
        if not frames:
            return pd.DataFrame(columns=SCORED_EVENT_COLUMNS)
        df = pd.concat(frames, ignore_index=True)
        return df.sort_values(["filename", "onset", "event_label"], kind="stable").reset_index(drop=True)


__all__ = ["Detector", "FileScores", "resolve_device"]
