"""Lightning callbacks of the training runs: export our self-describing checkpoints, log epochs,
show the progress of step-bounded runs."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Callable

import pytorch_lightning as pl
import torch

from atst_sed.models.checkpoint import save_checkpoint
from atst_sed.models.sed import SEDModel

log = logging.getLogger(__name__)

# (model, role, extra meta) -> kwargs of save_checkpoint (classes, decoding, frontend, meta)
CheckpointInfo = Callable[[SEDModel, dict[str, Any]], dict[str, Any]]


def _teacher_of(module: pl.LightningModule) -> SEDModel | None:
    """The model worth keeping beside the student: the mean-teacher EMA, if any."""
    return getattr(module, "ema", None)


class ExportCheckpoints(pl.Callback):
    """Write ``best.ckpt`` (by ``monitor``/``mode``) and ``last.ckpt`` in the atst-sed format
    (:func:`atst_sed.models.checkpoint.checkpoint_dict`) into ``directory``; with a mean teacher
    also ``best_teacher.ckpt`` / ``last_teacher.ckpt``. Its best score survives a resume."""

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
