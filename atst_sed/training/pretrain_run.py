"""Run a pretraining job (:mod:`~atst_sed.training.pretrain_config`): run folder, Lightning Trainer,
initialisation from checkpoints, teacher export.

Run folder (``output_dir``, :class:`~atst_sed.runfolder.RunFolder`)::

    config.yaml               the resolved config (re-run it as is)
    manifest.json             versions, git commit, seed, data fingerprint, encoder, world size
    checkpoints/last.ckpt     the resume checkpoint: every checkpoint_every_n_steps and at the end
    checkpoints/step-*.ckpt   kept copies, every checkpoint_every_n_steps
    logs/tensorboard/, logs/csv/version_N/metrics.csv (one version per session; resuming adds one)
    teacher_encoder.ckpt      the EMA teacher encoder in atst-sed's checkpoint format (what
                              ``atst-sed train`` / ``embed`` load); written at the end of training

The Lightning checkpoints keep the official key layout (``model.teacher.encoder.*``), so
``load_checkpoint(RUN/checkpoints/last.ckpt)`` also gives the teacher encoder of an unfinished run.
"""

from __future__ import annotations

import logging
from os import PathLike
from pathlib import Path
from typing import Any

import torch

from atst_sed.config import to_dict, write_yaml
from atst_sed.data.pretrain import PretrainDataModule
from atst_sed.errors import AtstSedError, InputError
from atst_sed.frontend import FrontendConfig
from atst_sed.models.checkpoint import (
    convert_official_state_dict,
    is_atst_sed_checkpoint,
    load_checkpoint,
    load_weights,
    published_state_dict,
    read_checkpoint_file,
    save_checkpoint,
)
from atst_sed.runfolder import RunFolder
from atst_sed.training.callbacks import ResumeCheckpoint, ResumePoint, StepLog, StepProgressBar, on_a_terminal
from atst_sed.training.pretrain import CollapseMonitor, PretrainModule
from atst_sed.training.pretrain_config import PretrainConfig
from atst_sed.training.provenance import run_manifest
from atst_sed.training.trainer import build_trainer as build_lightning_trainer
from atst_sed.training.trainer import uses_gpu

log = logging.getLogger(__name__)


# -- initialisation from checkpoints ----------------------------------------------------------------
def init_from_checkpoint(module: PretrainModule, path: str | PathLike[str]) -> dict[str, Any]:
    """Initialise ``module`` from a pretraining Lightning file (official or ours) or an encoder file.

    Official layout: ``model.student.encoder.*`` → student encoder, ``model.teacher.encoder.*`` →
    teacher encoder (a missing branch is copied from the other), ``model.{student,teacher}.projector.*``
    and ``model.student.predictor.*`` when present. Read with ``torch.load(weights_only=True)``.
    Optimizer state and schedule position are not taken over. Returns what was loaded.
    """
    path = Path(path)
    raw = read_checkpoint_file(path)
    method = module.model_config.method
    model = module.model
    sd: dict[str, torch.Tensor] = {} if is_atst_sed_checkpoint(raw) else published_state_dict(raw, path)
    branches = [b for b in ("student", "teacher") if f"model.{b}.encoder.pos_embed" in sd]
    loaded: dict[str, Any] = {"path": str(path), "parts": []}
    if not branches:
        encoder = load_checkpoint(path, variant=method).encoder
        _check_same_architecture(encoder.config, model.student.encoder.config, path)
        for branch in (model.student, model.teacher):
            branch.encoder.load_state_dict(encoder.state_dict())
        loaded["parts"] = ["student.encoder", "teacher.encoder"]
        return loaded
    for b in branches:
        enc_sd, config = convert_official_state_dict(sd, f"model.{b}.encoder.", method)
        target = getattr(model, b).encoder
        _check_same_architecture(config, target.config, path)
        load_weights(target, enc_sd, path)
        loaded["parts"].append(f"{b}.encoder")
    for b, part in (("student", "projector"), ("student", "predictor"), ("teacher", "projector")):
        prefix = f"model.{b}.{part}."
        part_sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        if part_sd:
            load_weights(getattr(getattr(model, b), part), part_sd, path)
            loaded["parts"].append(f"{b}.{part}")
    # A branch missing from the file starts as a copy of the other one (EMA teacher = student at step 0).
    for src, dst in (("student", "teacher"), ("teacher", "student")):
        for part in ("encoder", "projector"):
            if f"{src}.{part}" in loaded["parts"] and f"{dst}.{part}" not in loaded["parts"]:
                getattr(getattr(model, dst), part).load_state_dict(getattr(getattr(model, src), part).state_dict())
                loaded["parts"].append(f"{dst}.{part} (copied from {src})")
    if method == "clip":
        model.student.encoder.mask_embed.requires_grad_(False)
    loaded["global_step"] = raw.get("global_step") if isinstance(raw, dict) else None
    return loaded


def _check_same_architecture(found, wanted, path: Path) -> None:
    keys = ("variant", "width", "depth", "heads")
    if any(getattr(found, k) != getattr(wanted, k) for k in keys):
        have = ", ".join(f"{k}={getattr(found, k)}" for k in keys)
        want = ", ".join(f"{k}={getattr(wanted, k)}" for k in keys)
        raise InputError(path, f"checkpoint encoder ({have}) does not match model.encoder ({want})")


# -- run folder ------------------------------------------------------------------------------------
def write_manifest(folder: RunFolder, config: PretrainConfig, data: PretrainDataModule, module: PretrainModule) -> None:
    """The pretraining run's ``manifest.json`` (the same provenance as a fine-tuning run's)."""
    student = module.model.student
    folder.write_manifest(run_manifest(
        seed=config.seed,
        dataset={"root": config.data.source, "fingerprint": data.fingerprint, "missing_files": data.missing_files,
                 "n_files": len(data.files)},
        classes=[],
        frontend=FrontendConfig().to_dict(),
        model={
            "encoder": module.teacher_encoder.config.to_dict(),
            "n_parameters": sum(p.numel() for p in student.parameters()),
            "n_trainable_parameters": sum(p.numel() for p in student.parameters() if p.requires_grad),
        },
        method=config.model.method,
        training_data=[config.data.source],
        stages=["pretrain"],
    ))


def export_teacher(module: PretrainModule, path: Path, config: PretrainConfig, step: int) -> Path:
    """Write the EMA teacher encoder in atst-sed's self-describing format."""
    meta = {"source": "atst-sed pretrain", "method": config.model.method, "global_step": int(step),
            "branch": "teacher", "data_source": config.data.source}
    return save_checkpoint(path, module.teacher_encoder, frontend=FrontendConfig(), meta=meta)


def build_trainer(config: PretrainConfig, folder: RunFolder, callbacks: list | None = None, resumed: ResumePoint | None = None):
    """The pretraining Trainer: ``checkpoints/step-*.ckpt`` kept and the resume checkpoint every
    ``checkpoint_every_n_steps``, the collapse monitor, TensorBoard and CSV logs under ``logs/``, and
    progress: a bar on a terminal (``trainer.enable_progress_bar``), else a log line every
    ``trainer.log_every_n_steps`` steps (:class:`StepLog`)."""
    from pytorch_lightning.callbacks import ModelCheckpoint
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

    t = config.trainer
    gpu = uses_gpu(t.accelerator)
    every = max(t.checkpoint_every_n_steps, 1)
    kept = ModelCheckpoint(dirpath=folder.pretrain_checkpoints_dir, filename="step-{step}", every_n_train_steps=every,
                           save_top_k=-1, save_last=False, auto_insert_metric_name=False)
    resume = ResumeCheckpoint(folder.pretrain_resume_checkpoint, every_n_steps=every)
    # CSV: a new version_N folder per (resumed) session, so that nothing written before is lost;
    # TensorBoard drops what the interrupted session logged after its resume checkpoint.
    purge = {"purge_step": resumed.steps} if resumed else {}
    loggers = [TensorBoardLogger(folder.logs_dir, name="tensorboard", version="", **purge),
               CSVLogger(folder.logs_dir, name="csv")]
    # A live bar on a terminal; elsewhere (a file, a pipe, a batch job's log) a line every log_every_n_steps.
    live = t.enable_progress_bar and on_a_terminal()
    progress = [StepProgressBar()] if live else [StepLog(t.log_every_n_steps)]
    return build_lightning_trainer(
        folder.path,
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=t.precision,
        callbacks=[kept, resume, CollapseMonitor(config.collapse), *progress, *(callbacks or [])],
        loggers=loggers,
        sync_batchnorm=bool(t.sync_batchnorm and gpu),
        max_steps=config.optim.max_steps,
        max_epochs=-1,
        log_every_n_steps=t.log_every_n_steps,
        enable_progress_bar=live,
        num_sanity_val_steps=0,
        benchmark=gpu,
    )


def run_pretraining(config: PretrainConfig, resume: bool = False, callbacks: list | None = None) -> Path:
    """Train, then export the teacher encoder; returns the path of ``teacher_encoder.ckpt``."""
    import pytorch_lightning as pl

    folder = RunFolder(config.output_dir)
    last = folder.pretrain_resume_checkpoint
    if resume and not last.is_file():
        raise InputError(last, "nothing to resume (no last checkpoint in the run folder)")
    if not resume and last.is_file():
        raise AtstSedError(f"{folder.path} already holds a run; pass --resume to continue it or choose another output_dir")
    resumed = ResumePoint.read(last) if resume else None
    pl.seed_everything(config.seed, workers=True, verbose=False)
    data = PretrainDataModule(config.data, config.model.method, FrontendConfig(), seed=config.seed)
    data.prepare_files()
    module = PretrainModule(config.model, config.optim, config.data.batch_size)
    if config.init_checkpoint and not resume:
        info = init_from_checkpoint(module, config.init_checkpoint)
        log.info("initialised %s from %s (official global_step %s)", ", ".join(info["parts"]), info["path"], info.get("global_step"))
    trainer = build_trainer(config, folder, callbacks, resumed)
    if trainer.is_global_zero:
        folder.path.mkdir(parents=True, exist_ok=True)
        write_yaml(folder.config_path, to_dict(config))
        write_manifest(folder, config, data, module)
    trainer.fit(module, datamodule=data, ckpt_path=str(last) if resume else None, weights_only=True)
    out = folder.teacher_encoder
    if trainer.is_global_zero:
        export_teacher(module, out, config, trainer.global_step)
        log.info("teacher encoder written to %s", out)
    return out
