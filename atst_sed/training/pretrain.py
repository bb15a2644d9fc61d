"""BYOL-style teacher–student pretraining of ATST-Frame and ATST-Clip (a Lightning module, no I/O).

Structure (parameter names follow audiossl's pretraining layout, so an official Lightning
checkpoint's ``model.student.*`` / ``model.teacher.*`` keys map one to one):

- ``model.student`` = :class:`ByolBranch` (encoder + projector + predictor), trained by AdamW;
- ``model.teacher`` = encoder + projector (no predictor), an EMA copy of the student, never
  receiving gradients (stop-gradient).

Projector / predictor: Linear(no bias) → BatchNorm1d → ReLU → Linear(no bias) (4096 hidden, 256 out).
Loss: 2 − 2·cos(teacher, student) on L2-normalised vectors, symmetric over the two cross pairs
(teacher(view 1) ↔ student(view 2), teacher(view 2) ↔ student(view 1)), averaged.

- ``method="frame"`` (ATST-Frame): a batch holds ``view1`` (clean) and ``view2`` (mixup +
  frequency warp) of the *same* 10 s crop, (B, 64, T). One span mask per clip
  (:func:`~atst_sed.training.masking.span_mask`, drawn here on the device) is shared by both views;
  the student sees masked tokens replaced by the learned mask token, the teacher sees the unmasked
  views; projector/predictor run per frame and the loss uses the masked frames only.
- ``method="clip"`` (ATST-Clip): ``view1`` / ``view2`` are two 6 s crops (each mixup + random resized
  crop); the CLS output goes through projector/predictor.

As upstream, the teacher stays in train mode (Lightning puts the whole module in train mode):
its DropPath is live and its BatchNorm uses batch statistics and updates its own running
statistics, which the EMA does not touch. Learning rate, weight decay and EMA momentum are set by
hand every step from per-step schedule arrays (see :class:`PretrainOptimConfig`).
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from atst_sed.models.encoder import ATSTEncoder, EncoderConfig
from atst_sed.training.ema import ema_momentum_schedule, ema_update
from atst_sed.training.masking import span_mask
from atst_sed.training.schedules import cosine_ramp, cosine_schedule

log = logging.getLogger(__name__)


@dataclass
class PretrainModelConfig:
    """What is trained. ``encoder``: a named size (``frame_base``, ``clip_small``, ``frame_tiny`` …);
    ``encoder_overrides``: EncoderConfig fields to change (e.g. ``{drop_path: 0.1}``).
    ``mask_prob`` / ``mask_span``: fairseq static span masking (ATST-Frame only)."""

    method: Literal["frame", "clip"] = "frame"
    encoder: str = "frame_base"
    encoder_overrides: dict[str, Any] | None = None
    projector_hidden: int = 4096
    projector_out: int = 256
    mask_prob: float = 0.65
    mask_span: int = 5
    symmetric: bool = True

    def encoder_config(self) -> EncoderConfig:
        config = EncoderConfig.named(self.encoder, **(self.encoder_overrides or {}))
        if config.variant != self.method:
            raise ValueError(f"method {self.method!r} needs an ATST-{self.method.capitalize()} encoder, got {self.encoder!r}")
        return config


@dataclass
class PretrainOptimConfig:
    """AdamW and the per-step schedules (indexed by the optimizer step, ``max_steps`` entries).

    ``lr`` is the base rate per 256 clips: the peak is ``lr · total_batch / 256`` (total batch =
    batch per device × devices × nodes); linear warm-up from exactly 0 over ``warmup_steps``, then
    cosine to ``min_lr``. Weight decay (decayed group only) cosine ``weight_decay`` →
    ``weight_decay_end``. EMA momentum cosine ``ema`` → 1.
    """

    lr: float = 8e-5
    min_lr: float = 1e-6
    warmup_steps: int = 19900
    max_steps: int = 398000
    weight_decay: float = 0.04
    weight_decay_end: float = 0.4
    ema: float = 0.9996
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-6


@dataclass
class CollapseConfig:
    """Collapse monitoring on the std (per dimension across the batch, averaged) of L2-normalised
    outputs. A healthy 256-d output has std ≈ 1/√256 = 0.0625; a collapsed one 0. Warn when it falls
    below ``min_std`` or below ``drop_fraction`` × its running maximum (after ``warmup_steps``)."""

    min_std: float = 0.01
    drop_fraction: float = 0.25
    warmup_steps: int = 10
    every_n_steps: int = 1


def build_mlp(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """Linear(no bias) → BatchNorm1d → ReLU → Linear(no bias); keys ``0.weight``, ``1.*``, ``3.weight``."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden, bias=False),
        nn.BatchNorm1d(hidden),
        nn.ReLU(inplace=True),
        nn.Linear(hidden, out_dim, bias=False),
    )


class ByolBranch(nn.Module):
    """Encoder + projector (+ predictor for the student; ``nn.Identity`` for the teacher)."""

    def __init__(self, encoder: ATSTEncoder, projector: nn.Module, predictor: nn.Module | None = None):
        super().__init__()
        self.encoder = encoder
        self.projector = projector
        self.predictor = predictor if predictor is not None else nn.Identity()

    def head(self, x: Tensor) -> Tensor:
        """(S, D) encoder vectors → (S, out) projector (+ predictor) outputs."""
        return self.predictor(self.projector(x))


class ByolModel(nn.Module):
    """Student and EMA teacher (``student`` / ``teacher`` as in the official layout)."""

    def __init__(self, config: PretrainModelConfig):
        super().__init__()
        enc_config = config.encoder_config()
        encoder = ATSTEncoder(enc_config)
        d, h, o = enc_config.width, config.projector_hidden, config.projector_out
        self.student = ByolBranch(encoder, build_mlp(d, h, o), build_mlp(o, h, o))
        self.teacher = ByolBranch(copy.deepcopy(encoder), copy.deepcopy(self.student.projector))
        if config.method == "clip":
            # ATST-Clip never masks: mask_embed gets no gradient (upstream AdamW skips it). Freezing it
            # is equivalent and lets DDP run without find_unused_parameters.
            self.student.encoder.mask_embed.requires_grad_(False)
        for p in self.teacher.parameters():
            p.requires_grad_(False)


def byol_loss(teacher: Tensor, student: Tensor) -> Tensor:
    """Mean over rows of 2 − 2·cos(teacher, student); both (S, K). The teacher is detached."""
    t = F.normalize(teacher.detach().float(), dim=-1)
    s = F.normalize(student.float(), dim=-1)
    return 2.0 - 2.0 * (t * s).sum(dim=-1).mean()


def symmetric_byol_loss(teacher: Tensor, student: Tensor, symmetric: bool = True) -> Tensor:
    """``teacher``/``student`` (2S, K) = [view 1 rows; view 2 rows]. Loss = mean of the cross pairs
    (t1, s2) and (t2, s1) — or only (t1, s2) when not symmetric."""
    t1, t2 = teacher.chunk(2)
    s1, s2 = student.chunk(2)
    if not symmetric:
        return byol_loss(t1, s2)
    return 0.5 * (byol_loss(t1, s2) + byol_loss(t2, s1))


def param_groups(module: nn.Module) -> list[dict[str, Any]]:
    """AdamW groups as upstream: group 0 (weight decay) = trainable tensors with ndim > 1 whose name
    does not end in ``.bias`` (includes ``mask_embed`` and ``pos_embed``); group 1 = biases and 1-D
    tensors (norm weights), no weight decay. Each group carries its parameter names."""
    decay, no_decay, decay_names, no_decay_names = [], [], [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        if name.endswith(".bias") or p.ndim <= 1:
            no_decay.append(p)
            no_decay_names.append(name)
        else:
            decay.append(p)
            decay_names.append(name)
    return [
        {"params": decay, "names": decay_names, "weight_decay": 0.0, "decayed": True},
        {"params": no_decay, "names": no_decay_names, "weight_decay": 0.0, "decayed": False},
    ]


def normalised_std_stats(x: Tensor) -> Tensor:
    """Sufficient statistics [count, Σ y, Σ y²] (each per dimension, flattened) of L2-normalised rows."""
    y = F.normalize(x.detach().float(), dim=-1)
    n = torch.tensor([float(y.shape[0])], device=y.device)
    return torch.cat([n, y.sum(0), (y * y).sum(0)])


def std_from_stats(stats: Tensor) -> float:
    """Per-dimension (unbiased) std from :func:`normalised_std_stats` (possibly summed over ranks), averaged."""
    n = stats[0]
    k = (stats.numel() - 1) // 2
    s, ss = stats[1 : 1 + k], stats[1 + k :]
    var = (ss - s * s / n) / torch.clamp(n - 1, min=1)
    return float(torch.sqrt(torch.clamp(var, min=0)).mean())


class PretrainModule(pl.LightningModule):
    """Lightning module for ``method`` frame|clip pretraining.

    Batches: dict with ``view1``, ``view2`` (B, 64, T) float normalised log-mel and optionally
    ``skipped`` (B,) long (unreadable files replaced while building each item).
    ``batch_size`` is the per-device batch, used for the learning-rate scaling.
    After each step ``last_std`` holds ``{"teacher": float, "student": float}`` (all ranks).
    """

    def __init__(
        self,
        model: PretrainModelConfig | dict | None = None,
        optim: PretrainOptimConfig | dict | None = None,
        batch_size: int = 64,
    ):
        super().__init__()
        from atst_sed.config import from_dict

        self.model_config = model if isinstance(model, PretrainModelConfig) else from_dict(PretrainModelConfig, model or {}, "model")
        self.optim_config = optim if isinstance(optim, PretrainOptimConfig) else from_dict(PretrainOptimConfig, optim or {}, "optim")
        self.batch_size = int(batch_size)
        # Plain dicts only, so that Lightning checkpoints stay loadable with weights_only=True.
        self.save_hyperparameters({"model": asdict(self.model_config), "optim": asdict(self.optim_config), "batch_size": self.batch_size})
        self.model = ByolModel(self.model_config)
        self.mask_generator: torch.Generator | None = None
        self.last_std: dict[str, float] = {}
        self._schedules: dict[str, np.ndarray] | None = None
        self._skipped_total = 0

    # -- convenience ---------------------------------------------------------------------------
    @property
    def teacher_encoder(self) -> ATSTEncoder:
        """The EMA teacher encoder: what fine-tuning and ``embed`` load."""
        return self.model.teacher.encoder

    @property
    def student_encoder(self) -> ATSTEncoder:
        return self.model.student.encoder

    def world_size(self) -> int:
        trainer = self._trainer
        return int(trainer.world_size) if trainer is not None else 1

    def peak_lr(self) -> float:
        """Base lr scaled by the total batch (per-device batch × world size) / 256."""
        return self.optim_config.lr * self.batch_size * self.world_size() / 256.0

    def schedules(self) -> dict[str, np.ndarray]:
        """Per-step ``lr``, ``wd`` and ``ema`` arrays (``max_steps`` entries each)."""
        if self._schedules is None:
            c = self.optim_config
            self._schedules = {
                "lr": cosine_schedule(self.peak_lr(), c.min_lr, c.max_steps, c.warmup_steps),
                "wd": cosine_ramp(c.weight_decay, c.weight_decay_end, c.max_steps),
                "ema": ema_momentum_schedule(c.ema, c.max_steps),
            }
        return self._schedules

    def _index(self, step: int) -> int:
        return min(max(step, 0), self.optim_config.max_steps - 1)

    # -- forward / loss ------------------------------------------------------------------------
    def forward_views(self, view1: Tensor, view2: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Teacher and student outputs, each (2S, out) = [view 1 rows; view 2 rows].

        Frame: S = number of masked tokens over the batch (``mask`` (B, N) bool, shared by both
        views; drawn here when None). Clip: S = B (CLS vectors).
        """
        x = torch.cat([view1, view2], dim=0)
        student, teacher = self.model.student, self.model.teacher
        if self.model_config.method == "frame":
            b = view1.shape[0]
            n = view1.shape[-1] // student.encoder.config.patch_frames
            if mask is None:
                mask = span_mask(b, n, self.model_config.mask_prob, self.model_config.mask_span,
                                 generator=self.mask_generator, device=x.device)
            mask2 = torch.cat([mask, mask], dim=0)
            s_vec = student.encoder(x, token_mask=mask2).frames[mask2]
            with torch.no_grad():
                t_vec = teacher.encoder(x).frames[mask2]
        else:
            s_vec = student.encoder(x).cls
            with torch.no_grad():
                t_vec = teacher.encoder(x).cls
        s_out = student.head(s_vec)
        with torch.no_grad():
            t_out = teacher.head(t_vec)
        return t_out, s_out

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        t_out, s_out = self.forward_views(batch["view1"], batch["view2"])
        loss = symmetric_byol_loss(t_out, s_out, self.model_config.symmetric)
        b = batch["view1"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=b, sync_dist=True)
        # Collapse monitoring: exact global std over all ranks from summed sufficient statistics.
        stats = torch.stack([normalised_std_stats(t_out), normalised_std_stats(s_out)])
        stats = self._all_reduce_sum(stats)
        self.last_std = {"teacher": std_from_stats(stats[0]), "student": std_from_stats(stats[1])}
        self.log("std/teacher", self.last_std["teacher"], batch_size=b)
        self.log("std/student", self.last_std["student"], batch_size=b)
        if "skipped" in batch:
            skipped = self._all_reduce_sum(batch["skipped"].sum().float().reshape(1))
            self._skipped_total += int(skipped.item())
            self.log("data/skipped_files", float(self._skipped_total), batch_size=b)
        # What the optimizer really uses this step (set in on_train_batch_start), not the schedule array.
        decayed = next(g for g in self.trainer.optimizers[0].param_groups if g.get("decayed"))
        self.log("train/lr", float(decayed["lr"]), batch_size=b)
        self.log("train/wd", float(decayed["weight_decay"]), batch_size=b)
        self.log("train/ema", float(self.schedules()["ema"][self._index(self.global_step)]), batch_size=b)
        return loss

    def _all_reduce_sum(self, x: Tensor) -> Tensor:
        if self._trainer is not None and self.trainer.world_size > 1:
            return self.trainer.strategy.reduce(x, reduce_op="sum")
        return x

    # -- optimisation --------------------------------------------------------------------------
    def configure_optimizers(self) -> torch.optim.Optimizer:
        c = self.optim_config
        groups = [{k: v for k, v in g.items() if k != "names"} for g in param_groups(self.model.student)]
        return torch.optim.AdamW(groups, lr=0.0, betas=tuple(c.betas), eps=c.eps, weight_decay=0.0)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Set lr (all groups) and weight decay (decayed group) for the coming optimizer step."""
        step = self._index(self.global_step)
        sched = self.schedules()
        for opt in self.trainer.optimizers:
            for group in opt.param_groups:
                group["lr"] = float(sched["lr"][step])
                group["weight_decay"] = float(sched["wd"][step]) if group.get("decayed") else 0.0
        self._step_before = self.global_step

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """EMA update with m_k after optimizer step k (only when a step really happened)."""
        if self.global_step > self._step_before:
            m = float(self.schedules()["ema"][self._index(self._step_before)])
            ema_update(self.model.teacher, self.model.student, m)

    def on_fit_start(self) -> None:
        self._schedules = None  # the world size is known now
        self._step_before = self.global_step
        c = self.optim_config
        params = list(self.model.parameters())
        trainable = sum(p.numel() for p in params if p.requires_grad)
        log.info(
            "pretraining ATST-%s (%s parameters, %s trainable) in %d process(es): peak lr %.3g (base %.3g × %d clips "
            "/ 256), warm-up %d, max %d steps, EMA %.5g → 1",
            self.model_config.method.capitalize(), f"{sum(p.numel() for p in params):,}", f"{trainable:,}",
            self.world_size(), self.peak_lr(), c.lr, self.batch_size * self.world_size(), c.warmup_steps, c.max_steps,
            c.ema,
        )


class CollapseMonitor(pl.Callback):
    """Warn (log) when the std of normalised teacher or student outputs falls below ``min_std`` or
    drops below ``drop_fraction`` × its running maximum. ``warnings`` counts the warnings issued."""

    def __init__(self, config: CollapseConfig | None = None):
        self.config = config or CollapseConfig()
        self.max_std: dict[str, float] = {}
        self.warnings = 0
        self._warned_at: dict[str, int] = {}

    def check(self, std: dict[str, float], step: int) -> list[str]:
        """Messages for the stds of ``step`` (also updates the running maxima)."""
        c = self.config
        messages = []
        for name, value in std.items():
            if not math.isfinite(value):
                messages.append(f"{name} output std is {value} at step {step}")
                continue
            peak = self.max_std.get(name, 0.0)
            if step >= c.warmup_steps:
                if value < c.min_std:
                    messages.append(
                        f"possible collapse: {name} output std {value:.4g} < {c.min_std:g} at step {step} "
                        "(healthy ≈ 1/sqrt(dim); lower the learning rate or raise the EMA rate)"
                    )
                elif peak > 0 and value < c.drop_fraction * peak:
                    messages.append(
                        f"possible collapse: {name} output std dropped to {value:.4g} "
                        f"(< {c.drop_fraction:g} × its maximum {peak:.4g}) at step {step}"
                    )
            self.max_std[name] = max(peak, value)
        return messages

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        std = getattr(pl_module, "last_std", None)
        if not std or trainer.global_step % max(self.config.every_n_steps, 1):
            return
        for message in self.check(std, trainer.global_step):
            self.warnings += 1
            if trainer.is_global_zero:
                log.warning(message)
        pl_module.log("std/collapse_warnings", float(self.warnings))

    def state_dict(self) -> dict[str, Any]:
        return {"max_std": dict(self.max_std), "warnings": self.warnings}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.max_std = dict(state_dict.get("max_std", {}))
        self.warnings = int(state_dict.get("warnings", 0))
