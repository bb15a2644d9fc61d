"""Strong, weak and unlabeled clip datasets over corpus manifests, batch composition and collation.

A dataset item is a dict: ``waveform`` float32 (clip_samples,) zero-padded, ``length`` valid
samples, ``strong`` (n_frames, C) frame targets on the model's frame grid (zeros when absent),
``weak`` (C,), ``has_strong``, ``has_weak``, ``filename``. Items are addressed by an int
(evaluation: crop from the start) or by ``(index, seed)`` (training: a crop position drawn from
``seed``), so the sampler alone owns the randomness and batches do not depend on the number of
workers. Batches hold waveforms: the model computes its own features (:class:`WaveformCollate`).
"""

from __future__ import annotations

import bisect
import copy
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, Sampler

from atst_sed.audio import load_audio
from atst_sed.data.corpus import SETS, read_manifest
from atst_sed.errors import InputError
from atst_sed.events import EVENT_COLUMNS, read_durations_tsv, read_strong_tsv, read_weak_tsv
from atst_sed.labels import ClassMap, events_to_frames, weak_multi_hot
from atst_sed.timegrid import FrameGrid

log = logging.getLogger(__name__)


def clip_samples_for(clip_seconds: float, grid: FrameGrid) -> int:
    """Samples in a training clip: a whole number of the grid's mel hops (ATST: 10 ms)."""
    samples = grid.seconds_to_samples(clip_seconds)
    if samples <= 0 or samples % grid.mel_hop_samples:
        raise ValueError(f"clip_seconds={clip_seconds} must be a positive multiple of {grid.mel_hop_seconds:g} s")
    return samples


class ClipDataset(Dataset):
    """Clips of one corpus set with their targets.

    Args:
        root: corpus root.
        set_name: a set of :data:`atst_sed.data.corpus.SETS` with a manifest.
        class_map: class order of the targets.
        clip_seconds: clips are cropped / zero-padded to this length (whole mel hops of ``grid``);
            training crops start on whole output frames.
        labels_kind: ``"strong"``, ``"weak"`` or ``"unlabeled"`` (default: the set's kind).
        check_audio: raise :class:`InputError` now if a manifest entry's file is missing.
        grid: the frame grid of the model the targets are for (:attr:`SEDModel.grid`).

    A strong set has two event tables: ``events``, the training labels (overlapping same-class
    events merged, offsets past a clip's end clipped, as :func:`read_strong_tsv` adapts them to a
    clip's frames), and ``reference_events``, the labels exactly as written, which evaluation
    scores (as ``atst-sed evaluate`` and psds_eval do). Both keep the clips that have audio.
    """

    def __init__(
        self,
        root: str | Path,
        set_name: str,
        class_map: ClassMap,
        clip_seconds: float = 10.0,
        labels_kind: str | None = None,
        check_audio: bool = True,
        *,
        grid: FrameGrid,
    ):
        if set_name not in SETS:
            raise InputError(root, f"unknown set {set_name!r}; known: {', '.join(SETS)}")
        self.root = Path(root)
        self.set_name = set_name
        self.spec = SETS[set_name]
        self.kind = labels_kind or self.spec.kind
        self.class_map = class_map
        self.grid = grid
        self.clip_samples = clip_samples_for(clip_seconds, grid)
        self.n_frames = int(grid.n_frames(self.clip_samples))
        manifest = read_manifest(self.root, set_name)
        manifest_path = self.root / "manifests" / f"{set_name}.tsv"
        self.filenames: list[str] = manifest["filename"].astype(str).tolist()
        self.paths = [self.root / p for p in manifest["path"].astype(str)]
        self.num_samples = manifest["num_samples"].astype(np.int64).to_numpy()
        if check_audio:
            for i, path in enumerate(self.paths):
                if not path.is_file():
                    raise InputError(manifest_path, f"audio file {path} is missing", line=i + 2)
        present = set(self.filenames)
        self.durations: dict[str, float] = dict(zip(self.filenames, (manifest["duration"].astype(float)).tolist()))
        self.events = pd.DataFrame(columns=list(EVENT_COLUMNS))
        self.reference_events = self.events
        self.labels_path: Path | None = None  # the strong labels file (strong sets)
        self._by_file: dict[str, pd.DataFrame] = {}
        self._weak: dict[str, np.ndarray] = {}
        # every labelled file in label-file order (audio or not): what a weak hold-out split draws from
        self.label_order: list[str] = list(self.filenames)
        if self.kind == "strong":
            labels = self.root / self.spec.labels
            if self.spec.durations and (self.root / self.spec.durations).is_file():
                durations = read_durations_tsv(self.root / self.spec.durations)
            else:  # clips absent from the manifest (missing audio) cannot be checked: never "beyond"
                names = read_strong_tsv(labels, class_map.names, merge_overlaps=False)["filename"]
                durations = {**{n: float("inf") for n in names}, **self.durations}
            events = read_strong_tsv(labels, class_map.names, durations, merge_overlaps=True, clip_to_durations=True)
            absent = sorted(set(events["filename"]) - present)
            if absent:
                log.warning("%s: %d labelled clip(s) have no audio (see missing_files.tsv); skipped", labels, len(absent))
            self.events = events[events["filename"].isin(present)].reset_index(drop=True)
            as_written = read_strong_tsv(labels, class_map.names, durations)
            self.reference_events = as_written[as_written["filename"].isin(present)].reset_index(drop=True)
            self.labels_path = labels
            self.durations = {f: durations.get(f, d) for f, d in self.durations.items()}
            self._by_file = {f: g for f, g in self.events.groupby("filename", sort=False)}
            unlabelled = [f for f in self.filenames if f not in self._by_file]
            if unlabelled:
                log.warning("%s: %d clip(s) of set %s are not in the labels; taken as clips without events", labels, len(unlabelled), set_name)
        elif self.kind == "weak":
            labels = self.root / self.spec.labels
            if self.spec.kind == "strong":  # a strong set used for clip labels only
                strong = read_strong_tsv(labels, class_map.names).dropna(subset=["event_label"])
                weak = strong.groupby("filename", sort=False)["event_label"].agg(list).reset_index(name="event_labels")
                weak = pd.concat([weak, pd.DataFrame({"filename": sorted(present - set(weak["filename"])), "event_labels": [[]] * len(present - set(weak["filename"]))})])
            else:
                weak = read_weak_tsv(labels, class_map.names)
            self._weak = {f: weak_multi_hot(lab, class_map) for f, lab in zip(weak["filename"], weak["event_labels"]) if f in present}
            self.label_order = [str(f) for f in weak["filename"]]
            keep = [i for i, f in enumerate(self.filenames) if f in self._weak]
            if len(keep) < len(self.filenames):
                log.warning("%s: %d clip(s) of set %s have no weak label; skipped", labels, len(self.filenames) - len(keep), set_name)
                self.filenames = [self.filenames[i] for i in keep]
                self.paths = [self.paths[i] for i in keep]
                self.num_samples = self.num_samples[keep]

    def __len__(self) -> int:
        return len(self.filenames)

    def subset(self, filenames: Iterable[str]) -> "ClipDataset":
        """The same dataset restricted to ``filenames`` (in this dataset's order; unknown names ignored)."""
        wanted = set(filenames)
        keep = [i for i, f in enumerate(self.filenames) if f in wanted]
        part = copy.copy(self)
        part.filenames = [self.filenames[i] for i in keep]
        part.paths = [self.paths[i] for i in keep]
        part.num_samples = self.num_samples[keep]
        part.label_order = [f for f in self.label_order if f in wanted]
        part.durations = {f: self.durations[f] for f in part.filenames}
        if self.kind == "strong":
            part.events = self.events[self.events["filename"].isin(wanted)].reset_index(drop=True)
            part.reference_events = self.reference_events[self.reference_events["filename"].isin(wanted)].reset_index(drop=True)
        return part

    def crop_start(self, index: int, seed: int | None) -> int:
        """First sample of the crop: 0 for evaluation; a random whole number of output frames
        (ATST: 40 ms) for training, so that targets stay on the grid."""
        hop = self.grid.hop_samples
        excess = int(self.num_samples[index]) - self.clip_samples
        if seed is None or excess < hop:
            return 0
        return hop * int(np.random.default_rng(seed).integers(0, excess // hop + 1))

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        index, seed = (key, None) if isinstance(key, (int, np.integer)) else (int(key[0]), int(key[1]))
        filename = self.filenames[index]
        wave = load_audio(self.paths[index])
        start = self.crop_start(index, seed)
        wave = wave[start : start + self.clip_samples]
        length = int(wave.shape[0])
        if length < self.clip_samples:
            wave = torch.nn.functional.pad(wave, (0, self.clip_samples - length))
        n_classes = len(self.class_map)
        strong = np.zeros((self.n_frames, n_classes), dtype=np.float32)
        weak = np.zeros(n_classes, dtype=np.float32)
        if self.kind == "strong":
            events = self._by_file.get(filename)
            if events is not None:
                strong = events_to_frames(events, self.class_map, self.n_frames, start / self.grid.sample_rate, grid=self.grid)
            weak = strong.max(axis=0)
        elif self.kind == "weak":
            weak = self._weak[filename]
        return {
            "waveform": wave,
            "length": length,
            "strong": torch.from_numpy(strong),
            "weak": torch.from_numpy(np.asarray(weak, dtype=np.float32)),
            "has_strong": self.kind == "strong",
            "has_weak": self.kind in ("strong", "weak"),
            "filename": filename,
        }


class MixedDataset(Dataset):
    """Several datasets behind one index space; keys are ``index`` or ``(index, seed)``."""

    def __init__(self, datasets: Sequence[Dataset]):
        self.datasets = list(datasets)
        self.offsets = np.cumsum([0] + [len(d) for d in self.datasets]).tolist()

    def __len__(self) -> int:
        return self.offsets[-1]

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        index, seed = (key, None) if isinstance(key, (int, np.integer)) else key
        k = bisect.bisect_right(self.offsets, int(index)) - 1
        local = int(index) - self.offsets[k]
        return self.datasets[k][local if seed is None else (local, seed)]


def split_batch(batch_size: int, proportions: Mapping[str, float]) -> dict[str, int]:
    """Items per pool in a batch: ``batch_size`` shared in ``proportions`` (largest remainders)."""
    total = float(sum(proportions.values()))
    if batch_size <= 0 or total <= 0 or any(p < 0 for p in proportions.values()):
        raise ValueError(f"need batch_size > 0 and non-negative proportions with a positive sum, got {batch_size}, {dict(proportions)}")
    exact = {k: batch_size * p / total for k, p in proportions.items()}
    counts = {k: int(np.floor(v)) for k, v in exact.items()}
    for k in sorted(exact, key=lambda k: (counts[k] - exact[k], list(exact).index(k)))[: batch_size - sum(counts.values())]:
        counts[k] += 1
    return counts


class ProportionalBatchSampler(Sampler[list[tuple[int, int]]]):
    """Batches drawn from consecutive pools of a :class:`MixedDataset` in fixed numbers per pool.

    Each batch holds ``per_batch[k]`` items of pool ``k`` (pools in order: strong, weak,
    unlabeled), drawn without replacement from a fresh permutation of the pool, reshuffled when the
    pool runs out. One epoch has ``epoch_length`` batches; by default the number of whole batches
    the *smallest* pool fills (``min_k len(pool_k) // per_batch[k]``, as DESED's sampler), so each
    epoch sees every clip of that pool once. Items are ``(index, seed)``; all randomness comes from
    ``(seed, epoch)``: the same seed and epoch give the same batches, whatever the number of
    DataLoader workers. :meth:`set_epoch` chooses the epoch (Lightning never calls it on a batch
    sampler: :class:`~atst_sed.training.finetune.SEDTask` does, at every training epoch start). With
    ``world_size`` > 1 the ranks take interleaved batches of the same sequence, each
    ``ceil(epoch_length / world_size)`` (use Lightning's ``use_distributed_sampler=False``).
    """

    def __init__(
        self,
        pool_sizes: Sequence[int],
        per_batch: Sequence[int],
        seed: int = 0,
        epoch_length: int | None = None,
        rank: int = 0,
        world_size: int = 1,
        epoch: int = 0,
    ):
        if len(pool_sizes) != len(per_batch):
            raise ValueError("pool_sizes and per_batch differ in length")
        for size, k in zip(pool_sizes, per_batch):
            if k > 0 and size == 0:
                raise ValueError("a pool with items per batch is empty")
        self.pool_sizes = [int(s) for s in pool_sizes]
        self.per_batch = [int(k) for k in per_batch]
        self.offsets = np.cumsum([0] + self.pool_sizes).tolist()
        self.seed = int(seed)
        natural = min(s // k for s, k in zip(self.pool_sizes, self.per_batch) if k > 0)
        self.epoch_length = int(epoch_length) if epoch_length else max(1, natural)
        self.rank, self.world_size = int(rank), int(world_size)
        self.epoch = int(epoch)

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose batches the next iteration yields."""
        self.epoch = int(epoch)

    def order(self) -> dict[str, Any]:
        """What decides the batch sequence besides the epoch (a resumed run checks it is unchanged)."""
        return {"seed": self.seed, "pool_sizes": list(self.pool_sizes), "per_batch": list(self.per_batch),
                "epoch_length": self.epoch_length, "world_size": self.world_size}

    def __len__(self) -> int:
        """Batches per rank, the same on every rank (DDP ranks step in lockstep): an epoch that does
        not divide evenly is rounded up, its last batches continuing the same sequence."""
        return -(-self.epoch_length // self.world_size)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        streams = [np.zeros(0, dtype=np.int64) for _ in self.pool_sizes]
        for step in range(len(self) * self.world_size):
            batch: list[tuple[int, int]] = []
            for k, (size, need) in enumerate(zip(self.pool_sizes, self.per_batch)):
                while streams[k].size < need:
                    streams[k] = np.concatenate([streams[k], rng.permutation(size)])
                take, streams[k] = streams[k][:need], streams[k][need:]
                batch.extend((self.offsets[k] + int(i), 0) for i in take)
            item_seeds = rng.integers(0, 2**31 - 1, size=len(batch))
            if step % self.world_size == self.rank:
                yield [(i, int(s)) for (i, _), s in zip(batch, item_seeds)]


def set_sampler_epoch(loaders: Any, epoch: int) -> None:
    """``set_epoch(epoch)`` on the sampler and batch sampler of every DataLoader in ``loaders`` (one
    DataLoader, or the list / dict of them that ``Trainer.train_dataloader`` gives)."""
    if isinstance(loaders, Mapping):
        loaders = list(loaders.values())
    for loader in loaders if isinstance(loaders, (list, tuple)) else [loaders]:
        for sampler in {id(s): s for s in (getattr(loader, "batch_sampler", None), getattr(loader, "sampler", None))}.values():
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)


class RankShard(Sampler[int]):
    """One rank's share of an evaluation set: items ``rank, rank + world_size, …`` in order; no
    item repeated or dropped over all ranks (validation gathers the shares again)."""

    def __init__(self, n_items: int, rank: int, world_size: int):
        self.indices = list(range(int(rank), int(n_items), int(world_size)))

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class WaveformCollate:
    """Stacks items into the batch of the data contract: ``waveforms`` (B, S) float32, ``lengths``
    (B,) long (valid samples), ``strong`` (B, N, C), ``weak`` (B, C), ``has_strong`` / ``has_weak``
    (B,) bool, ``filenames``. Features are the model's job (:meth:`SEDModel.features`)."""

    def __call__(self, items: Sequence[dict]) -> dict:
        return {
            "waveforms": torch.stack([it["waveform"] for it in items]),
            "lengths": torch.tensor([it["length"] for it in items], dtype=torch.long),
            "strong": torch.stack([it["strong"] for it in items]),
            "weak": torch.stack([it["weak"] for it in items]),
            "has_strong": torch.tensor([it["has_strong"] for it in items], dtype=torch.bool),
            "has_weak": torch.tensor([it["has_weak"] for it in items], dtype=torch.bool),
            "filenames": [it["filename"] for it in items],
        }
