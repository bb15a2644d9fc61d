"""Run a pretraining job: typed config, run folder, Lightning Trainer, teacher export.

Run folder (``output_dir``)::

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

import json
import logging
import platform
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from os import PathLike
from pathlib import Path
from typing import Any

import torch

from atst_sed import __version__
from atst_sed.config import ConfigError, deep_merge, from_dict, parse_overrides, read_yaml, resolve_named, to_dict, write_yaml
from atst_sed.data.pretrain import PretrainDataConfig, PretrainDataModule
from atst_sed.errors import AtstSedError, InputError
from atst_sed.features import FrontendConfig
from atst_sed.fileio import atomic_write_text
from atst_sed.training.callbacks import ResumeCheckpoint, ResumePoint
from atst_sed.training.pretrain import (
    CollapseConfig,
    CollapseMonitor,
    PretrainModelConfig,
    PretrainModule,
    PretrainOptimConfig,
)

log = logging.getLogger(__name__)

CONFIG_FILE = "pretrain.yaml"


@dataclass
class PretrainTrainerConfig:
    """Lightning Trainer settings. ``precision: auto`` = ``bf16-mixed`` on GPU, ``32-true`` on CPU;
    ``sync_batchnorm`` applies to multi-GPU DDP (PyTorch's SyncBatchNorm has no CPU kernel)."""

    accelerator: str = "auto"
    devices: int | str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "auto"
    sync_batchnorm: bool = True
    log_every_n_steps: int = 50
    checkpoint_every_n_steps: int = 5000
    enable_progress_bar: bool = True


@dataclass
class PretrainConfig:
    """The whole ``atst-sed pretrain`` config (YAML sections of the same names).

    ``init_checkpoint``: start from an official pretraining Lightning file (``model.student.*`` /
    ``model.teacher.*``: encoders, projectors, predictor), one of our pretraining checkpoints, or any
    encoder checkpoint :func:`~atst_sed.models.checkpoint.load_checkpoint` reads (then student and
    teacher encoders both start from it, heads fresh). Relative paths are relative to the current
    directory.
    """

    output_dir: str = "runs/pretrain"
    seed: int = 0
    init_checkpoint: str | None = None
    model: PretrainModelConfig = field(default_factory=PretrainModelConfig)
    optim: PretrainOptimConfig = field(default_factory=PretrainOptimConfig)
    data: PretrainDataConfig = field(default_factory=PretrainDataConfig)
    trainer: PretrainTrainerConfig = field(default_factory=PretrainTrainerConfig)
    collapse: CollapseConfig = field(default_factory=CollapseConfig)


def resolve_config_path(name: str | PathLike[str]) -> Path:
    """A YAML file, a recipe folder holding ``pretrain.yaml``, or a name of ``configs/pretrain/``
    (``mini``, ``frame_base``, …; shipped with atst-sed)."""
    return resolve_named(name, in_folder=CONFIG_FILE, shipped="configs", pattern="pretrain/{name}.yaml", what="pretraining config")


def _read_with_bases(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read YAML; a top-level ``base:`` (path or list of paths, relative to this file) is merged first."""
    path = path.resolve()
    if path in seen:
        raise InputError(path, "circular 'base:' reference")
    data = read_yaml(path)
    bases = data.pop("base", None)
    merged: dict[str, Any] = {}
    for base in [bases] if isinstance(bases, str) else list(bases or []):
        merged = deep_merge(merged, _read_with_bases(resolve_config_path(path.parent / base), seen + (path,)))
    return deep_merge(merged, data)


def load_pretrain_config(name: str | PathLike[str], overrides: list[str] | None = None) -> PretrainConfig:
    """Config from YAML (+ ``key=value`` overrides); unknown keys or wrong types → InputError."""
    path = resolve_config_path(name)
    data = _read_with_bases(path)
    try:
        data = deep_merge(data, parse_overrides(list(overrides or [])))
        config = from_dict(PretrainConfig, data)
    except ConfigError as err:
        raise AtstSedError(err.located(str(path))) from None
    except ValueError as err:  # a malformed command-line item
        raise AtstSedError(str(err)) from None
    try:
        config.model.encoder_config()
    except ValueError as err:
        raise InputError(path, str(err)) from None
    return config


# -- initialisation from checkpoints ----------------------------------------------------------------
def init_from_checkpoint(module: PretrainModule, path: str | PathLike[str]) -> dict[str, Any]:
    """Initialise ``module`` from a pretraining Lightning file (official or ours) or an encoder file.

    Official layout: ``model.student.encoder.*`` → student encoder, ``model.teacher.encoder.*`` →
    teacher encoder (a missing branch is copied from the other), ``model.{student,teacher}.projector.*``
    and ``model.student.predictor.*`` when present. Read with ``torch.load(weights_only=True)``.
    Optimizer state and schedule position are not taken over. Returns what was loaded.
    """
    from atst_sed.models import checkpoint as ckpt

    path = Path(path)
    raw = ckpt.read_checkpoint_file(path)
    method = module.model_config.method
    model = module.model
    if isinstance(raw, dict) and raw.get("format") == ckpt.FORMAT:
        sd: dict[str, torch.Tensor] = {}
    else:
        sd = ckpt._flat_state_dict(raw, path)
    branches = [b for b in ("student", "teacher") if f"model.{b}.encoder.pos_embed" in sd]
    loaded: dict[str, Any] = {"path": str(path), "parts": []}
    if not branches:
        encoder = ckpt.load_checkpoint(path, variant=method).encoder
        _check_same_architecture(encoder.config, model.student.encoder.config, path)
        for branch in (model.student, model.teacher):
            branch.encoder.load_state_dict(encoder.state_dict())
        loaded["parts"] = ["student.encoder", "teacher.encoder"]
        return loaded
    for b in branches:
        enc_sd, config = ckpt.convert_official_state_dict(sd, f"model.{b}.encoder.", method)
        target = getattr(model, b).encoder
        _check_same_architecture(config, target.config, path)
        ckpt._strict_load(target, enc_sd, path)
        loaded["parts"].append(f"{b}.encoder")
    for b, part in (("student", "projector"), ("student", "predictor"), ("teacher", "projector")):
        prefix = f"model.{b}.{part}."
        part_sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        if part_sd:
            ckpt._strict_load(getattr(getattr(model, b), part), part_sd, path)
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
def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("torch", "torchaudio", "pytorch-lightning", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def write_manifest(path: Path, config: PretrainConfig, data: PretrainDataModule, module: PretrainModule) -> None:
    encoder = module.teacher_encoder
    manifest = {
        "atst_sed_version": __version__,
        "git_commit": _git_commit(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seed": config.seed,
        "versions": _versions(),
        "dataset": {"root": config.data.source, "fingerprint": data.fingerprint, "missing_files": data.missing_files,
                    "n_files": len(data.files)},
        "classes": [],
        "frontend": FrontendConfig().to_dict(),
        "model": {
            "encoder": encoder.config.to_dict(),
            "n_parameters": sum(p.numel() for p in module.model.student.parameters()),
            "n_trainable_parameters": sum(p.numel() for p in module.model.student.parameters() if p.requires_grad),
        },
        "method": config.model.method,
        "training_data": [config.data.source],
        "stages": ["pretrain"],
    }
    atomic_write_text(path, json.dumps(manifest, indent=2))


def export_teacher(module: PretrainModule, path: Path, config: PretrainConfig, step: int) -> Path:
    """Write the EMA teacher encoder in atst-sed's self-describing format."""
    from atst_sed.models.checkpoint import save_checkpoint

    meta = {"source": "atst-sed pretrain", "method": config.model.method, "global_step": int(step),
            "branch": "teacher", "data_source": config.data.source}
    return save_checkpoint(path, module.teacher_encoder, frontend=FrontendConfig(), meta=meta)


def build_trainer(config: PretrainConfig, run_dir: Path, callbacks: list | None = None, resumed: ResumePoint | None = None):
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ModelCheckpoint
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

    from atst_sed.training.callbacks import StepProgressBar

    t = config.trainer
    gpu = t.accelerator in ("gpu", "cuda") or (t.accelerator == "auto" and torch.cuda.is_available())
    precision = t.precision if t.precision != "auto" else ("bf16-mixed" if gpu else "32-true")
    every = max(t.checkpoint_every_n_steps, 1)
    kept = ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="step-{step}", every_n_train_steps=every,
                           save_top_k=-1, save_last=False, auto_insert_metric_name=False)
    resume = ResumeCheckpoint(resume_checkpoint_path(run_dir), every_n_steps=every)
    # CSV: a new version_N folder per (resumed) session, so that nothing written before is lost;
    # TensorBoard drops what the interrupted session logged after its resume checkpoint.
    purge = {"purge_step": resumed.steps} if resumed else {}
    loggers = [TensorBoardLogger(run_dir / "logs", name="tensorboard", version="", **purge),
               CSVLogger(run_dir / "logs", name="csv")]
    bar = [StepProgressBar()] if t.enable_progress_bar else []
    return pl.Trainer(
        accelerator=t.accelerator,
        devices=t.devices,
        num_nodes=t.num_nodes,
        strategy=t.strategy,
        precision=precision,
        sync_batchnorm=bool(t.sync_batchnorm and gpu),
        max_steps=config.optim.max_steps,
        max_epochs=-1,
        log_every_n_steps=t.log_every_n_steps,
        enable_progress_bar=t.enable_progress_bar,
        callbacks=[kept, resume, CollapseMonitor(config.collapse), *bar, *(callbacks or [])],
        logger=loggers,
        default_root_dir=run_dir,
        num_sanity_val_steps=0,
        benchmark=gpu,
    )


def resume_checkpoint_path(run_dir: Path) -> Path:
    return run_dir / "checkpoints" / "last.ckpt"


def run_pretraining(config: PretrainConfig, resume: bool = False, callbacks: list | None = None) -> Path:
    """Train, then export the teacher encoder; returns the path of ``teacher_encoder.ckpt``."""
    import pytorch_lightning as pl

    run_dir = Path(config.output_dir)
    last = resume_checkpoint_path(run_dir)
    if resume and not last.is_file():
        raise InputError(last, "nothing to resume (no last checkpoint in the run folder)")
    if not resume and last.is_file():
        raise AtstSedError(f"{run_dir} already holds a run; pass --resume to continue it or choose another output_dir")
    resumed = ResumePoint.read(last) if resume else None
    pl.seed_everything(config.seed, workers=True, verbose=False)
    data = PretrainDataModule(config.data, config.model.method, FrontendConfig(), seed=config.seed)
    data.prepare_files()
    module = PretrainModule(config.model, config.optim, config.data.batch_size)
    if config.init_checkpoint and not resume:
        info = init_from_checkpoint(module, config.init_checkpoint)
        log.info("initialised %s from %s (official global_step %s)", ", ".join(info["parts"]), info["path"], info.get("global_step"))
    trainer = build_trainer(config, run_dir, callbacks, resumed)
    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_yaml(run_dir / "config.yaml", to_dict(config))
        write_manifest(run_dir / "manifest.json", config, data, module)
    trainer.fit(module, datamodule=data, ckpt_path=str(last) if resume else None, weights_only=True)
    out = run_dir / "teacher_encoder.ckpt"
    if trainer.is_global_zero:
        export_teacher(module, out, config, trainer.global_step)
        log.info("teacher encoder written to %s", out)
    return out
