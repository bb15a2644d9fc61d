"""ATST-SED's semi-supervised fine-tuning as general parts of the task: learning rates per part of the
model, the exponential warm-up, interpolation consistency on mixed batches, the teacher on the clean
input, the frequency warp, and validation of the mean teacher with an objective."""

from __future__ import annotations

import math

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from atst_sed.models.encoder import EncoderConfig
from atst_sed.models.sed import SEDModel
from atst_sed.training.finetune import (ConsistencyConfig, FreqWarpConfig, MixupConfig, OptimConfig, SEDTask, TaskConfig,
                                        parameter_groups)
from atst_sed.training.losses import label_groups
from atst_sed.training.schedules import exponential_rampup, lr_factors
from atst_sed.training.validation import ValidationConfig

from sed_training_helpers import CLASSES, TinySED, collate, tiny_loader

FULL_LENGTH = [1, 2, 3, 5, 6, 7]  # TinySED clips of 10 s: weak, unlabeled, strong, unlabeled, strong, weak


def _model(depth: int = 2) -> SEDModel:
    torch.manual_seed(0)
    return SEDModel(EncoderConfig.named("frame_tiny", depth=depth, drop_path=0.0), CLASSES)


def _trainer(tmp_path, max_epochs: int = 1, callbacks=()) -> pl.Trainer:
    return pl.Trainer(default_root_dir=tmp_path, max_epochs=max_epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, callbacks=list(callbacks))


def _atst_sed_lr_factor(step: int, rampup: int, total: int, cos_down: bool, floor: float = 0.1) -> float:
    """ATST-SED's ExponentialWarmup at its step number ``step`` (1 at the first optimizer step), from its description."""
    if step < rampup:
        return math.exp(-5.0 * (1.0 - step / rampup) ** 2)
    if not cos_down:
        return 1.0
    return floor + (1 - floor) * (math.cos((step - rampup) / (total - rampup) * math.pi) + 1) / 2


def test_each_part_kind_has_its_own_peak_rate_and_the_transformer_a_layer_scale():
    model = _model(3)
    optim = OptimConfig(name="adam", lr=1.0, rates={"head": 2e-3, "encoder": 2e-4}, layer_decay=0.5)
    task = SEDTask(model, TaskConfig(trainable_blocks=-1), optim)
    peaks = {g["name"]: g["peak_lr"] for g in parameter_groups(model, optim)}
    assert peaks == pytest.approx({"head": 2e-3, "norm": 2e-4, "blocks.2": 2e-4, "blocks.1": 1e-4, "blocks.0": 5e-5, "embeddings": 2.5e-5})
    opt = task.configure_optimizers()
    assert type(opt) is torch.optim.Adam and opt.defaults["betas"] == (0.9, 0.999)
    assert sum(len(g["params"]) for g in opt.param_groups) == sum(p.requires_grad for p in model.parameters())
    # stage 1: the transformer frozen, only the head trains, at its own rate
    frozen = _model(3)
    SEDTask(frozen, TaskConfig(trainable_blocks=0), optim)
    assert [(g["name"], g["peak_lr"]) for g in parameter_groups(frozen, optim)] == [("head", 2e-3)]
    with pytest.raises(ValueError, match="cnn"):
        parameter_groups(model, OptimConfig(rates={"cnn": 1e-3}))


@pytest.mark.parametrize("decay", ["constant", "cosine"])
def test_exponential_warmup_follows_atst_sed_schedule(decay):
    total, rampup = 40, 12
    got = lr_factors(total, rampup, "exponential", decay, final=0.1)
    want = [_atst_sed_lr_factor(s, rampup, total, cos_down=decay == "cosine") for s in range(1, total + 1)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert exponential_rampup(0, 0) == 1.0 and exponential_rampup(3, 6) == pytest.approx(math.exp(-1.25))


def test_trainer_steps_every_group_along_the_exponential_warmup(tmp_path):
    seen = []

    class LR(pl.Callback):
        def on_before_optimizer_step(self, trainer, module, optimizer):
            seen.append({g["name"]: g["lr"] for g in optimizer.param_groups})

    optim = OptimConfig(name="adam", lr=1e-3, rates={"head": 1e-3, "encoder": 1e-4}, layer_decay=0.5, warmup="exponential",
                        decay="constant", warmup_epochs=2)
    task = SEDTask(_model(2), TaskConfig(trainable_blocks=-1), optim)
    _trainer(tmp_path, 3, [LR()]).fit(task, tiny_loader(12, 4))  # 3 steps per epoch, 9 steps, 6 of warm-up
    factors = [_atst_sed_lr_factor(s, 6, 9, cos_down=False) for s in range(1, 10)]
    assert [s["head"] for s in seen] == pytest.approx([1e-3 * f for f in factors])
    assert [s["blocks.0"] for s in seen] == pytest.approx([1e-4 * 0.5 * f for f in factors])


def _semi_supervised_task(**consistency) -> SEDTask:
    task_config = TaskConfig(trainable_blocks=-1, weak_weight=0.5, mixup=MixupConfig(prob=1.0, mix_unlabeled=True),
                             consistency=ConsistencyConfig(enabled=True, max_weight=70.0, **consistency))
    task = SEDTask(_model(2), task_config)
    with torch.no_grad():  # a teacher that differs from the student
        for p in task.ema.parameters():
            p.add_(0.05 * torch.randn_like(p))
    task.consistency_weight = lambda: 7.0  # outside a Trainer: the ramp's value at some step
    return task


def test_ict_on_mixed_batches_is_atst_sed_loss():
    task = _semi_supervised_task(teacher_input="clean", ict=True, clip_weight=0.5)
    clean = task.with_inputs(collate([TinySED(8)[i] for i in FULL_LENGTH]))
    torch.manual_seed(4)
    batch = task.augment(clean)
    lam, perm = batch["mix"]
    groups = label_groups(clean)
    assert torch.equal(groups[perm], groups) and not torch.equal(perm, torch.arange(6))
    loss, logs = task.compute_loss(batch)
    # by hand, as ATST-SED's stage 2 writes it: the teacher on the clean input, its outputs mixed like the input
    with torch.no_grad():
        s = task.model(*batch["inputs"])
        t = task.ema(*clean["inputs"])
    sup = F.binary_cross_entropy(s.frame_probs[groups == 0], batch["strong"][groups == 0]) \
        + 0.5 * F.binary_cross_entropy(s.clip_probs[groups == 1], batch["weak"][groups == 1])
    total = 0.0
    for g in range(3):
        rows = (groups == g).nonzero().flatten()
        c = lam[rows][0]
        assert torch.all(lam[rows] == c)  # one λ per label group
        frame_mix = (c * t.frame_probs[rows] + (1 - c) * t.frame_probs[perm[rows]]).clamp(0, 1)
        clip_mix = (c * t.clip_probs[rows] + (1 - c) * t.clip_probs[perm[rows]]).clamp(0, 1)
        total += F.mse_loss(s.frame_probs[rows], frame_mix) + F.mse_loss(s.clip_probs[rows], clip_mix) / 2
    ict = total / 6 * 7.0 / 4
    assert loss.item() == pytest.approx((sup + ict).item(), rel=1e-5)
    assert (7.0 * logs["train/consistency"]).item() == pytest.approx(ict.item(), rel=1e-5)


def test_unmixed_batches_keep_the_mean_teacher_with_half_clip_weight():
    task = _semi_supervised_task(teacher_input="clean", ict=True, clip_weight=0.5)
    task.task_config.mixup.prob = 0.0
    batch = task.augment(task.with_inputs(collate([TinySED(8)[i] for i in FULL_LENGTH])))
    assert batch["mix"] is None
    _, logs = task.compute_loss(batch)
    with torch.no_grad():
        s, t = task.model(*batch["inputs"]), task.ema(*batch["inputs"])
    want = F.mse_loss(s.frame_probs, t.frame_probs) + 0.5 * F.mse_loss(s.clip_probs, t.clip_probs)
    assert logs["train/consistency"].item() == pytest.approx(want.item(), rel=1e-5)


def test_the_dcase_mean_teacher_sees_the_student_mixed_input():
    task = _semi_supervised_task()
    torch.manual_seed(1)
    batch = task.augment(task.with_inputs(collate([TinySED(8)[i] for i in FULL_LENGTH])))
    assert batch["mix"] is not None and batch["teacher_inputs"] is batch["inputs"]
    with pytest.raises(ValueError, match="clean"):
        ConsistencyConfig(enabled=True, ict=True)


def _band(warped: torch.Tensor, original: torch.Tensor) -> tuple[int, int] | None:
    """The band (first bin, bins) of ``original`` (n, F, T) that, stretched to F bins, gives ``warped``."""
    f = original.shape[-2]
    for h in range(1, f + 1):
        for i in range(f - h + 1):
            stretched = original[:, i : i + h] if h == f else F.interpolate(original[:, None, i : i + h], size=original.shape[-2:],
                                                                              mode="bicubic", align_corners=True)[:, 0]
            if torch.allclose(stretched, warped, atol=1e-5):
                return i, h
    return None


def test_frequency_warp_stretches_one_band_per_label_group_and_draws_again_for_the_teacher():
    task_config = TaskConfig(trainable_blocks=-1, freq_warp=FreqWarpConfig(prob=1.0, field="features"),
                             consistency=ConsistencyConfig(enabled=True, teacher_input="clean"))
    task = SEDTask(_model(1), task_config)
    clean = task.with_inputs(collate([TinySED(8)[i] for i in FULL_LENGTH]))
    torch.manual_seed(0)
    batch = task.augment(clean)
    groups = label_groups(clean)
    x = clean["inputs"].features
    student_bands, teacher_bands = [], []
    for g in range(3):
        rows = groups == g
        for warped, bands in ((batch["inputs"].features, student_bands), (batch["teacher_inputs"].features, teacher_bands)):
            band = _band(warped[rows], x[rows])
            assert band is not None and 0.6 * 64 - 1 <= band[1] < 64  # a band of ⌊U(0.6, 1)·64⌋ bins
            bands.append(band)
    assert student_bands != teacher_bands and len(set(student_bands)) > 1
    assert torch.equal(batch["inputs"].frame_lengths, clean["inputs"].frame_lengths)
    with pytest.raises(ValueError, match="atst"):
        SEDTask(_model(1), TaskConfig(freq_warp=FreqWarpConfig(prob=1.0, field="atst"))).freq_warp(clean["inputs"], groups)


def test_validation_scores_the_mean_teacher_and_logs_the_objective(tmp_path):
    objective = {"weak_f1": 1.0, "teacher/weak_f1": 1.0, "teacher/weak_loss": -0.5}
    validation = ValidationConfig(metrics="loss", objective=objective)
    assert validation.validates_teacher() and validation.resolved_monitor() == ("val/objective", "max")
    task = SEDTask(_model(2), TaskConfig(consistency=ConsistencyConfig(enabled=True)), validation=validation)
    with torch.no_grad():
        for p in task.ema.parameters():
            p.add_(0.05 * torch.randn_like(p))
    (logged,) = _trainer(tmp_path).validate(task, tiny_loader(12, 4), verbose=False)
    # the teacher's numbers are those of validating the teacher itself as a student
    alone = SEDTask(task.ema, TaskConfig(trainable_blocks=-1))
    (teacher,) = _trainer(tmp_path).validate(alone, tiny_loader(12, 4), verbose=False)
    for name in ("loss", "weak_f1", "weak_loss"):
        assert logged[f"val/teacher/{name}"] == pytest.approx(teacher[f"val/{name}"], rel=1e-6)
    want = logged["val/weak_f1"] + logged["val/teacher/weak_f1"] - 0.5 * logged["val/teacher/weak_loss"]
    assert logged["val/objective"] == pytest.approx(want, rel=1e-6)
    # the weak loss is the clip BCE of the weak-only clips (clips 1, 4, 7, 10)
    with torch.no_grad():
        batch = alone.with_inputs(collate([TinySED(12)[i] for i in (1, 4, 7, 10)]))
        out = task.ema(*batch["inputs"])
    assert teacher["val/weak_loss"] == pytest.approx(F.binary_cross_entropy(out.clip_probs, batch["weak"]).item(), rel=1e-5)
    assert ValidationConfig(objective={"teacher/weak_loss": 0.5, "teacher/strong_real_val/loss": 0.5}).resolved_monitor()[1] == "min"
    with pytest.raises(ValueError, match="consistency"):
        SEDTask(_model(1), TaskConfig(), validation=ValidationConfig(teacher=True))
