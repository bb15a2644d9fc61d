"""``SEDDataModule``: the Lightning DataModule over a prepared corpus (synthetic or DESED)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pytorch_lightning as pl
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from atst_sed.data.corpus import SETS, read_fingerprint, read_index
from atst_sed.data.datasets import (
    ClipDataset,
    MixedDataset,
    ProportionalBatchSampler,
    RankShard,
    WaveformCollate,
    split_batch,
)
from atst_sed.data.splits import holdout_split
from atst_sed.errors import AtstSedError, InputError
from atst_sed.events import check_event_tables
from atst_sed.labels import DESED_CLASSES, ClassMap
from atst_sed.models.spec import SHORT_CLIPS
from atst_sed.timegrid import FrameGrid

log = logging.getLogger(__name__)

POOLS = ("strong", "weak", "unlabeled")


@dataclass
class DataConfig:
    """The ``data:`` section of a recipe.

    Attributes:
        root: corpus root written by ``atst-sed prepare synth|dcase22``.
        batch_size: training clips per batch (all pools together), per process under DDP: an
            epoch holds the same clips on any number of processes, in fewer, larger steps.
        proportions: share of each pool (``strong``, ``weak``, ``unlabeled``) in a training batch;
            a pool with share 0 is not used. Counts are rounded by largest remainders
            (24 × 0.25/0.25/0.5 → 6/6/12).
        strong_sets / weak_sets / unlabeled_sets: corpus sets forming each pool (names of
            :data:`atst_sed.data.corpus.SETS`: synth_train, strong_real, strong_real_train, weak,
            unlabeled, synth_val, strong_real_val, test).
        batch_sizes: clips per batch of each *set*, instead of ``batch_size``/``proportions`` and
            the pools: each set is a source of its own, labelled as its kind (strong / weak /
            unlabeled), in the given order; e.g. ATST-SED's ``{synth_train: 24, strong_real_train:
            24, weak: 48, unlabeled: 48}``. The batch holds their sum (per process under DDP).
        val_set / test_set: strong-labelled sets for validation and test (``synth_val``, ``test``, ...);
            ``val_set`` may list several (ATST-SED: ``[synth_val, strong_real_val]``), each scored
            on its own (``val/<set>/…``), the first also as ``val/…``.
        weak_val_fraction: share of each weak set held out of training and added to validation
            (DCASE 2022 baseline and ATST-SED: 0.1, drawn with ``seed``; see
            :func:`~atst_sed.data.splits.holdout_split`); 0 = every weak clip trains.
        clip_seconds: clips are cropped (randomly for training, from the start otherwise) or
            zero-padded to this length; whole mel hops of the model's grid (ATST: 10 s → 1001 mel
            frames, 250 target frames of 40 ms).
        short_clips: how the run's models see clips shorter than their window (the models'
            ``short_clips``, kept in their checkpoints, so that ``detect`` does the same): ``mask`` —
            the clip alone, its padding masked out of the model, the losses and the scores — or
            ``pad``: zero-padded to the window and scored whole, as the official DESED pipelines do
            (102 of DESED devtest's 1,168 clips are shorter than 9.99 s).
        epoch_length: training batches per epoch; ``None``: as many whole batches as the smallest
            used pool fills (every clip of that pool once per epoch).
        val_batch_size: batch size for validation / test (``None``: ``batch_size``).
        num_workers: DataLoader worker processes (audio is decoded and cropped in them).
        seed: seeds batch composition and crops (same seed → same batches).
        classes: class order (``None``: the corpus's classes from ``manifests/index.json``, e.g.
            of ``prepare custom``; the 10 DESED classes for DESED and the synthetic corpus).
        frontend: overrides of :class:`~atst_sed.frontend.FrontendConfig` fields for the models of
            the run (each model computes its own features; the batches hold waveforms).
    """

    root: str = "data/synth"
    batch_size: int = 24
    proportions: dict[str, float] = field(default_factory=lambda: {"strong": 0.25, "weak": 0.25, "unlabeled": 0.5})
    strong_sets: list[str] = field(default_factory=lambda: ["synth_train"])
    weak_sets: list[str] = field(default_factory=lambda: ["weak"])
    unlabeled_sets: list[str] = field(default_factory=lambda: ["unlabeled"])
    batch_sizes: dict[str, int] | None = None
    val_set: str | list[str] = "synth_val"
    test_set: str = "test"
    weak_val_fraction: float = 0.0
    clip_seconds: float = 10.0
    short_clips: Literal["mask", "pad"] = "mask"
    epoch_length: int | None = None
    val_batch_size: int | None = None
    num_workers: int = 2
    seed: int = 42
    classes: list[str] | None = None
    frontend: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 <= self.weak_val_fraction < 1.0:
            raise ValueError(f"data.weak_val_fraction must be in [0, 1), got {self.weak_val_fraction}")
        unknown = sorted(set(self.proportions) - set(POOLS))
        if unknown:
            raise ValueError(f"data.proportions: unknown pool(s) {unknown}; use {', '.join(POOLS)}")
        for name in [*self.strong_sets, *self.weak_sets, *self.unlabeled_sets, *self.val_sets, self.test_set,
                     *(self.batch_sizes or {})]:
            if name not in SETS:
                raise ValueError(f"data: unknown set {name!r}; known: {', '.join(SETS)}")
        if not self.val_sets:
            raise ValueError("data.val_set names no set")
        if self.short_clips not in SHORT_CLIPS:
            raise ValueError(f"data.short_clips must be one of {', '.join(SHORT_CLIPS)}, got {self.short_clips!r}")
        if self.batch_sizes is not None and (any(k < 0 for k in self.batch_sizes.values()) or sum(self.batch_sizes.values()) <= 0):
            raise ValueError(f"data.batch_sizes needs non-negative clip counts with a positive sum, got {self.batch_sizes}")

    @property
    def val_sets(self) -> list[str]:
        """The validation sets, in order (``val_set`` as a list)."""
        return [self.val_set] if isinstance(self.val_set, str) else list(self.val_set)

    @property
    def clips_per_batch(self) -> int:
        """Training clips per batch (per process): the sum of ``batch_sizes``, else ``batch_size``."""
        return sum(self.batch_sizes.values()) if self.batch_sizes else self.batch_size


def corpus_classes(root: str | Path) -> list[str] | None:
    """The class list a corpus declares in ``manifests/index.json`` (None if it has none yet)."""
    try:
        classes = read_index(root).get("classes")
    except InputError:
        return None
    return list(classes) if classes else None


def training_data(config: DataConfig, fingerprint: dict[str, Any]) -> list[str]:
    """What a run trains on, one line per corpus set of a pool with a share in the batches, e.g.
    ``synth_train: audio/train/synthetic21_train/soundscapes_16k (synthetic corpus, strong labels, 24 clips)``
    (clip counts from the corpus ``fingerprint``; sets it has no clips of are left out; weak clips held
    out for validation are said). The ``training_data`` of a run's manifest and of a submission's
    meta information."""
    counts = fingerprint.get("sets") or {}
    corpus = fingerprint.get("corpus")
    pools = {"strong": config.strong_sets, "weak": config.weak_sets, "unlabeled": config.unlabeled_sets}
    lines = []
    for pool, names in pools.items():
        if config.proportions.get(pool, 0.0) <= 0:
            continue
        for name in names:
            if counts and not counts.get(name):
                continue  # a set the corpus does not have (e.g. no strong real clips): nothing trained on
            facts = [f"{corpus} corpus" if corpus else None,
                     "no labels" if pool == "unlabeled" else f"{pool} labels",
                     f"{counts[name]:,} clips" if name in counts else None]
            if pool == "weak" and config.weak_val_fraction > 0:
                facts.append(f"{config.weak_val_fraction:.0%} held out for validation")
            lines.append(f"{name}: {SETS[name].audio} ({', '.join(f for f in facts if f)})")
    return lines


def run_classes(config: DataConfig) -> tuple[str, ...]:
    """The class order of a run: ``data.classes``, else the corpus's declared classes, else DESED's."""
    return tuple(config.classes or corpus_classes(config.root) or DESED_CLASSES)


class SEDDataModule(pl.LightningDataModule):
    """Training batches composed from the strong / weak / unlabeled pools in ``config.proportions``
    (pool order inside a batch: strong, weak, unlabeled), or from the sets of ``config.batch_sizes``
    in their numbers and order; validation and test over ``val_set`` (one or several sets) /
    ``test_set`` in manifest order (under DDP each rank validates every world_size-th clip). With
    ``weak_val_fraction`` > 0 the held-out weak clips leave the weak pool and follow ``val_set`` in
    the validation loader (``has_strong`` False). Batches are dicts (:class:`WaveformCollate`):
    waveforms (B, 160 000) float32, lengths (B,) long, strong (B, N, C) targets on ``grid`` (the
    model's; ATST: N = 250), weak (B, C), has_strong (B,), has_weak (B,), filenames.

    Input problems (missing corpus, malformed or inconsistent TSVs, missing audio) raise
    :class:`~atst_sed.errors.InputError` naming the file and line at :meth:`setup`.
    """

    def __init__(self, config: DataConfig, grid: FrameGrid):
        super().__init__()
        self.config = config
        self.grid = grid
        self.classes: tuple[str, ...] = run_classes(config)
        self.class_map = ClassMap(self.classes)
        self._checked_references: set[str] = set()
        self._datasets: dict[str, ClipDataset] = {}
        self._weak_parts: dict[str, tuple[ClipDataset, ClipDataset]] = {}
        self._fingerprint: dict | None = None
        self.train_sampler: ProportionalBatchSampler | None = None
        self._restored_order: dict[str, Any] | None = None  # from a resume checkpoint, for the next train loader

    # ------------------------------------------------------------------ corpus information
    @property
    def root(self) -> Path:
        return Path(self.config.root)

    @property
    def fingerprint(self) -> str:
        """The dataset fingerprint of ``ROOT/fingerprint.json`` (recorded in run manifests)."""
        return self._fingerprint_body()["fingerprint"]

    @property
    def missing_files(self) -> int:
        """Clips listed in the corpus metadata whose audio is missing or unreadable."""
        return int(self._fingerprint_body().get("missing_files", 0))

    def _fingerprint_body(self) -> dict:
        if self._fingerprint is None:
            self._fingerprint = read_fingerprint(self.root)
        return self._fingerprint

    def _set_names(self, pool: str) -> list[str]:
        return list(getattr(self.config, f"{pool}_sets"))

    def dataset(self, set_name: str, labels_kind: str | None = None) -> ClipDataset:
        key = f"{set_name}:{labels_kind}"
        if key not in self._datasets:
            available = read_index(self.root)["sets"]
            if set_name not in available:
                raise AtstSedError(
                    f"{self.root}: the corpus has no set {set_name!r} (it has {', '.join(sorted(available))})"
                )
            self._datasets[key] = ClipDataset(self.root, set_name, self.class_map, self.config.clip_seconds, labels_kind, grid=self.grid)
        return self._datasets[key]

    def weak_split(self, set_name: str) -> tuple[ClipDataset, ClipDataset]:
        """(training part, held-out part) of weak set ``set_name`` under ``weak_val_fraction``."""
        if set_name not in self._weak_parts:
            full = self.dataset(set_name, "weak")
            train, held = holdout_split(full.label_order, self.config.weak_val_fraction, self.config.seed)
            self._weak_parts[set_name] = (full.subset(train), full.subset(held))
            log.info("%s: %d weak clips train, %d held out for validation", set_name, len(self._weak_parts[set_name][0]),
                     len(self._weak_parts[set_name][1]))
        return self._weak_parts[set_name]

    def _pool_part(self, pool: str, set_name: str) -> ClipDataset:
        if pool == "weak" and self.config.weak_val_fraction > 0:
            return self.weak_split(set_name)[0]
        return self.dataset(set_name, pool)

    def weak_training_sets(self) -> list[str]:
        """The sets that give weakly labelled training clips (whose held-out share validates)."""
        if self.config.batch_sizes is not None:
            return [n for n, k in self.config.batch_sizes.items() if k > 0 and SETS[n].kind == "weak"]
        return self._set_names("weak")

    def validation_dataset(self) -> Dataset:
        """The ``val_set`` set(s), followed by the held-out weak clips when ``weak_val_fraction`` > 0."""
        parts = [self.dataset(name) for name in self.config.val_sets]
        if self.config.weak_val_fraction > 0:
            parts += [h for h in (self.weak_split(n)[1] for n in self.weak_training_sets()) if len(h)]
        return parts[0] if len(parts) == 1 else ConcatDataset(parts)

    def _split_sets(self, split: str) -> list[str]:
        if split == "val":
            return self.config.val_sets
        if split == "test":
            return [self.config.test_set]
        if split in SETS:
            return [split]
        raise ValueError(f"split must be 'val', 'test' or a set name, got {split!r}")

    def ground_truth(self, split: str) -> pd.DataFrame:
        """Events [filename, onset, offset, event_label] of the clips of ``split`` ("val" — every
        validation set —, "test", or one set's name) that have audio, exactly as the labels file
        writes them (what ``atst-sed evaluate`` and psds_eval score; training targets merge and clip
        instead); clips without events are one NaN row (DESED convention). Checked by the evaluation
        rule (:func:`check_event_tables`): overlapping same-class events are an :class:`InputError`,
        events past a clip's end a warning."""
        tables = []
        for name in self._split_sets(split):
            dataset = self.dataset(name)
            events = dataset.reference_events
            if dataset.set_name not in self._checked_references:
                check_event_tables({dataset.labels_path: events}, dataset.durations, f"ground truth of {dataset.set_name}")
                self._checked_references.add(dataset.set_name)
            tables.append(events)
        return pd.concat(tables, ignore_index=True) if len(tables) > 1 else tables[0].copy()

    def durations(self, split: str) -> dict[str, float]:
        """Clip durations (s) of ``split`` (as :meth:`ground_truth`), from the sets' durations TSVs when they have them."""
        out: dict[str, float] = {}
        for name in self._split_sets(split):
            out.update(self.dataset(name).durations)
        return out

    def clips(self, split: str) -> list[str]:
        """File names of the clips (with audio) of ``split`` (as :meth:`ground_truth`), in loader order."""
        return [f for name in self._split_sets(split) for f in self.dataset(name).filenames]

    # ------------------------------------------------------------------ Lightning hooks
    def setup(self, stage: str | None = None) -> None:
        """Builds (and checks) the datasets the stage needs; cheap when called again."""
        if stage in (None, "fit"):  # a new fit; Lightning restores a resumed one's batch order after this
            self._restored_order = None
        self._fingerprint_body()
        if stage in (None, "fit"):
            self._train_parts()
            self.validation_dataset()
        if stage in (None, "validate"):
            self.validation_dataset()
        if stage in (None, "test"):
            self.dataset(self.config.test_set)

    def _train_parts(self) -> tuple[MixedDataset, dict[str, int], list[int]]:
        if self.config.batch_sizes is not None:
            return self._train_sources()
        per_pool = split_batch(self.config.batch_size, {p: self.config.proportions.get(p, 0.0) for p in POOLS})
        datasets, sizes, counts = [], [], []
        for pool in POOLS:
            if per_pool[pool] == 0:
                continue
            names = self._set_names(pool)
            if not names:
                raise AtstSedError(f"data.proportions gives {pool} clips a share but data.{pool}_sets is empty")
            parts = [self._pool_part(pool, n) for n in names]
            size = sum(len(p) for p in parts)
            if size == 0:
                raise AtstSedError(f"{self.root}: the {pool} pool ({', '.join(names)}) has no clips")
            datasets.extend(parts)
            sizes.append(size)
            counts.append(per_pool[pool])
        if not datasets:
            raise AtstSedError("data.proportions selects no training pool")
        return MixedDataset(datasets), per_pool, [*sizes, *counts]

    def _train_sources(self) -> tuple[MixedDataset, dict[str, int], list[int]]:
        """:meth:`_train_parts` for ``batch_sizes``: one source per set, labelled as its kind."""
        chosen = {name: int(k) for name, k in (self.config.batch_sizes or {}).items() if k > 0}
        datasets = [self._pool_part(SETS[name].kind, name) for name in chosen]
        for name, part in zip(chosen, datasets):
            if len(part) == 0:
                raise AtstSedError(f"{self.root}: set {name} of data.batch_sizes has no clips")
        return MixedDataset(datasets), chosen, [*(len(d) for d in datasets), *chosen.values()]

    def train_dataloader(self) -> DataLoader:
        """Training batches of :class:`ProportionalBatchSampler`, starting at epoch 0, or where the
        checkpoint of a resumed fit left off (:meth:`load_state_dict`)."""
        mixed, per_pool, sizes_counts = self._train_parts()
        n = len(sizes_counts) // 2
        rank, world = self._rank_and_world()
        sampler = ProportionalBatchSampler(
            sizes_counts[:n], sizes_counts[n:], seed=self.config.seed, epoch_length=self.config.epoch_length,
            rank=rank, world_size=world,
        )
        restored, self._restored_order = self._restored_order, None
        if restored is not None:
            saved = {k: v for k, v in restored.items() if k != "next_epoch"}
            if saved != sampler.order():
                log.warning("the resumed run's training batches differ from the interrupted run's (%s, was %s): "
                            "it will not repeat the uninterrupted run", sampler.order(), saved)
            sampler.set_epoch(int(restored["next_epoch"]))
        self.train_sampler = sampler
        log.debug("training batches: %s per batch, %d per epoch, from epoch %d", per_pool, sampler.epoch_length, sampler.epoch)
        return self._loader(mixed, batch_sampler=sampler)

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> dict[str, Any]:
        """Saved in Lightning checkpoints: the batch order and the epoch the next training epoch draws
        (the number of training epochs Lightning has processed; a checkpoint written at an epoch's
        end counts that epoch)."""
        if self.train_sampler is None or self.trainer is None:
            return {}
        done = int(self.trainer.fit_loop.epoch_progress.current.processed)
        return {"train_batches": {**self.train_sampler.order(), "next_epoch": done}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores :meth:`state_dict` of a checkpoint for the train loader Lightning requests next."""
        self._restored_order = state.get("train_batches")

    def _eval_loader(self, split: str) -> DataLoader:
        dataset = self.validation_dataset() if split == "val" else self.dataset(self.config.test_set)
        sampler = None
        rank, world = self._rank_and_world()
        if split == "val" and world > 1:  # each rank validates its share; the task gathers the scores
            sampler = RankShard(len(dataset), rank, world)
        return self._loader(dataset, batch_size=self.config.val_batch_size or self.config.clips_per_batch, sampler=sampler)

    def _rank_and_world(self) -> tuple[int, int]:
        if self.trainer is None:
            return 0, 1
        return int(self.trainer.global_rank), int(self.trainer.world_size)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def _loader(self, dataset, **kwargs) -> DataLoader:
        workers = int(self.config.num_workers)
        return DataLoader(
            dataset,
            num_workers=workers,
            collate_fn=WaveformCollate(),
            persistent_workers=workers > 0,
            # The loader's own generator: starting its workers must not draw from torch's global
            # random state, which training restores from a resume checkpoint (dropout, mixup).
            generator=torch.Generator().manual_seed(int(self.config.seed)),
            **kwargs,
        )

    def steps_per_epoch(self) -> int:
        """Training batches per epoch (see :class:`ProportionalBatchSampler`)."""
        _, _, sizes_counts = self._train_parts()
        n = len(sizes_counts) // 2
        return ProportionalBatchSampler(sizes_counts[:n], sizes_counts[n:], epoch_length=self.config.epoch_length).epoch_length
