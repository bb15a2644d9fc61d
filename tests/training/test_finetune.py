"""The fine-tuning task: frozen blocks stay frozen, schedules, layer-wise lr, mean teacher, resume."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from sklearn.metrics import f1_score
from torchmetrics.functional.classification import multilabel_f1_score

from atst_sed.models.encoder import EncoderConfig
from atst_sed.models.sed import SEDModel
from atst_sed.training.finetune import ConsistencyConfig, OptimConfig, SEDTask, TaskConfig, parameter_groups, weak_macro_f1
from atst_sed.training.schedules import cosine_schedule

from sed_training_helpers import CLASSES, N_CLASSES, tiny_loader


def _model(depth: int = 3, variant: str = "frame") -> SEDModel:
    return SEDModel(EncoderConfig.named(f"{variant}_tiny", depth=depth, drop_path=0.1), CLASSES)


def _trainer(tmp_path, max_epochs: int = 1, callbacks=(), **kw) -> pl.Trainer:
    return pl.Trainer(
        default_root_dir=tmp_path, max_epochs=max_epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=3.0, num_sanity_val_steps=0,
        callbacks=list(callbacks), **kw,
    )


class _Spy(pl.Callback):
    """Records train/eval modes, stored gradients and whether frozen blocks built autograd graphs."""

    def __init__(self):
        self.modes, self.frozen_grads, self.graph_outputs = [], [], []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        blocks = module.model.encoder.blocks
        self.modes.append([b.training for b in blocks])
        self._handles = [b.register_forward_hook(lambda m, i, o: self.graph_outputs.append(o.requires_grad)) for b in blocks[:-1]]

    def on_before_optimizer_step(self, trainer, module, optimizer):
        for b in module.model.encoder.blocks[:-1]:
            self.frozen_grads.extend(p.grad is not None for p in b.parameters())

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        for h in self._handles:
            h.remove()


@pytest.mark.parametrize("variant", ["frame", "clip"])
def test_frozen_blocks_stay_frozen_and_last_block_trains(tmp_path, variant):
    model = _model(3, variant)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    task = SEDTask(model, TaskConfig(trainable_blocks=1), OptimConfig(lr=0.1, warmup_epochs=0))
    spy = _Spy()
    _trainer(tmp_path, 2, [spy]).fit(task, tiny_loader(12, 6))
    after = model.state_dict()
    for key in before:
        same = torch.equal(before[key], after[key])
        trainable = key.startswith(("encoder.blocks.2.", "encoder.norm.", "head."))
        assert same != trainable, key
    assert all(m == [False, False, True] for m in spy.modes) and len(spy.modes) == 4
    assert spy.frozen_grads and not any(spy.frozen_grads)
    assert spy.graph_outputs and not any(spy.graph_outputs)  # no autograd graph, no stored activations


def test_all_blocks_trainable_and_layer_decay_groups():
    model = _model(3)
    task = SEDTask(model, TaskConfig(trainable_blocks=-1), OptimConfig(lr=0.1, layer_decay=0.5))
    groups = {g["name"]: g["peak_lr"] / 0.1 for g in parameter_groups(model, OptimConfig(lr=0.1, layer_decay=0.5))}
    assert groups == pytest.approx({"head": 1.0, "norm": 1.0, "blocks.2": 1.0, "blocks.1": 0.5, "blocks.0": 0.25, "embeddings": 0.125})
    assert not model.encoder.mask_embed.requires_grad and model.encoder.pos_embed.requires_grad
    opt = task.configure_optimizers()
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.9
    assert sorted(g["lr"] for g in opt.param_groups) == pytest.approx(sorted(0.1 * s for s in groups.values()))


def test_per_step_lr_follows_warmup_cosine(tmp_path):
    model = _model(2)
    task = SEDTask(model, TaskConfig(trainable_blocks=2), OptimConfig(lr=0.2, final_lr=1e-6, warmup_epochs=1, layer_decay=0.5))
    seen = []

    class LR(pl.Callback):
        def on_before_optimizer_step(self, trainer, module, optimizer):
            seen.append({g["name"]: g["lr"] for g in optimizer.param_groups})

    _trainer(tmp_path, 3, [LR()]).fit(task, tiny_loader(12, 4))  # 3 steps per epoch, 9 steps
    expected = cosine_schedule(0.2, 1e-6, 9, 3)
    assert [s["head"] for s in seen] == pytest.approx(expected.tolist())
    assert [s["blocks.0"] for s in seen] == pytest.approx((expected * 0.5).tolist())


def test_mean_teacher_is_ema_of_student(tmp_path):
    model = _model(2)
    task = SEDTask(model, TaskConfig(trainable_blocks=1, consistency=ConsistencyConfig(enabled=True, ema_decay=0.5)), OptimConfig(lr=0.05))
    assert task.ema is not None and all(not p.requires_grad for p in task.ema.parameters())
    snapshots = []

    class Snap(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            snapshots.append((module.ema.head.linear.weight.clone(), trainer.global_step))

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            step = trainer.global_step
            alpha = min(1 - 1 / (step + 1), 0.5)
            expected = alpha * snapshots[-1][0] + (1 - alpha) * module.model.head.linear.weight
            assert torch.allclose(module.ema.head.linear.weight, expected, atol=1e-7)
            # in training mode as the official mean teachers; blocks frozen in the student stay in inference mode
            assert module.ema.training and [b.training for b in module.ema.encoder.blocks] == [False, True]

    _trainer(tmp_path, 1, [Snap()]).fit(task, tiny_loader(12, 4))
    assert len(snapshots) == 3
    assert all(not p.requires_grad for p in task.ema.parameters())


def test_the_mean_teacher_follows_the_one_ema_rule_of_pretraining():
    # one rule for both teachers (training/ema.py): parameters averaged by name, buffers the teacher's own
    model = _model(2)
    model.register_buffer("calibration", torch.zeros(3))
    task = SEDTask(model, TaskConfig(trainable_blocks=1, consistency=ConsistencyConfig(enabled=True, ema_decay=0.9)))
    with torch.no_grad():
        task.model.head.linear.weight.add_(1.0)
        task.model.calibration.fill_(5.0)
    before = task.ema.head.linear.weight.clone()
    task.update_ema()  # global_step 0 outside a Trainer: α = min(1 − 1/1, 0.9) = 0
    torch.testing.assert_close(task.ema.head.linear.weight, task.model.head.linear.weight)
    assert not torch.equal(before, task.ema.head.linear.weight)
    assert torch.equal(task.ema.calibration, torch.zeros(3))  # not copied from the student
    del task.ema.head.linear.bias  # a parameter without counterpart is an error, not a silent misalignment
    task.ema.head.linear.register_parameter("renamed_bias", torch.nn.Parameter(torch.zeros(N_CLASSES)))
    with pytest.raises(KeyError, match="renamed_bias"):
        task.update_ema()


def test_validation_gives_strong_clips_to_the_evaluator_and_scores_weak_clips_by_macro_f1(tmp_path):
    seen, weak_clips = {}, []

    def evaluator(scores):
        seen.update(scores)
        return {"psds1": 0.25}

    class _WeakSpy(pl.Callback):
        def on_validation_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0):
            keep = batch["has_weak"] & ~batch["has_strong"]
            with torch.no_grad():
                probs = module.model(*module.model.features(batch["waveforms"], batch["lengths"])).clip_probs
            weak_clips.extend(zip(probs[keep].tolist(), batch["weak"][keep].tolist()))

    task = SEDTask(_model(2), TaskConfig(), OptimConfig(), evaluator=evaluator)
    trainer = _trainer(tmp_path, 1, callbacks=[_WeakSpy()])
    trainer.fit(task, tiny_loader(8, 4), tiny_loader(8, 4))
    # clips 0, 3, 6 are strong (frame scores of their valid frames); 1, 4, 7 weak; 2, 5 unlabeled
    assert sorted(seen) == ["clip00.wav", "clip03.wav", "clip06.wav"]
    assert seen["clip00.wav"].shape == (150, N_CLASSES)  # 601 frames → 150 tokens
    assert seen["clip03.wav"].shape == (250, N_CLASSES)
    assert float(trainer.callback_metrics["val/psds1"]) == 0.25
    assert "val/loss" in trainer.callback_metrics
    assert len(weak_clips) == 3
    probs, targets = (np.array(x) for x in zip(*weak_clips))
    expected = _sklearn_macro_f1(targets > 0.5, probs > 0.5)
    assert float(trainer.callback_metrics["val/weak_f1"]) == pytest.approx(expected, abs=1e-6)


def _sklearn_macro_f1(truth: np.ndarray, pred: np.ndarray) -> float:
    """Macro F1 over the classes with a target or a detection (sklearn as the reference)."""
    seen = np.flatnonzero(truth.any(0) | pred.any(0))
    return float(f1_score(truth, pred, average="macro", labels=seen, zero_division=0)) if len(seen) else 0.0


def test_weak_macro_f1_matches_sklearn_and_torchmetrics():
    g = torch.Generator().manual_seed(3)
    probs = torch.rand(40, 10, generator=g)
    targets = (torch.rand(40, 10, generator=g) > 0.6).float()
    targets[:, 7] = 0  # a class without targets ...
    probs[:, 7] = 0.1  # ... and without detections: left out of the mean
    want = _sklearn_macro_f1(targets.numpy() > 0.5, probs.numpy() > 0.5)
    assert weak_macro_f1(probs, targets) == pytest.approx(want, abs=1e-12)
    targets[:, 7] = 1.0  # every class present: the plain macro F1 of torchmetrics
    tm = multilabel_f1_score(probs, targets.long(), num_labels=10, average="macro", threshold=0.5)
    assert weak_macro_f1(probs, targets) == pytest.approx(float(tm), abs=1e-6)
    assert weak_macro_f1(torch.zeros(2, 3), torch.zeros(2, 3)) == 0.0


def test_bf16_mixed_precision_keeps_float32_weights_and_float32_losses(tmp_path):
    """Lightning's ``bf16-mixed`` (the GPU default) through the same autocast code on CPU: the encoder's
    matrix products in bf16, the head (probabilities) and the loss in float32."""
    dtypes = []

    class _Spy(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            self._hooks = [layer.register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
                           for layer in (module.model.encoder.blocks[-1].mlp.fc2, module.model.head.linear)]

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            for hook in self._hooks:
                hook.remove()
            dtypes.append(outputs["loss"].dtype)

    task = SEDTask(_model(2), TaskConfig(), OptimConfig(lr=0.05, warmup_epochs=0.0))
    before = task.model.encoder.blocks[-1].mlp.fc1.weight.detach().clone()
    trainer = _trainer(tmp_path, 1, callbacks=[_Spy()], precision="bf16-mixed")
    trainer.fit(task, tiny_loader(12, 6))
    assert dtypes == [torch.bfloat16, torch.float32, torch.float32] * 2  # encoder, head, loss; 2 steps
    assert all(p.dtype == torch.float32 for p in task.model.parameters())
    after = task.model.encoder.blocks[-1].mlp.fc1.weight
    assert torch.isfinite(after).all() and not torch.equal(after, before)
    assert np.isfinite(float(trainer.callback_metrics["train/loss_epoch"]))


def test_resume_gives_the_same_weights_as_training_straight(tmp_path):
    def make():
        torch.manual_seed(1)
        return SEDTask(_model(2), TaskConfig(trainable_blocks=-1), OptimConfig(lr=0.05, warmup_epochs=1))

    pl.seed_everything(5)
    straight = make()
    _trainer(tmp_path / "a", 4).fit(straight, tiny_loader(12, 4, shuffle=True, seed=7))

    class Stop(pl.Callback):
        def on_train_epoch_end(self, trainer, module):
            if trainer.current_epoch == 1:
                trainer.should_stop = True

    ckpt_cb = pl.callbacks.ModelCheckpoint(dirpath=tmp_path / "b", save_last=True)
    pl.seed_everything(5)
    first = make()
    t1 = pl.Trainer(default_root_dir=tmp_path / "b", max_epochs=4, accelerator="cpu", logger=False, enable_progress_bar=False,
                    enable_model_summary=False, gradient_clip_val=3.0, callbacks=[Stop(), ckpt_cb])
    t1.fit(first, tiny_loader(12, 4, shuffle=True, seed=7))
    assert t1.current_epoch == 2 and t1.global_step == 6
    pl.seed_everything(123)  # a different process state: the checkpoint must restore what matters
    resumed = make()
    _trainer(tmp_path / "c", 4).fit(resumed, tiny_loader(12, 4, shuffle=True, seed=7), ckpt_path=str(tmp_path / "b" / "last.ckpt"))
    for (k, a), b in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), k
    assert not torch.allclose(straight.model.head.linear.weight, first.model.head.linear.weight)
