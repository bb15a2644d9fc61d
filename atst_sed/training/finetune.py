"""SED fine-tuning task (Lightning): weak + strong BCE, optional mixup and mean teacher.

The task wraps a plain :class:`~atst_sed.models.sed.SEDModel`; it does no file I/O. Batches hold
waveforms; the model computes its own features on the task's device (:meth:`SEDTask.with_features`),
and augmentations that act on features (mixup) come between that and the forward pass. Validation
metrics come from an injected ``evaluator`` (frame scores per clip → metrics dict), so the task
stays free of ground-truth files and metric libraries.
"""

from __future__ import annotations

import copy
import logging
import math
import random
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from atst_sed.data.datasets import set_sampler_epoch
from atst_sed.models.head import SEDOutput
from atst_sed.models.sed import SEDModel
from atst_sed.training.ema import ema_update
from atst_sed.training.losses import consistency_loss, mixup_batch, supervised_loss
from atst_sed.training.schedules import cosine_schedule

log = logging.getLogger(__name__)

Evaluator = Callable[[Mapping[str, np.ndarray]], Mapping[str, float]]


@dataclass
class OptimConfig:
    """SGD + per-step schedule (audiossl DESED fine-tuning: lr 0.1, 5 warm-up epochs, cosine to 1e-6).

    ``lr``: peak learning rate of the head, final norm and last block. ``layer_decay``: block k
    from the top (0 = last) gets ``lr · layer_decay^k``; the embeddings get ``layer_decay^depth``.
    ``warmup_epochs`` may be fractional; ``final_lr`` is reached at the last step of ``max_epochs``.
    ``name``: ``sgd`` (paper) or ``adamw`` (betas 0.9/0.999; for small models trained from scratch,
    where SGD needs far more steps).
    """

    name: Literal["sgd", "adamw"] = "sgd"
    lr: float = 0.1
    final_lr: float = 1e-6
    warmup_epochs: float = 5.0
    momentum: float = 0.9
    weight_decay: float = 0.0
    layer_decay: float = 0.75
    nesterov: bool = False


@dataclass
class MixupConfig:
    """Mixup on features with soft targets, within label groups (one λ ~ Beta(α, α) per group)."""

    prob: float = 0.0  # probability per batch; 0 = off (paper setting)
    alpha: float = 0.2
    mix_unlabeled: bool = False


@dataclass
class ConsistencyConfig:
    """Mean-teacher consistency (ATST-SED / DCASE baseline style); off by default.

    The EMA teacher sees the student's (possibly mixed) input; MSE on frame and clip probabilities
    over the whole batch, weight ``max_weight · exp(−5 (1 − t)²)`` ramped up over ``rampup_epochs``.
    EMA: ``α = min(1 − 1/(step + 1), ema_decay)`` per optimizer step.
    """

    enabled: bool = False
    max_weight: float = 2.0
    rampup_epochs: float = 5.0
    ema_decay: float = 0.999


@dataclass
class TaskConfig:
    """What trains and how the loss is built.

    ``trainable_blocks``: the last N encoder blocks + final norm + head train (paper: 1); 0 = head
    only; −1 = the whole encoder incl. embeddings (from-scratch / small models). Frozen blocks run in
    eval mode without autograd.
    """

    trainable_blocks: int = 1
    strong_weight: float = 1.0
    weak_weight: float = 1.0
    weak_on_strong_clips: bool = False
    mixup: MixupConfig = field(default_factory=MixupConfig)
    consistency: ConsistencyConfig = field(default_factory=ConsistencyConfig)


def apply_trainable(model: SEDModel, trainable_blocks: int) -> None:
    """Set ``requires_grad`` per :attr:`TaskConfig.trainable_blocks` (the mask token never trains)."""
    depth = len(model.encoder.blocks)
    if trainable_blocks < 0 or trainable_blocks > depth:
        for p in model.parameters():
            p.requires_grad_(True)
        model.encoder.mask_embed.requires_grad_(False)  # only used by masked pretraining
    else:
        model.freeze_all_but_last(trainable_blocks)


def frozen_modules(model: SEDModel) -> list[nn.Module]:
    """Encoder blocks without any trainable parameter (kept in eval mode: no DropPath)."""
    return [b for b in model.encoder.blocks if not any(p.requires_grad for p in b.parameters())]


def parameter_groups(model: SEDModel, layer_decay: float) -> list[dict[str, Any]]:
    """Trainable parameters grouped by lr scale: head & final norm 1, block k-from-top ``decay^k``,
    embeddings ``decay^depth``. Each group carries ``lr_scale`` and ``name``."""
    enc = model.encoder
    depth = len(enc.blocks)
    named: list[tuple[str, float, list[nn.Parameter]]] = [
        ("head", 1.0, list(model.head.parameters())),
        ("norm", 1.0, list(enc.norm.parameters())),
    ]
    for i, block in enumerate(enc.blocks):
        named.append((f"blocks.{i}", layer_decay ** (depth - 1 - i), list(block.parameters())))
    embeds = [enc.mask_embed, enc.pos_embed, *enc.patch_embed.parameters()]
    if enc.cls_token is not None:
        embeds.append(enc.cls_token)
    named.append(("embeddings", layer_decay**depth, embeds))
    groups = []
    for name, scale, params in named:
        params = [p for p in params if p.requires_grad]
        if params:
            groups.append({"params": params, "lr_scale": scale, "name": name})
    return groups


def weak_macro_f1(clip_probs: Tensor, weak_targets: Tensor, threshold: float = 0.5) -> float:
    """Clip-level macro F1 at ``threshold`` (the DCASE 2022 baseline's weak validation metric):
    the mean over classes of 2·TP / (2·TP + FP + FN), classes without targets or detections left out
    (0.0 when every class is)."""
    pred = clip_probs > threshold
    truth = weak_targets > 0.5
    tp = (pred & truth).sum(0).double()
    wrong = (pred ^ truth).sum(0).double()
    seen = (tp + wrong) > 0
    if not seen.any():
        return 0.0
    return float((2 * tp[seen] / (2 * tp[seen] + wrong[seen])).mean())


class SEDTask(pl.LightningModule):
    """Fine-tune a :class:`SEDModel` on strong + weak (+ unlabeled) batches.

    Batches follow the data contract (:class:`~atst_sed.data.datasets.WaveformCollate`):
    ``waveforms`` (B, S), ``lengths`` (B,) valid samples, ``strong`` (B, N, C) targets on the
    model's grid, ``weak`` (B, C), ``has_strong``/``has_weak`` (B,) bool, ``filenames``.
    ``evaluator`` turns ``{filename: probs (N_valid, C)}`` of the whole validation set into metrics
    (e.g. PSDS1/PSDS2), logged as ``val/<name>``; without it only ``val/loss`` is logged.
    """

    def __init__(
        self,
        model: SEDModel,
        task: TaskConfig | None = None,
        optim: OptimConfig | None = None,
        evaluator: Evaluator | None = None,
    ):
        super().__init__()
        self.model = model
        self.task_config = task or TaskConfig()
        self.optim_config = optim or OptimConfig()
        self.evaluator = evaluator
        apply_trainable(self.model, self.task_config.trainable_blocks)
        self.ema: SEDModel | None = None
        if self.task_config.consistency.enabled:
            self.ema = copy.deepcopy(self.model)
            for p in self.ema.parameters():
                p.requires_grad_(False)
            self.ema.eval()
        for block in frozen_modules(self.model):
            block.eval()
        self._lr: np.ndarray | None = None
        self._val_scores: dict[str, np.ndarray] = {}
        self._val_loss: list[Tensor] = []  # per batch: strong BCE sum, its count, weak BCE sum, its count
        self._val_weak: list[tuple[Tensor, Tensor]] = []

    # ----------------------------------------------------------------- modes
    def _fixed_modules(self) -> list[nn.Module]:
        """Modules that must stay in eval mode even while training."""
        fixed = frozen_modules(self.model)
        if self.ema is not None:
            fixed.append(self.ema)
        return fixed

    def train(self, mode: bool = True) -> "SEDTask":
        """Lightning calls ``.train()`` every epoch: keep frozen blocks / teachers in eval mode."""
        super().train(mode)
        for m in self._fixed_modules():
            m.eval()
        return self

    def on_train_epoch_start(self) -> None:
        for m in self._fixed_modules():
            m.eval()
        # Lightning's own set_epoch calls reach samplers, never a batch sampler: without this every
        # epoch would repeat the batches of epoch 0. (The first epoch of a fit — 0, or a resumed
        # one — is set by the datamodule: its loader starts before this hook.)
        set_sampler_epoch(self.trainer.train_dataloader, self.current_epoch)

    # ----------------------------------------------------------------- schedules
    @property
    def steps_per_epoch(self) -> int:
        total = int(self.trainer.estimated_stepping_batches)
        return max(1, math.ceil(total / max(1, self.trainer.max_epochs or 1)))

    def lr_schedule(self) -> np.ndarray:
        if self._lr is None:
            total = max(1, int(self.trainer.estimated_stepping_batches))
            warmup = int(round(self.optim_config.warmup_epochs * self.steps_per_epoch))
            self._lr = cosine_schedule(self.optim_config.lr, self.optim_config.final_lr, total, min(warmup, total))
        return self._lr

    def consistency_weight(self) -> float:
        c = self.task_config.consistency
        ramp_steps = c.rampup_epochs * self.steps_per_epoch
        t = 1.0 if ramp_steps <= 0 else min(1.0, self.global_step / ramp_steps)
        return c.max_weight * math.exp(-5.0 * (1.0 - t) ** 2)

    def configure_optimizers(self):
        groups = parameter_groups(self.model, self.optim_config.layer_decay)
        o = self.optim_config
        for g in groups:
            g["lr"] = o.lr * g["lr_scale"]
        if o.name == "adamw":
            return torch.optim.AdamW(groups, lr=o.lr, weight_decay=o.weight_decay)
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=o.nesterov)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        schedule = self.lr_schedule()
        lr = float(schedule[min(self.global_step, len(schedule) - 1)])
        for opt in self.trainer.optimizers:
            for g in opt.param_groups:
                g["lr"] = lr * g.get("lr_scale", 1.0)

    # ----------------------------------------------------------------- training
    def forward(self, features: Tensor, frame_lengths: Tensor | None = None) -> SEDOutput:
        return self.model(features, frame_lengths)

    def with_features(self, batch: dict) -> dict:
        """The batch with the model's input added: ``features`` and ``frame_lengths`` computed by
        the model's frontend from ``waveforms`` / ``lengths`` (on the batch's device, no autograd)."""
        features, frame_lengths = self.model.features(batch["waveforms"], batch["lengths"])
        return {**batch, "features": features, "frame_lengths": frame_lengths}

    def _maybe_mixup(self, batch: dict) -> dict:
        m = self.task_config.mixup
        if m.prob > 0 and random.random() < m.prob:
            batch, _, _ = mixup_batch(batch, m.alpha, m.mix_unlabeled)
        return batch

    def extra_loss(self, batch: Mapping[str, Any], out: SEDOutput, valid: Tensor) -> tuple[Tensor | None, dict[str, Tensor]]:
        """Hook for subclasses (distillation); returns (loss to mix in, values to log)."""
        return None, {}

    def combine(self, supervised: Tensor, extra: Tensor | None) -> Tensor:
        return supervised if extra is None else supervised + extra

    def compute_loss(self, batch: dict) -> tuple[Tensor, dict[str, Tensor]]:
        """Training loss of one (already augmented) batch and the values to log."""
        out = self.model(batch["features"], batch.get("frame_lengths"))
        valid = out.valid
        t = self.task_config
        sup = supervised_loss(
            out, batch["strong"], batch["weak"], batch["has_strong"], batch["has_weak"], valid,
            t.strong_weight, t.weak_weight, t.weak_on_strong_clips,
        )
        extra, logs = self.extra_loss(batch, out, valid)
        loss = self.combine(sup.total, extra)
        if self.ema is not None:
            with torch.no_grad():
                teacher_out = self.ema(batch["features"], batch.get("frame_lengths"))
            cons = consistency_loss(out, teacher_out, valid)
            weight = self.consistency_weight()
            loss = loss + weight * cons
            logs["train/consistency"] = cons.detach()
            logs["train/consistency_weight"] = torch.tensor(weight)
        logs.update({"train/loss": loss.detach(), "train/strong": sup.strong.detach(), "train/weak": sup.weak.detach()})
        return loss, logs

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        loss, logs = self.compute_loss(self._maybe_mixup(self.with_features(batch)))
        bs = batch["waveforms"].shape[0]
        self.log_dict(logs, batch_size=bs, on_step=True, on_epoch=True)
        schedule = self.lr_schedule()
        self.log("lr", float(schedule[min(self.global_step, len(schedule) - 1)]), batch_size=bs, on_step=True, on_epoch=False)
        return loss

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        super().optimizer_step(*args, **kwargs)
        if self.ema is not None:  # once per optimizer step, right after it
            self.update_ema()

    @torch.no_grad()
    def update_ema(self) -> None:
        """Mean teacher ← EMA of the student (:func:`~atst_sed.training.ema.ema_update`) with
        α = min(1 − 1/(step + 1), ``ema_decay``); ``global_step`` already counts this step."""
        alpha = min(1.0 - 1.0 / (self.global_step + 1), self.task_config.consistency.ema_decay)
        ema_update(self.ema, self.model, alpha)

    # ----------------------------------------------------------------- validation
    def on_validation_epoch_start(self) -> None:
        self._val_scores = {}
        self._val_loss = []
        self._val_weak = []

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        batch = self.with_features(batch)
        out = self.model(batch["features"], batch["frame_lengths"])
        valid = out.valid
        has_strong = batch.get("has_strong", torch.ones(out.frame_probs.shape[0], dtype=torch.bool, device=self.device))
        has_weak = batch.get("has_weak", has_strong)
        sup = supervised_loss(out, batch["strong"], batch["weak"], has_strong, has_weak, valid, weak_on_strong_clips=True)
        # sums and counts, so that the epoch's loss does not depend on how clips fall into batches
        self._val_loss.append(torch.stack([sup.strong.detach() * sup.strong_count, sup.strong_count,
                                           sup.weak.detach() * sup.weak_count, sup.weak_count]).double())
        weak_only = has_weak & ~has_strong
        if weak_only.any():  # held-out weak clips: clip-level F1 only
            self._val_weak.append((out.clip_probs[weak_only].float().cpu(), batch["weak"][weak_only].float().cpu()))
        if self.evaluator is not None:
            probs = out.frame_probs.float().cpu().numpy()
            n_valid = valid.sum(dim=1).cpu().numpy()
            for name, p, n, strong in zip(batch["filenames"], probs, n_valid, has_strong.cpu().tolist()):
                if strong:
                    self._val_scores[name] = p[: int(n)]

    def on_validation_epoch_end(self) -> None:
        # frame BCE over every strong frame + clip BCE over every weakly labelled clip, all ranks' shares
        sums = torch.stack(self._val_loss).sum(0) if self._val_loss else torch.zeros(4, dtype=torch.float64, device=self.device)
        s_sum, s_n, w_sum, w_n = self.trainer.strategy.reduce(sums, reduce_op="sum")
        loss = s_sum / s_n.clamp(min=1) + w_sum / w_n.clamp(min=1)
        self.log("val/loss", float(loss), prog_bar=True, rank_zero_only=False)
        # Every rank takes part in every gather (a rank's share may hold no weak or no strong clip).
        weak = [pair for part in self._from_all_ranks(self._val_weak) for pair in part]
        if weak:
            probs, targets = (torch.cat(parts) for parts in zip(*weak))
            self.log("val/weak_f1", weak_macro_f1(probs, targets), sync_dist=False, rank_zero_only=False)
        if self.evaluator is None:
            return
        # every rank gathers all clips, so every rank logs the same PSDS
        scores = {k: v for part in self._from_all_ranks(self._val_scores) for k, v in part.items()}
        if self.trainer.sanity_checking or not scores:
            return
        metrics = self.evaluator(scores)
        for name, value in metrics.items():
            self.log(f"val/{name}", float(value), prog_bar=name in ("psds1", "psds2"), sync_dist=False, rank_zero_only=False)

    def _from_all_ranks(self, obj: Any) -> list[Any]:
        """``obj`` of every rank (``[obj]`` without DDP); a collective call under DDP."""
        if self.trainer.world_size == 1:
            return [obj]
        gathered: list[Any] = [None] * self.trainer.world_size
        torch.distributed.all_gather_object(gathered, obj)
        return gathered

    # ----------------------------------------------------------------- resume
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Random states travel with the resume checkpoint so a resumed run repeats the same draws."""
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        # Plain tensors and numbers only: Lightning reloads with torch.load(weights_only=True).
        checkpoint["rng_states"] = {
            "torch": torch.get_rng_state(),
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
            "python": random.getstate(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get("rng_states")
        if states:
            torch.set_rng_state(states["torch"])
            kind, keys, pos, has_gauss, gauss = states["numpy"]
            np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
            random.setstate(states["python"])
