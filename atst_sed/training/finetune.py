"""SED fine-tuning task (Lightning): weak + strong BCE, optional mixup and mean teacher.

The task wraps a plain :class:`~atst_sed.models.sed.SEDModel`; it does no file I/O. Batches hold
waveforms; the model computes its own input on the task's device (:meth:`SEDTask.with_inputs`:
``batch["inputs"]``, what ``model(*inputs)`` takes), and augmentations that act on it (mixup,
frequency warp) come between that and the forward pass. With a mean teacher the task also covers
ATST-SED's semi-supervised recipe: interpolation consistency (ICT) on mixed batches, the teacher on
the clean input, separate learning rates per part of the model. Validation
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

from atst_sed.data.augment import RandomResizeCrop
from atst_sed.data.datasets import set_sampler_epoch
from atst_sed.errors import AtstSedError
from atst_sed.models.head import SEDOutput
from atst_sed.models.sed import SEDModel
from atst_sed.models.spec import ParameterPart
from atst_sed.training.ema import ema_update
from atst_sed.training.losses import consistency_loss, ict_loss, label_groups, mixup_batch, supervised_loss
from atst_sed.training.schedules import exponential_rampup, lr_factors
from atst_sed.training.validation import TEACHER, ValidationConfig, objective_value

log = logging.getLogger(__name__)

Evaluator = Callable[[Mapping[str, np.ndarray]], Mapping[str, float]]


@dataclass
class OptimConfig:
    """Optimizer + per-step schedule (audiossl DESED fine-tuning: SGD, lr 0.1, 5 linear warm-up
    epochs, cosine to 1e-6).

    ``lr``: peak learning rate of every part of the model (:meth:`SEDModel.parameter_parts`) whose
    kind ``rates`` does not name; ``rates``: peak rate per kind (ATST-SED: ``{cnn: 2e-4, rnn: 2e-3,
    transformer: 2e-4}``; ATST SED models: ``head`` / ``encoder``). ``layer_decay``: a transformer
    part k blocks from the top (0 = last block and final norm) gets ``rate · layer_decay^k``, the
    embeddings ``layer_decay^depth`` (ATST-SED's ``tfm_lr_scale``). ``warmup_epochs`` may be
    fractional. ``warmup``: ``linear`` from 0, or ``exponential`` (``exp(−5(1 − s/R)²)``, DESED_task
    and ATST-SED). ``decay``: ``cosine`` to ``final_lr`` (× ``rate / lr`` per part) at the last step,
    or ``constant`` (ATST-SED stage 1). ``name``: ``sgd`` (paper), ``adam`` (ATST-SED, betas
    0.9/0.999) or ``adamw`` (for small models trained from scratch, where SGD needs far more steps).
    """

    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = 0.1
    rates: dict[str, float] = field(default_factory=dict)
    final_lr: float = 1e-6
    warmup_epochs: float = 5.0
    warmup: Literal["linear", "exponential"] = "linear"
    decay: Literal["cosine", "constant"] = "cosine"
    momentum: float = 0.9
    weight_decay: float = 0.0
    layer_decay: float = 0.75
    nesterov: bool = False


@dataclass
class MixupConfig:
    """Mixup on the model's input with soft targets, within label groups (one λ ~ Beta(α, α) per
    group) on a share ``prob`` of the batches (0 = off, the paper's setting; ATST-SED: 0.5, with the
    unlabeled clips mixed too). ``fields``: which fields of a two-branch input are mixed (None:
    all; ATST-SED stage 1 mixes only its CNN branch, ``[cnn]``)."""

    prob: float = 0.0
    alpha: float = 0.2
    mix_unlabeled: bool = False
    fields: list[str] | None = None


@dataclass
class FreqWarpConfig:
    """Frequency warp (ATST-SED's on its ATST input): on a share ``prob`` of the batches, per label
    group, a random band of ``⌊U(min_scale, 1)·F⌋`` mel bins is stretched to all F bins (bicubic,
    :meth:`~atst_sed.data.augment.RandomResizeCrop.frequency_warp`), the student's and the
    teacher's inputs drawn separately. ``field``: which field of the model's input (None: the
    first), e.g. the ATST branch of a two-branch model."""

    prob: float = 0.0
    min_scale: float = 0.6
    field: str | None = None


@dataclass
class ConsistencyConfig:
    """Mean-teacher consistency (ATST-SED / DCASE baseline style); off by default.

    MSE on frame and clip probabilities (clip term × ``clip_weight``) over the whole batch, weight
    ``max_weight · exp(−5 (1 − t)²)`` ramped up over ``rampup_epochs``. EMA:
    ``α = min(1 − 1/(step + 1), ema_decay)`` per optimizer step, on the parameters. As in the
    official mean teachers (DCASE baseline, ATST-SED), the teacher runs in training mode during
    training steps — its BatchNorm layers normalise with the batch's statistics and keep their own
    running statistics (ATST-SED's CNN), its dropout is active — and in inference mode when validated
    and tested; blocks frozen in the student stay in inference mode in both. ``teacher_input``:
    ``student`` — the teacher sees the student's (possibly mixed) input (DCASE baseline, ATST-SED stage 1) — or
    ``clean``: the un-mixed input (ATST-SED stage 2). ``ict``: on mixed batches the student is held
    to the teacher's clean outputs mixed the same way instead (interpolation consistency,
    :func:`~atst_sed.training.losses.ict_loss`), weighed ``ict_scale`` × the consistency weight
    (ATST-SED stage 2: ⅛). ICT needs ``teacher_input: clean``.
    """

    enabled: bool = False
    max_weight: float = 2.0
    rampup_epochs: float = 5.0
    ema_decay: float = 0.999
    clip_weight: float = 1.0
    teacher_input: Literal["student", "clean"] = "student"
    ict: bool = False
    ict_scale: float = 0.125

    def __post_init__(self) -> None:
        if self.ict and self.teacher_input != "clean":
            raise ValueError("task.consistency.ict needs teacher_input: clean (the teacher's outputs on the un-mixed input)")


@dataclass
class TaskConfig:
    """What trains and how the loss is built.

    ``trainable_blocks``: the last N encoder blocks + final norm + head train (paper: 1); 0 = head
    only; −1 = the whole encoder incl. embeddings (from-scratch / small models, ATST-SED stage 2).
    An ATST-SED model's CNN, BiGRU and heads always train (stage 1: 0, the transformer frozen).
    Frozen blocks run in eval mode without autograd.
    ``weak_weight``: ATST-SED stage 2 halves it.
    """

    trainable_blocks: int = 1
    strong_weight: float = 1.0
    weak_weight: float = 1.0
    weak_on_strong_clips: bool = False
    mixup: MixupConfig = field(default_factory=MixupConfig)
    freq_warp: FreqWarpConfig = field(default_factory=FreqWarpConfig)
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


def frozen_modules(model: SEDModel, like: SEDModel | None = None) -> list[nn.Module]:
    """Encoder blocks without any trainable parameter (kept in eval mode: no DropPath) — of
    ``model``, or the blocks of ``like`` (a copy such as the mean teacher) at the same places."""
    blocks = list((like or model).encoder.blocks)
    return [blocks[i] for i, b in enumerate(model.encoder.blocks) if not any(p.requires_grad for p in b.parameters())]


def model_parts(model: nn.Module) -> list[ParameterPart]:
    """The model's :meth:`parameter_parts`, or one part ``model`` holding every parameter."""
    if hasattr(model, "parameter_parts"):
        return list(model.parameter_parts())
    return [ParameterPart("model", "model", None, list(model.parameters()))]


def parameter_groups(model: nn.Module, optim: OptimConfig) -> list[dict[str, Any]]:
    """Trainable parameters grouped by part (:func:`model_parts`), each group with its ``peak_lr``
    (``rates[kind]`` or ``lr``, × ``layer_decay^layer`` inside the transformer), ``name`` and ``kind``.
    A parameter listed by two parts goes to the first."""
    unknown = sorted(set(optim.rates) - {p.kind for p in model_parts(model)})
    if unknown:
        kinds = sorted({p.kind for p in model_parts(model)})
        raise ValueError(f"optim.rates names {unknown}, which this model does not have (its parts: {', '.join(kinds)})")
    seen: set[int] = set()
    groups = []
    for part in model_parts(model):
        params = [p for p in part.params if p.requires_grad and id(p) not in seen]
        seen.update(id(p) for p in params)
        if params:
            rate = float(optim.rates.get(part.kind, optim.lr))
            scale = 1.0 if part.layer is None else optim.layer_decay**part.layer
            groups.append({"params": params, "peak_lr": rate * scale, "name": part.name, "kind": part.kind})
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
    ``evaluator`` turns ``{filename: probs (N_valid, C)}`` of the strong validation clips into
    metrics (e.g. PSDS1/PSDS2), logged as ``val/<name>``; the task itself logs ``val/loss``, and
    with held-out weak clips ``val/weak_f1`` and ``val/weak_loss``. ``validation``
    (:class:`~atst_sed.training.validation.ValidationConfig`) may ask for the mean teacher's metrics
    too (``val/teacher/…``) and for an objective (``val/objective``).
    """

    def __init__(
        self,
        model: SEDModel,
        task: TaskConfig | None = None,
        optim: OptimConfig | None = None,
        evaluator: Evaluator | None = None,
        validation: ValidationConfig | None = None,
    ):
        super().__init__()
        self.model = model
        self.task_config = task or TaskConfig()
        self.optim_config = optim or OptimConfig()
        self.evaluator = evaluator
        self.validation_config = validation or ValidationConfig()
        apply_trainable(self.model, self.task_config.trainable_blocks)
        self.ema: SEDModel | None = None
        if self.task_config.consistency.enabled:
            self.ema = copy.deepcopy(self.model)
            for p in self.ema.parameters():
                p.requires_grad_(False)
        if self.validation_config.validates_teacher() and self.ema is None:
            raise ValueError("validation names the mean teacher (teacher/…), but task.consistency is not enabled")
        for block in SEDTask._fixed_modules(self):  # this class's: a subclass's parts are not set yet
            block.eval()
        warp = self.task_config.freq_warp
        self._warp = RandomResizeCrop.frequency_warp((warp.min_scale, 1.0))
        self._lr: np.ndarray | None = None
        self._val: dict[str, _ValidationTally] = {}

    # ----------------------------------------------------------------- modes
    def _fixed_modules(self) -> list[nn.Module]:
        """Modules that must stay in eval mode even while training: frozen blocks (the student's and
        the mean teacher's copies of them)."""
        fixed = frozen_modules(self.model)
        if self.ema is not None:
            fixed += frozen_modules(self.model, like=self.ema)
        return fixed

    def train(self, mode: bool = True) -> "SEDTask":
        """Lightning calls ``.train()`` every epoch: keep frozen blocks (and fixed teachers) in eval mode."""
        super().train(mode)
        for m in self._fixed_modules():
            m.eval()
        return self

    def on_train_epoch_start(self) -> None:
        if self.ema is not None:  # the mean teacher trains along (BatchNorm statistics, dropout)
            self.ema.train()
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
        """Per-step factors × each parameter group's peak rate (:func:`~atst_sed.training.schedules.lr_factors`)."""
        if self._lr is None:
            o = self.optim_config
            total = max(1, int(self.trainer.estimated_stepping_batches))
            warmup = int(round(o.warmup_epochs * self.steps_per_epoch))
            self._lr = lr_factors(total, min(warmup, total), o.warmup, o.decay, o.final_lr / o.lr if o.lr else 0.0)
        return self._lr

    def _lr_factor(self) -> float:
        schedule = self.lr_schedule()
        return float(schedule[min(self.global_step, len(schedule) - 1)])

    def consistency_weight(self) -> float:
        c = self.task_config.consistency
        ramp_steps = int(round(c.rampup_epochs * self.steps_per_epoch))
        return c.max_weight * float(exponential_rampup(self.global_step, ramp_steps))

    def configure_optimizers(self):
        o = self.optim_config
        groups = parameter_groups(self.model, o)
        for g in groups:
            g["lr"] = g["peak_lr"]
        if o.name == "adamw":
            return torch.optim.AdamW(groups, lr=o.lr, weight_decay=o.weight_decay)
        if o.name == "adam":
            return torch.optim.Adam(groups, lr=o.lr, betas=(0.9, 0.999), weight_decay=o.weight_decay)
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=o.nesterov)

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        factor = self._lr_factor()
        for opt in self.trainer.optimizers:
            for g in opt.param_groups:
                g["lr"] = factor * g.get("peak_lr", self.optim_config.lr)

    # ----------------------------------------------------------------- training
    def forward(self, *inputs: Any) -> SEDOutput:
        return self.model(*inputs)

    def with_inputs(self, batch: dict) -> dict:
        """The batch with the model's input added as ``inputs`` (:meth:`SEDModel.features` of
        ``waveforms`` / ``lengths``, on the batch's device, no autograd; ``model(*inputs)``)."""
        return {**batch, "inputs": self.model.features(batch["waveforms"], batch["lengths"])}

    def augment(self, batch: dict) -> dict:
        """Mixup and frequency warp of a training batch (each on its share of the batches).

        Adds ``teacher_inputs`` (the mean teacher's input: the student's, or the clean one —
        :attr:`ConsistencyConfig.teacher_input`) and ``mix`` ((λ (B,), perm (B,)) when mixed, else None)."""
        c, m, w = self.task_config.consistency, self.task_config.mixup, self.task_config.freq_warp
        clean = batch["inputs"]
        mix = None
        if m.prob > 0 and random.random() < m.prob:
            batch, lam, perm = mixup_batch(batch, m.alpha, m.mix_unlabeled, fields=m.fields)
            mix = (lam, perm)
        teacher = clean if c.teacher_input == "clean" else None
        if w.prob > 0 and random.random() < w.prob:
            groups = label_groups(batch)
            batch = {**batch, "inputs": self.freq_warp(batch["inputs"], groups)}
            if teacher is not None:
                teacher = self.freq_warp(teacher, groups)  # drawn anew: the teacher's warp differs
        return {**batch, "teacher_inputs": batch["inputs"] if teacher is None else teacher, "mix": mix}

    def freq_warp(self, inputs: Any, groups: Tensor) -> Any:
        """``inputs`` with the warped field (:class:`FreqWarpConfig`) warped, one draw per label group."""
        name = self.task_config.freq_warp.field
        fields = list(inputs._fields) if hasattr(inputs, "_fields") else None
        if name is not None and (fields is None or name not in fields):
            raise ValueError(f"task.freq_warp.field {name!r} is not a field of the model's input ({fields})")
        index = 0 if name is None else fields.index(name)
        x = inputs if isinstance(inputs, Tensor) else inputs[index]
        warped = x.clone()
        for g in torch.unique(groups).tolist():
            rows = groups == g
            warped[rows] = self._warp(x[rows].float()).to(x.dtype)
        if isinstance(inputs, Tensor):
            return warped
        values = list(inputs)
        values[index] = warped
        return type(inputs)(*values) if fields is not None else type(inputs)(values)

    def extra_loss(self, batch: Mapping[str, Any], out: SEDOutput, valid: Tensor) -> tuple[Tensor | None, dict[str, Tensor]]:
        """Hook for subclasses (distillation); returns (loss to mix in, values to log)."""
        return None, {}

    def combine(self, supervised: Tensor, extra: Tensor | None) -> Tensor:
        return supervised if extra is None else supervised + extra

    def compute_loss(self, batch: dict) -> tuple[Tensor, dict[str, Tensor]]:
        """Training loss of one (already augmented, :meth:`augment`) batch and the values to log."""
        out = self.model(*batch["inputs"])
        valid = out.frame_mask
        t = self.task_config
        sup = supervised_loss(
            out, batch["strong"], batch["weak"], batch["has_strong"], batch["has_weak"], valid,
            t.strong_weight, t.weak_weight, t.weak_on_strong_clips,
        )
        extra, logs = self.extra_loss(batch, out, valid)
        loss = self.combine(sup.total, extra)
        if self.ema is not None:
            c = t.consistency
            with torch.no_grad():
                teacher_out = self.ema(*batch.get("teacher_inputs", batch["inputs"]))
            mix = batch.get("mix")
            if c.ict and mix is not None:
                lam, perm = mix
                cons = c.ict_scale * ict_loss(out, teacher_out, lam, perm, label_groups(batch), valid, c.clip_weight)
            else:
                cons = consistency_loss(out, teacher_out, valid, c.clip_weight)
            weight = self.consistency_weight()
            loss = loss + weight * cons
            logs["train/consistency"] = cons.detach()
            logs["train/consistency_weight"] = torch.tensor(weight)
        logs.update({"train/loss": loss.detach(), "train/strong": sup.strong.detach(), "train/weak": sup.weak.detach()})
        return loss, logs

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        loss, logs = self.compute_loss(self.augment(self.with_inputs(batch)))
        bs = batch["waveforms"].shape[0]
        self.log_dict(logs, batch_size=bs, on_step=True, on_epoch=True)
        self.log("lr", self._lr_factor() * self.optim_config.lr, batch_size=bs, on_step=True, on_epoch=False)
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
    def _validated_models(self) -> dict[str, nn.Module]:
        """Metric prefix → model: the student (no prefix) and, when asked for, the mean teacher."""
        models: dict[str, nn.Module] = {"": self.model}
        if self.ema is not None and self.validation_config.validates_teacher():
            models[TEACHER] = self.ema
        return models

    def on_validation_epoch_start(self) -> None:
        self._val = {prefix: _ValidationTally() for prefix in self._validated_models()}

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        batch = self.with_inputs(batch)
        n = batch["waveforms"].shape[0]
        has_strong = batch.get("has_strong", torch.ones(n, dtype=torch.bool, device=self.device))
        has_weak = batch.get("has_weak", has_strong)
        for prefix, model in self._validated_models().items():
            out = model(*batch["inputs"])
            self._val[prefix].add(out, batch, has_strong, has_weak, keep_scores=self.evaluator is not None)

    def on_validation_epoch_end(self) -> None:
        metrics: dict[str, float] = {}
        for prefix, tally in self._val.items():
            metrics.update({prefix + k: v for k, v in self._epoch_metrics(tally).items()})
        if self.validation_config.objective and not self.trainer.sanity_checking:
            try:
                metrics["objective"] = objective_value(self.validation_config.objective, metrics)
            except KeyError as err:
                raise AtstSedError(str(err.args[0])) from None
        for name, value in metrics.items():
            self.log(f"val/{name}", float(value), prog_bar=name in ("loss", "psds1", "psds2", "objective"),
                     sync_dist=False, rank_zero_only=False)

    def _epoch_metrics(self, tally: "_ValidationTally") -> dict[str, float]:
        """One model's validation metrics over every rank's share of the clips."""
        # frame BCE over every strong frame + clip BCE over every weakly labelled clip, all ranks' shares
        sums = torch.stack(tally.loss).sum(0) if tally.loss else torch.zeros(4, dtype=torch.float64)
        s_sum, s_n, w_sum, w_n = self.trainer.strategy.reduce(sums.to(self.device), reduce_op="sum")
        metrics = {"loss": float(s_sum / s_n.clamp(min=1) + w_sum / w_n.clamp(min=1))}
        # Every rank takes part in every gather (a rank's share may hold no weak or no strong clip).
        weak = [pair for part in self._from_all_ranks(tally.weak) for pair in part]
        if weak:
            probs, targets = (torch.cat(parts) for parts in zip(*weak))
            metrics["weak_f1"] = weak_macro_f1(probs, targets)
            metrics["weak_loss"] = float(torch.nn.functional.binary_cross_entropy(probs.double(), targets.double()))
        if self.evaluator is None:
            return metrics
        # every rank gathers all clips, so every rank logs the same metrics
        scores = {k: v for part in self._from_all_ranks(tally.scores) for k, v in part.items()}
        if self.trainer.sanity_checking or not scores:
            return metrics
        metrics.update({k: float(v) for k, v in self.evaluator(scores).items()})
        return metrics

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


class _ValidationTally:
    """One model's validation outputs of an epoch: loss sums, held-out weak clips' clip
    probabilities, the strong clips' frame scores."""

    def __init__(self) -> None:
        self.loss: list[Tensor] = []  # per batch: strong BCE sum, its count, weak BCE sum, its count
        self.weak: list[tuple[Tensor, Tensor]] = []
        self.scores: dict[str, np.ndarray] = {}

    def add(self, out: SEDOutput, batch: Mapping[str, Any], has_strong: Tensor, has_weak: Tensor, keep_scores: bool) -> None:
        valid = out.frame_mask
        sup = supervised_loss(out, batch["strong"], batch["weak"], has_strong, has_weak, valid, weak_on_strong_clips=True)
        # sums and counts, so that the epoch's loss does not depend on how clips fall into batches
        self.loss.append(torch.stack([sup.strong.detach() * sup.strong_count, sup.strong_count,
                                      sup.weak.detach() * sup.weak_count, sup.weak_count]).double().cpu())
        weak_only = has_weak & ~has_strong
        if weak_only.any():  # held-out weak clips: clip-level metrics only
            self.weak.append((out.clip_probs[weak_only].float().cpu(), batch["weak"][weak_only].float().cpu()))
        if keep_scores:
            probs = out.frame_probs.float().cpu().numpy()
            n_valid = valid.sum(dim=1).cpu().numpy()
            for name, p, n, strong in zip(batch["filenames"], probs, n_valid, has_strong.cpu().tolist()):
                if strong:
                    self.scores[name] = p[: int(n)]
