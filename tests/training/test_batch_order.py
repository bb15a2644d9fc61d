"""Every training epoch draws its own seed-determined batches: with or without DataLoader workers,
and after a resume (the batch order travels in the resume checkpoint)."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl

from atst_sed.data import SEDDataModule
from atst_sed.data.datasets import ProportionalBatchSampler
from atst_sed.training.callbacks import ResumePoint
from atst_sed.runfolder import RunFolder
from atst_sed.training.run import Run
from atst_sed.training.run_config import load_recipe
from atst_sed.timegrid import ATST_GRID

REPO = Path(__file__).resolve().parents[2]
EPOCHS = 4


class BatchProbe(pl.Callback):
    """The clips of every training batch, per epoch."""

    def __init__(self):
        self.epochs: dict[int, list[tuple[str, ...]]] = {}

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.epochs.setdefault(trainer.current_epoch, []).append(tuple(batch["filenames"]))


class StopAfterEpoch(pl.Callback):
    def __init__(self, epoch: int):
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, module):
        if trainer.current_epoch == self.epoch:
            trainer.should_stop = True


def config(corpus: Path, workers: int):
    cfg = load_recipe(REPO / "recipes" / "mini", [
        f"data.root={corpus}", "data.batch_size=4", f"data.num_workers={workers}", "data.epoch_length=2", "data.clip_seconds=2.0",
        f"trainer.max_epochs={EPOCHS}", "trainer.limit_val_batches=0", "trainer.log_every_n_steps=1",
    ])
    cfg.stages = {"finetune_frame": cfg.stages["finetune_frame"]}
    return cfg


def train(cfg, run_dir: Path, resume: bool = False, stop_after: int | None = None) -> dict[int, list[tuple[str, ...]]]:
    probe = BatchProbe()
    run = Run(cfg, run_dir)
    run.dir.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    extra = [probe] + ([StopAfterEpoch(stop_after)] if stop_after is not None else [])
    run.train_stage("finetune_frame", cfg, resume=resume, extra_callbacks=extra)
    return probe.epochs


def expected_epoch(cfg, epoch: int) -> list[tuple[str, ...]]:
    """The batches the sampler defines for ``epoch`` (seed, pool sizes, batch composition)."""
    dm = SEDDataModule(cfg.data, ATST_GRID)
    dm.setup("fit")
    loader = dm.train_dataloader()
    loader.batch_sampler.set_epoch(epoch)
    return [tuple(b["filenames"]) for b in loader]


@pytest.mark.parametrize("workers", [0, 2])
def test_every_epoch_draws_new_batches_for_any_number_of_workers(tiny_corpus, tmp_path, workers):
    cfg = config(tiny_corpus, workers)
    epochs = train(cfg, tmp_path / "run")
    assert sorted(epochs) == list(range(EPOCHS)) and all(len(b) == 2 for b in epochs.values())
    assert len({tuple(batches) for batches in epochs.values()}) == EPOCHS, "an epoch repeated another's batches"
    for epoch in (0, EPOCHS - 1):  # seed-determined: the sampler's order for that epoch, whatever the workers
        assert epochs[epoch] == expected_epoch(cfg, epoch)


def test_a_resumed_run_continues_with_the_next_epochs_batches(tiny_corpus, tmp_path):
    cfg = config(tiny_corpus, workers=2)
    straight = train(cfg, tmp_path / "straight")
    first = train(cfg, tmp_path / "resumed", stop_after=1)
    assert sorted(first) == [0, 1]
    assert ResumePoint.read(RunFolder(tmp_path / "resumed").stage("finetune_frame").resume_checkpoint) == ResumePoint(epochs=2, steps=4)
    second = train(cfg, tmp_path / "resumed", resume=True)
    assert sorted(second) == [2, 3]
    assert {**first, **second} == straight
    assert second[2] != first[0]  # not the batches of epoch 0 again


def test_the_sampler_draws_what_its_epoch_says():
    sampler = ProportionalBatchSampler([10, 20], [2, 2], seed=1, epoch=3)
    epoch3 = list(sampler)
    assert list(sampler) == epoch3  # iterating again does not move on by itself
    sampler.set_epoch(4)
    assert list(sampler) != epoch3
    assert list(ProportionalBatchSampler([10, 20], [2, 2], seed=1, epoch=4)) == list(sampler)
    assert sampler.order() == {"seed": 1, "pool_sizes": [10, 20], "per_batch": [2, 2], "epoch_length": 5, "world_size": 1}
