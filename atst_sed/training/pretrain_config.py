"""The configuration of ``atst-sed pretrain``: typed sections, YAML with ``base:`` files, overrides."""

from __future__ import annotations

from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

from atst_sed.config import ConfigError, deep_merge, from_dict, parse_overrides, read_yaml, resolve_named
from atst_sed.data.pretrain import PretrainDataConfig
from atst_sed.errors import AtstSedError, InputError
from atst_sed.training.pretrain import CollapseConfig, PretrainModelConfig, PretrainOptimConfig

CONFIG_FILE = "pretrain.yaml"


@dataclass
class PretrainTrainerConfig:
    """Lightning Trainer settings. ``precision: auto`` = ``bf16-mixed`` on GPU, ``32-true`` on CPU
    (:func:`~atst_sed.training.trainer.resolve_precision`); ``sync_batchnorm`` applies to multi-GPU
    DDP (PyTorch's SyncBatchNorm has no CPU kernel)."""

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
