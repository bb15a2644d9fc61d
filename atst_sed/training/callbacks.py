"""Lightning callbacks of the training runs: export our self-describing checkpoints, write the
resume checkpoint, keep the CSV log of an interrupted run, log epochs, show the progress of
step-bounded runs."""

from __future__ import annotations

import csv
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pytorch_lightning as pl
import torch
from lightning_fabric.loggers.logger import rank_zero_experiment
from pytorch_lightning.loggers.csv_logs import CSVLogger, ExperimentWriter

from atst_sed.errors import InputError
from atst_sed.models.checkpoint import read_checkpoint_file, save_checkpoint
from atst_sed.models.sed import SEDModel

log = logging.getLogger(__name__)

# (model, role, extra meta) -> kwargs of save_checkpoint (classes, decoding, frontend, meta)
CheckpointInfo = Callable[[SEDModel, dict[str, Any]], dict[str, Any]]


def _teacher_of(module: pl.LightningModule) -> SEDModel | None:
    """The model worth keeping beside the student: the mean-teacher EMA, if any."""
    return getattr(module, "ema", None)


class ExportCheckpoints(pl.Callback):
    """The one best-model tracker: writes ``best.ckpt`` (by ``monitor``/``mode``, ties to the later
    epoch) and ``last.ckpt`` in the atst-sed format (:func:`atst_sed.models.checkpoint.checkpoint_dict`)
    into ``directory``; with a mean teacher also ``best_teacher.ckpt`` / ``last_teacher.ckpt``. Its
    best score travels in the resume checkpoint."""

    def __init__(self, directory: str | Path, monitor: str, mode: str, info: CheckpointInfo):
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', not {mode!r}")
        self.directory = Path(directory)
        self.monitor = monitor
        self.mode = mode
        self.info = info
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self.best_metrics: dict[str, float] = {}

    def _save(self, module: pl.LightningModule, trainer: pl.Trainer, name: str, extra: dict[str, Any], epochs: int) -> None:
        if not trainer.is_global_zero:
            return
        meta = {"epochs": epochs, "global_step": trainer.global_step, **extra}  # epochs = completed epochs
        save_checkpoint(self.directory / f"{name}.ckpt", module.model, **self.info(module.model, meta))
        teacher = _teacher_of(module)
        if teacher is not None:
            save_checkpoint(self.directory / f"{name}_teacher.ckpt", teacher, **self.info(teacher, {**meta, "role": "mean_teacher"}))

    def _better(self, value: float) -> bool:
        if math.isnan(value):
            return False
        if self.best_score is None:
            return True
        # Ties go to the later epoch (e.g. PSDS still 0 early on: prefer the more trained model).
        return value >= self.best_score if self.mode == "max" else value <= self.best_score

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        if self.monitor not in metrics:
            log.warning("monitor %s was not logged (have: %s); best.ckpt follows the last epoch", self.monitor, ", ".join(sorted(metrics)))
            value = float("nan")
        else:
            value = metrics[self.monitor]
        if self._better(value) or self.monitor not in metrics:
            self.best_score = None if math.isnan(value) else value
            self.best_epoch = trainer.current_epoch
            self.best_metrics = {k[len("val/") :]: v for k, v in metrics.items()}
            self._save(module, trainer, "best", {"monitor": self.monitor, "score": self.best_score}, trainer.current_epoch + 1)

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._save(module, trainer, "last", {}, trainer.current_epoch + 1)

    def on_fit_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._save(module, trainer, "last", {}, trainer.current_epoch)
        if not (self.directory / "best.ckpt").exists():  # no validation ran: the last model is the best we know
            self.best_epoch = max(trainer.current_epoch - 1, 0)
            self._save(module, trainer, "best", {"monitor": None, "score": None}, trainer.current_epoch)

    def state_dict(self) -> dict[str, Any]:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch, "best_metrics": dict(self.best_metrics)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_score = state.get("best_score")
        self.best_epoch = state.get("best_epoch")
        self.best_metrics = dict(state.get("best_metrics", {}))


class ResumeCheckpoint(pl.callbacks.Checkpoint):
    """Lightning's whole training state (weights, optimizer, loops, callbacks, datamodule batch order,
    random states) written to ``path``, replacing the previous one: what ``--resume`` continues from.
    Written at the end of every training epoch, after its validation, or with ``every_n_steps`` every
    that many optimizer steps and when training ends. Independent of the best model
    (:class:`ExportCheckpoints`). Written to a temporary file and renamed, so a kill while writing
    leaves the previous file.

    The loggers are flushed with every write and when an epoch starts (Lightning logs an epoch's
    training means after its end hooks), so the logs on disk cover everything the file holds."""

    def __init__(self, path: str | Path, every_n_steps: int | None = None):
        self.path = Path(path)
        self.every_n_steps = every_n_steps
        self._saved_step: int | None = None

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        _flush_loggers(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if not self.every_n_steps:
            self._save(trainer)

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, *args: Any) -> None:
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0 and trainer.global_step != self._saved_step:
            self._save(trainer)

    def on_train_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if self.every_n_steps and trainer.global_step != self._saved_step:
            self._save(trainer)

    def _save(self, trainer: pl.Trainer) -> None:
        _flush_loggers(trainer)
        partial = self.path.with_name(self.path.name + ".tmp")
        trainer.save_checkpoint(partial)  # every rank takes part; rank 0 writes
        if trainer.is_global_zero:
            os.replace(partial, self.path)
        self._saved_step = trainer.global_step


@dataclass(frozen=True)
class ResumePoint:
    """Where a resume checkpoint stands: ``epochs`` training epochs finished, ``steps`` optimizer steps."""

    epochs: int
    steps: int

    @classmethod
    def read(cls, path: str | Path) -> "ResumePoint":
        """Check ``path`` before Lightning loads it: a truncated or corrupt file, or one that carries
        pickled objects (whose code would run), is a one-line :class:`InputError`; nothing runs."""
        raw = read_checkpoint_file(path, mmap=True)
        try:
            fit_loop = raw["loops"]["fit_loop"]
            epochs = fit_loop["epoch_progress"]["current"]["processed"]
            steps = fit_loop["epoch_loop.state_dict"]["_batches_that_stepped"]
            return cls(epochs=int(epochs), steps=int(steps))
        except (KeyError, TypeError, ValueError):
            raise InputError(path, "not a Lightning training checkpoint (no training loop state to resume)") from None


def _flush_loggers(trainer: pl.Trainer) -> None:
    for logger in trainer.loggers:
        logger.save()


class ContinuedCSVLogger(CSVLogger):
    """Lightning's CSV logger (``save_dir/name/version/metrics.csv``) that continues an earlier
    ``metrics.csv`` instead of deleting it: rows of epochs before ``keep_epochs_before`` stay, later
    ones (the interrupted epoch, which the resumed run repeats) go; 0 starts a new file."""

    def __init__(self, save_dir: str | Path, name: str, version: str, keep_epochs_before: int = 0):
        super().__init__(save_dir=str(save_dir), name=name, version=version)
        self.keep_epochs_before = int(keep_epochs_before)

    @property
    @rank_zero_experiment  # as Lightning's: only global rank 0 touches the file
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _ContinuedWriter(self.log_dir, self.keep_epochs_before)
        return self._experiment


class _ContinuedWriter(ExperimentWriter):
    def __init__(self, log_dir: str, keep_epochs_before: int):
        self._keep_epochs_before = keep_epochs_before
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:  # Lightning's version deletes metrics.csv
        path = Path(self.metrics_file_path)
        if not path.is_file():
            return
        if self._keep_epochs_before <= 0:
            path.unlink()
            return
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            keys = list(reader.fieldnames or [])
            rows = [r for r in reader if r.get("epoch") not in (None, "") and int(float(r["epoch"])) < self._keep_epochs_before]
        with open(path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)
        self.metrics_keys = sorted(keys)


class EpochSummary(pl.Callback):
    """One log line per epoch: losses, validation metrics, seconds (for runs without a progress bar)."""

    def __init__(self, stage: str):
        self.stage = stage
        self._start = time.perf_counter()

        self._validated = False

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._start = time.perf_counter()
        self._validated = False

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._validated = not trainer.sanity_checking

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        m = trainer.callback_metrics
        shown = ("train/loss_epoch", "val/loss", "val/psds1", "val/psds2") if self._validated else ("train/loss_epoch",)
        parts = [f"{k.replace('/', ' ').replace('_epoch', '')} {float(v):.4f}" for k, v in sorted(m.items()) if k in shown]
        log.info("%s epoch %d/%d: %s (%.1f s)", self.stage, trainer.current_epoch + 1, trainer.max_epochs, ", ".join(parts), time.perf_counter() - self._start)


def count_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(all parameters, trainable parameters)."""
    return sum(p.numel() for p in model.parameters()), sum(p.numel() for p in model.parameters() if p.requires_grad)


class StepProgressBar(pl.callbacks.RichProgressBar):
    """Lightning's rich bar for runs bounded by ``max_steps`` (pretraining): "Epoch 3 · step 75/100"
    where Lightning would print "Epoch 3/-2" (it shows ``max_epochs − 1``, and ``max_epochs`` is −1)."""

    def _get_train_description(self, current_epoch: int) -> str:
        return f"Epoch {current_epoch} · step {self.trainer.global_step}/{self.trainer.max_steps}"


def on_a_terminal() -> bool:
    """Whether a live progress bar can be seen: Lightning's rich bar draws on standard output, and in a
    file or a pipe it leaves only a frozen last frame."""
    import sys

    return sys.stdout.isatty()


class StepLog(pl.Callback):
    """One log line every ``every`` optimizer steps (and at the last): step of max, training loss, steps
    and clips per second since the previous line, time elapsed — the progress of a step-bounded run
    (pretraining) where no live progress bar shows (output to a file or a pipe)."""

    def __init__(self, every: int, stage: str = "pretrain"):
        self.every = max(int(every), 1)
        self.stage = stage
        self._start = self._since = time.perf_counter()
        self._since_step = 0

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._start = self._since = time.perf_counter()
        self._since_step = trainer.global_step

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        if step == self._since_step or (step % self.every and step != trainer.max_steps):
            return
        now = time.perf_counter()
        rate = (step - self._since_step) / max(now - self._since, 1e-9)
        self._since, self._since_step = now, step
        if not trainer.is_global_zero:
            return
        loss = trainer.callback_metrics.get("train/loss")
        clips = getattr(module, "batch_size", None)
        throughput = f"{rate:.2f} steps/s" + (f" ({rate * clips * trainer.world_size:.1f} clips/s)" if clips else "")
        elapsed = int(now - self._start)
        log.info("%s step %d/%d: loss %s, %s, %d:%02d elapsed", self.stage, step, trainer.max_steps,
                 "–" if loss is None else f"{float(loss):.4f}", throughput, elapsed // 60, elapsed % 60)
