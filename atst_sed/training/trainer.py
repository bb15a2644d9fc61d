"""The one Lightning ``Trainer`` builder of fine-tuning and pretraining runs, its "auto precision"
rule, which process writes a run folder, and the Lightning chatter our runs do without."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

GPU_ACCELERATORS = ("auto", "gpu", "cuda")


def uses_gpu(accelerator: str) -> bool:
    """True when ``accelerator`` (``auto``, ``gpu``, ``cuda``, ``cpu`` …) runs on a CUDA GPU here."""
    return torch.cuda.is_available() and accelerator in GPU_ACCELERATORS


def resolve_precision(precision: str | None, accelerator: str) -> str:
    """Lightning's precision for a config value: None or ``auto`` = ``bf16-mixed`` on a GPU,
    ``32-true`` elsewhere; anything else as given."""
    if precision in (None, "auto"):
        return "bf16-mixed" if uses_gpu(accelerator) else "32-true"
    return precision


def is_main_process() -> bool:
    """True in the process that writes the run folder: global rank 0 of a distributed run, or the
    only process. Lightning's DDP launcher starts the other ranks by running the same command line
    again (with LOCAL_RANK / NODE_RANK set), torchrun sets RANK, SLURM SLURM_PROCID; so they go
    through every stage too, and this decides who writes."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank() == 0
    env = os.environ
    if "RANK" in env:
        return int(env["RANK"]) == 0
    if "LOCAL_RANK" in env:  # SLURM_PROCID may be inherited from a one-task job: check this first
        return int(env["LOCAL_RANK"]) == 0 and int(env.get("NODE_RANK", env.get("GROUP_RANK", 0))) == 0
    return int(env.get("SLURM_PROCID", 0)) == 0


#: Lightning's loggers: their INFO lines (accelerator banners, the litlogger tip, "`Trainer.fit`
#: stopped", checkpoint-loading notes) say nothing our own log lines do not; warnings still show.
LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning.pytorch", "lightning.fabric", "lightning_fabric")

#: Warnings about Lightning's own internals or about what our runs do on purpose (message regexes).
QUIET_WARNINGS = (
    # pytorch_lightning's pytree helper calls a torch API that torch >= 2.10 deprecates: not ours to fix
    r".*isinstance\(treespec, LeafSpec\)` is deprecated",
    # frozen encoder blocks are kept in eval mode on purpose (no dropout / DropPath in them)
    r"Found \d+ module\(s\) in eval mode",
)


def quiet_lightning() -> None:
    """Keep a run's terminal to our own lines: Lightning's INFO chatter off, the warnings of
    :data:`QUIET_WARNINGS` ignored (the model-summary table is off in :func:`build_trainer`).
    Idempotent; called by :func:`build_trainer`."""
    for name in LIGHTNING_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for message in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message)


def build_trainer(
    root_dir: str | Path,
    *,
    accelerator: str = "auto",
    devices: int | str = "auto",
    num_nodes: int = 1,
    strategy: str = "auto",
    precision: str | None = None,
    callbacks: Sequence[pl.Callback] = (),
    loggers: Sequence[Any] = (),
    **options: Any,
) -> pl.Trainer:
    """A ``pl.Trainer`` writing under ``root_dir`` with the placement settings of a run config
    (``precision`` by :func:`resolve_precision`); ``options`` are the other Trainer arguments. No
    model-summary table (runs log their parameter counts themselves; Lightning's table shows
    "FLOPs 0" for models it cannot trace), and :func:`quiet_lightning`."""
    quiet_lightning()
    options.setdefault("enable_model_summary", False)
    return pl.Trainer(
        default_root_dir=str(root_dir),
        accelerator=accelerator,
        devices=devices,
        num_nodes=num_nodes,
        strategy=strategy,
        precision=resolve_precision(precision, accelerator),
        callbacks=list(callbacks),
        logger=list(loggers),
        **options,
    )
