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
from atst_sed.class_names import audioset_strong_table, check_label_format, name_map, read_label_file, class_indices, split_selection
from atst_sed.decoding import Decoding
from atst_sed.errors import AtstSedError, InputError
from atst_sed.events import SCORED_EVENT_COLUMNS
from atst_sed.inference.windows import DEFAULT_HOP_SECONDS, SlidingWindows, iter_batches
from atst_sed.models.checkpoint import AnySEDModel
from atst_sed.models.spec import check_short_clips

log = logging.getLogger(__name__)

#: What ``top_k`` counts: the classes active in one frame, or the events of one file.
TOP_K_PER: tuple[str, ...] = ("frame", "event")


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


def _check_count(labels: str | PathLike[str] | None, ids: Sequence[str], n_classes: int | None) -> None:
    if n_classes is not None and len(ids) != n_classes:
        raise InputError(labels, f"the label file has {len(ids)} classes, the model {n_classes}")


def _keys_by_id(values, classes: Sequence[str], names: Mapping[str, str], what: str):
    """A ``{class: value}`` setting with classes given by id or display name → keyed by id."""
    if not isinstance(values, Mapping):
        return values
    return {classes[class_indices([key], classes, names, what)[0]]: value for key, value in values.items()}


class Detector:
    """Sliding-window SED inference with a model's own contract: windows of its input length
    (hop ``hop_seconds``), overlap-add on its frame grid, decoding.

    ``model`` is a SED model of either family (put in eval mode); ``decoding`` defaults to the model's
    (median filter sizes in the model's frames). ``precision`` (see :func:`resolve_precision`):
    ``auto`` runs the encoder under bf16 autocast where the hardware multiplies bf16 natively (CUDA
    GPUs with bf16, CPUs with AVX-512 BF16 or AMX) and in float32 elsewhere; the frontends, the
    heads and ATST-SED's fusion layer and BiGRU are always float32. ``batch_size``: windows per forward pass, default
    :func:`default_batch_size`.

    ``short_clips``: how a recording shorter than the model's window is scored — ``mask`` (alone, on
    its own frames) or ``pad`` (zero-padded to the window, the padding scored as audio, as the
    official test paths do); default: the model's own (``spec.short_clips``: ``pad`` for the
    published files, ``mask`` for models trained here).

    For models with many classes (the 407 of AudioSet-strong): ``display_names`` maps class ids to
    readable names (:mod:`atst_sed.class_names`; default: the ids); ``keep`` (output indices) keeps
    only those classes in everything this detector gives (scores, events); ``top_k`` with
    ``top_k_per`` ``frame`` lets only the ``top_k`` classes with the highest (median-filtered) scores
    of each frame be active, with ``event`` keeps the ``top_k`` events with the highest scores of
    each file — for browsing; score files are never cut by ``top_k``.
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
        display_names: Mapping[str, str] | None = None,
        keep: Sequence[int] | None = None,
        top_k: int | None = None,
        top_k_per: str = "frame",
    ):
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.model = model.eval().to(self.device)
        self.spec = model.spec
        self.short_clips = check_short_clips(short_clips or self.spec.short_clips)
        self.decoding = decoding or self.spec.decoding
        if list(self.decoding.classes) != list(self.spec.classes):
            raise AtstSedError(f"decoding settings are for {list(self.decoding.classes)}, the model's classes are {list(self.spec.classes)}")
        self.keep = None if keep is None else np.asarray(sorted(set(int(i) for i in keep)), dtype=np.int64)
        if self.keep is not None:
            if not len(self.keep) or self.keep[0] < 0 or self.keep[-1] >= len(self.spec.classes):
                raise AtstSedError(f"classes to keep must be output indices 0…{len(self.spec.classes) - 1}")
            d = self.decoding
            self.decoding = Decoding(*(tuple(np.asarray(v, dtype=object)[self.keep].tolist())
                                       for v in (d.classes, d.thresholds, d.median_filter)))
        self.classes = list(self.decoding.classes)
        self.display_names = {c: (display_names or {}).get(c, c) for c in self.classes}
        if top_k is not None and top_k < 1:
            raise AtstSedError("top-k must be at least 1")
        if top_k_per not in TOP_K_PER:
            raise AtstSedError(f"top-k per must be one of {', '.join(TOP_K_PER)}, not {top_k_per!r}")
        self.top_k, self.top_k_per = top_k, top_k_per
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
        labels: str | PathLike[str] | None = None,
        classes: Sequence[str] | None = None,
        top_k: int | None = None,
        top_k_per: str = "frame",
    ) -> "Detector":
        """Load a SED checkpoint: ours (kind ``sed``), a published SED file (audiossl DESED /
        AudioSet-strong / C2F, ATST-SED stage 1 / 2) or a published model's name (``atst-sed:stage2``;
        downloaded once, :mod:`atst_sed.hub`). Decoding settings come from the checkpoint (or the
        registry) and are overridden by ``thresholds`` / ``median_filter``: one value for all
        classes, one per class, or ``{class: value}`` (class by id or display name). ``variant`` (``frame``/``clip``) is checked
        against the file; ``role`` picks ``teacher`` (default) or ``student`` of an ATST-SED file, see
        :func:`~atst_sed.models.checkpoint.load_checkpoint`; ``short_clips`` as in :class:`Detector`.

        ``labels``: a label file (:func:`~atst_sed.class_names.read_label_file`): class ids in output
        order (for a published file that does not name its classes; otherwise they must be the
        model's) and/or display names. ``classes``: keep only these classes, each by id or display
        name (comma-separated lists allowed: :func:`~atst_sed.class_names.split_selection`).
        ``top_k`` / ``top_k_per``: see :class:`Detector`."""
        from atst_sed import hub
        from atst_sed.models.checkpoint import FORMAT, is_model_name, load_checkpoint

        label_ids, label_names = ([], {}) if labels is None else read_label_file(labels)
        named = is_model_name(str(path))
        if label_ids and named:  # the label list replaces the registry's (no label download)
            _check_count(labels, label_ids, hub.published_model(str(path)).n_classes)
        loaded = load_checkpoint(path, variant=variant, role=role, classes=label_ids if named and label_ids else None,
                                 mmap=True)
        if loaded.kind != "sed" or loaded.model is None:
            raise InputError(
                path,
                "this is an encoder-only checkpoint (no SED head); detect needs a fine-tuned SED checkpoint "
                "(e.g. RUN_DIR/<stage>/checkpoints/best.ckpt from atst-sed train)",
            )
        model = loaded.model
        if label_ids and list(model.classes) != label_ids:
            _check_count(labels, label_ids, len(model.classes))
            if loaded.layout == FORMAT:
                raise InputError(labels, f"the label file's classes differ from those the checkpoint names itself "
                                 f"({', '.join(list(model.classes)[:3])} …); give names only (an ontology .json) "
                                 "or the checkpoint's own ids")
            model.classes = tuple(label_ids)  # a published file: its outputs, named by the user's list
            model.decoding = Decoding(model.classes, model.decoding.thresholds, model.decoding.median_filter)
        published = hub.display_names(loaded.source, list(model.classes)) if loaded.source else {}
        names = name_map(model.classes, label_names, published, audioset_strong_table()[1])
        thresholds = _keys_by_id(thresholds, model.classes, names, "thresholds")
        median_filter = _keys_by_id(median_filter, model.classes, names, "median filter")
        decoding = Decoding.for_classes(model.classes, thresholds, median_filter, base=model.decoding)
        keep = None if classes is None else class_indices(split_selection(classes, model.classes, names), model.classes, names)
        return cls(model, decoding, device, batch_size, hop_seconds, precision, short_clips, names, keep, top_k, top_k_per)

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
        probs = out.frame_probs.float().cpu().numpy()
        return probs if self.keep is None else probs[..., self.keep]

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
        """Decode a file's scores with this detector's thresholds, median filters and top-k; labels
        are class ids (:meth:`readable` gives display names)."""
        name = filename if filename is not None else scores.filename
        per_frame = self.top_k if self.top_k_per == "frame" else None
        found = self.decoding.events(scores.probs, name, grid=self.spec.grid, top_k=per_frame)
        if self.top_k is not None and self.top_k_per == "event" and len(found) > self.top_k:
            found = found.nlargest(self.top_k, "score", keep="first")
            found = found.sort_values(["onset", "event_label"], kind="stable").reset_index(drop=True)
        return found

    def readable(self, events: pd.DataFrame) -> pd.DataFrame:
        """``events`` with display names as ``event_label`` (a copy)."""
        out = events.copy()
        if len(out):
            out["event_label"] = out["event_label"].map(lambda c: self.display_names.get(c, c))
        return out

    def detect(self, paths: str | PathLike[str] | Iterable[str | PathLike[str]], label_format: str = "name") -> pd.DataFrame:
        """Events of one file or of every file ``[filename, onset, offset, event_label, score]``
        sorted by filename, onset, label as written (``filename`` = the file name without folders;
        ``event_label``: display names, or class ids with ``label_format="mid"``). Raises on the
        first bad file; the CLI handles files one by one instead."""
        check_label_format(label_format)
        if isinstance(paths, (str, PathLike)):  # one path, not an iterable of its characters
            paths = [paths]
        frames = [self.events(self.scores(p), Path(p).name) for p in paths]
        if not frames:
            return pd.DataFrame(columns=list(SCORED_EVENT_COLUMNS))
        df = pd.concat(frames, ignore_index=True)
        df = self.readable(df) if label_format == "name" else df
        return df.sort_values(["filename", "onset", "event_label"], kind="stable").reset_index(drop=True)


__all__ = ["TOP_K_PER", "Detector", "FileScores", "cpu_has_native_bf16", "default_batch_size", "resolve_device",
           "resolve_precision"]
