"""ATST-SED's CRNN in training: built by the model factory, its parameters grouped for learning rates
as the official trainer groups them, stage 1 (transformer frozen) and stage 2 (everything) with a real
Trainer, mixup of one branch, and a mean teacher that keeps its own BatchNorm statistics."""

from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from atst_sed.errors import AtstSedError
from atst_sed.models.checkpoint import save_checkpoint
from atst_sed.models.crnn import ATSTSEDModel
from atst_sed.models.encoder import ATSTEncoder, EncoderConfig
from atst_sed.models.factory import ModelConfig, build_model
from atst_sed.timegrid import FrameGrid
from atst_sed.training.finetune import ConsistencyConfig, MixupConfig, OptimConfig, SEDTask, TaskConfig, parameter_groups
from atst_sed.training.losses import mixup_batch

from sed_training_helpers import CLASSES, TinySED, collate, tiny_loader

GRID_64MS = FrameGrid(256, 4)
TOY_CRNN = {"nb_filters": [4, 8, 8, 8, 8, 8, 8], "n_rnn_cell": 8}


def _atst_sed(depth: int = 2, classes=CLASSES) -> ATSTSEDModel:
    torch.manual_seed(0)
    config = ModelConfig("frame_tiny", architecture="atst_sed", overrides={"heads": 4, "depth": depth, "drop_path": 0.0}, crnn=TOY_CRNN)
    return build_model(config, classes)


def _trainer(tmp_path, steps: int, callbacks=()) -> pl.Trainer:
    return pl.Trainer(default_root_dir=tmp_path, max_epochs=1, limit_train_batches=steps, accelerator="cpu", logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      num_sanity_val_steps=0, callbacks=list(callbacks))


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


# ------------------------------------------------------------------------------ the factory
def test_the_factory_builds_atst_sed_around_a_named_atst_frame():
    model = build_model(ModelConfig("frame_tiny", architecture="atst_sed", crnn=TOY_CRNN), CLASSES, frontend={"top_db": 70.0})
    assert isinstance(model, ATSTSEDModel) and model.classes == tuple(CLASSES)
    assert model.grid == GRID_64MS and model.spec.window_frames == 156 and model.spec.family == "ATST-SED"
    # the CRNN takes the toy sizes; its fusion takes the encoder's width; the ATST branch reads dB clamped to [-50, 80]
    assert model.config.nb_filters == (4, 8, 8, 8, 8, 8, 8) and model.config.n_rnn_cell == 8
    assert model.config.embedding_size == model.atst.width == EncoderConfig.named("frame_tiny").width
    atst = model.spec.frontends["atst"]
    assert (atst.clamp_db_min, atst.clamp_db_max, atst.top_db) == (-50.0, 80.0, 70.0)  # data.frontend overrides on top
    assert model.spec.frontends["cnn"].n_mels == 128
    with pytest.raises(AtstSedError, match="ATST-Frame"):
        build_model(ModelConfig("clip_tiny", architecture="atst_sed"), CLASSES)
    with pytest.raises(ValueError, match="architecture"):
        ModelConfig("frame_tiny", architecture="crnn")
    with pytest.raises(ValueError, match="crnn settings need architecture: atst_sed"):
        ModelConfig("frame_tiny", crnn={"n_rnn_cell": 8})


def test_the_factory_puts_a_pretrained_atst_frame_into_the_crnn(tmp_path):
    torch.manual_seed(1)
    encoder = ATSTEncoder(EncoderConfig.named("frame_tiny", heads=4))
    path = save_checkpoint(tmp_path / "teacher_encoder.ckpt", encoder)
    model = build_model(ModelConfig(str(path), architecture="atst_sed", crnn=TOY_CRNN, overrides={"drop_path": 0.0}), CLASSES)
    for name, value in encoder.state_dict().items():
        torch.testing.assert_close(model.atst.state_dict()[name], value, rtol=0, atol=0)
    assert model.atst.config.drop_path == 0.0


def test_our_atst_sed_checkpoint_round_trips_through_the_factory(tmp_path):
    model = _atst_sed()
    path = save_checkpoint(tmp_path / "best.ckpt", model)
    again = build_model(ModelConfig(str(path), architecture="atst_sed"), CLASSES)
    assert again.config == model.config
    for name, value in model.state_dict().items():
        torch.testing.assert_close(again.state_dict()[name], value, rtol=0, atol=0)
    with pytest.raises(AtstSedError, match="do not fit crnn"):
        build_model(ModelConfig(str(path), architecture="atst_sed", crnn={"n_rnn_cell": 4}), CLASSES)


# ------------------------------------------------------------------------------ learning rates per part
def _official_group(name: str) -> tuple[str, int | None]:
    """ATST-SED's stage-2 grouping (train/train_stage2.py), from its description: parameters outside the
    transformer go to the CNN rate when their name holds "cnn", else to the RNN rate; inside, the final
    ``norm_frame`` is layer 0, ``blocks.k`` layer 12 − k, everything else (embeddings) layer 13."""
    if "atst_frame" not in name:
        return ("cnn", None) if "cnn" in name else ("rnn", None)
    for k in range(12):
        if f"blocks.{k}." in name:
            return "transformer", 12 - k
    return ("transformer", 0) if ".norm_frame." in name else ("transformer", 13)


def _official_name(ours: str) -> str:
    """Our parameter name → the official one (only the transformer's prefix and final norm differ)."""
    if not ours.startswith("atst."):
        return ours
    return "atst_frame.atst." + ("norm_frame." + ours[len("atst.norm."):] if ours.startswith("atst.norm.") else ours[len("atst."):])


def test_stage_two_rates_follow_the_official_grouping_for_every_parameter():
    model = _atst_sed(depth=12)  # the official grouping is written for ATST-Frame's 12 blocks
    optim = OptimConfig(name="adam", lr=1.0, rates={"cnn": 2e-4, "rnn": 2e-3, "transformer": 2e-4}, layer_decay=0.5)
    SEDTask(model, TaskConfig(trainable_blocks=-1), optim)
    peak = {id(p): g["peak_lr"] for g in parameter_groups(model, optim) for p in g["params"]}
    checked = 0
    for name, param in model.named_parameters():
        if name == "atst.mask_embed":  # pretraining's mask token: never trains here (unused by the official forward)
            assert not param.requires_grad
            continue
        kind, layer = _official_group(_official_name(name))
        expected = optim.rates[kind] * (0.5**layer if layer is not None else 1.0)
        assert peak[id(param)] == pytest.approx(expected), name
        checked += 1
    assert checked == len(list(model.parameters())) - 1


def test_stage_one_trains_everything_but_the_transformer():
    model = _atst_sed()
    task = SEDTask(model, TaskConfig(trainable_blocks=0), OptimConfig(name="adam", lr=1e-3))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.named_parameters() if not n.startswith("atst.")}
    assert [g["kind"] for g in parameter_groups(model, task.optim_config)] == ["cnn", "rnn"]
    SEDTask(model, TaskConfig(trainable_blocks=1), OptimConfig(name="adam", lr=1e-3))
    last = {n for n, p in model.named_parameters() if p.requires_grad and n.startswith("atst.")}
    assert last == {n for n, _ in model.named_parameters() if n.startswith(("atst.blocks.1.", "atst.norm."))}


# ------------------------------------------------------------------------------ training steps
def test_stage_one_with_a_real_trainer_leaves_the_transformer_and_updates_the_rest(tmp_path):
    model = _atst_sed()
    before = _state(model)
    task = SEDTask(model, TaskConfig(trainable_blocks=0, mixup=MixupConfig(prob=1.0, mix_unlabeled=True, fields=["cnn"]),
                                     consistency=ConsistencyConfig(enabled=True, ema_decay=0.999)),
                   OptimConfig(name="adam", lr=1e-2, warmup_epochs=0.0, decay="constant"))
    teacher_bn = task.ema.cnn.cnn.batchnorm0.running_mean.clone()
    modes = []

    class Modes(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            modes.append((module.ema.training, module.ema.cnn.training, [b.training for b in module.ema.atst.blocks]))

    _trainer(tmp_path, 3, [Modes()]).fit(task, tiny_loader(18, 6, grid=GRID_64MS))  # the teacher is the student until step 2
    after = model.state_dict()
    for name, value in before.items():
        if name.startswith("atst."):
            torch.testing.assert_close(after[name], value, rtol=0, atol=0)
    for prefix in ("cnn.cnn.conv0.", "cat_tf.", "rnn.rnn.", "dense.", "dense_softmax."):
        assert any(not torch.equal(after[k], v) for k, v in before.items() if k.startswith(prefix)), prefix
    # the mean teacher runs as the official one does: in training mode, its frozen transformer blocks in
    # inference mode; its BatchNorm statistics are its own, tracked in its own forward passes
    assert modes == [(True, True, [False, False])] * 3
    assert not torch.equal(task.ema.cnn.cnn.batchnorm0.running_mean, teacher_bn)
    assert not torch.equal(task.ema.cnn.cnn.batchnorm0.running_mean, model.cnn.cnn.batchnorm0.running_mean)


def test_stage_two_with_a_real_trainer_trains_every_part_at_its_rate(tmp_path):
    model = _atst_sed()
    before = _state(model)
    optim = OptimConfig(name="adam", lr=2e-3, rates={"cnn": 2e-4, "rnn": 2e-3, "transformer": 2e-4}, layer_decay=0.5,
                        warmup_epochs=0.0, decay="constant")
    task = SEDTask(model, TaskConfig(trainable_blocks=-1, weak_weight=0.5, consistency=ConsistencyConfig(
        enabled=True, max_weight=70.0, teacher_input="clean", ict=True), mixup=MixupConfig(prob=1.0, mix_unlabeled=True)), optim)
    seen = []

    class Rates(pl.Callback):
        def on_before_optimizer_step(self, trainer, module, optimizer):
            seen.append({g["name"]: g["lr"] for g in optimizer.param_groups})

    _trainer(tmp_path, 2, [Rates()]).fit(task, tiny_loader(12, 6, grid=GRID_64MS))
    assert seen[0] == pytest.approx({"cnn": 2e-4, "rnn": 2e-3, "atst.norm": 2e-4, "atst.blocks.1": 1e-4,
                                     "atst.blocks.0": 5e-5, "atst.embeddings": 2.5e-5})
    after = model.state_dict()
    for prefix in ("cnn.", "rnn.", "atst.blocks.0.", "atst.blocks.1.", "atst.norm.", "atst.pos_embed"):
        assert any(not torch.equal(after[k], v) for k, v in before.items() if k.startswith(prefix)), prefix


def test_mixup_of_one_branch_leaves_the_other_clean():
    model = _atst_sed()
    batch = collate([TinySED(6, grid=GRID_64MS)[i] for i in range(6)])
    batch["inputs"] = model.features(batch["waveforms"], batch["lengths"])
    torch.manual_seed(3)
    mixed, lam, perm = mixup_batch(batch, alpha=0.2, mix_unlabeled=True, fields=["cnn"])
    cnn = batch["inputs"].cnn
    lf = lam[:, None, None]
    torch.testing.assert_close(mixed["inputs"].cnn, lf * cnn + (1 - lf) * cnn[perm])
    assert torch.equal(mixed["inputs"].atst, batch["inputs"].atst)
    assert not torch.equal(mixed["inputs"].cnn, cnn)
    torch.testing.assert_close(mixed["strong"], lf * batch["strong"] + (1 - lf) * batch["strong"][perm])
    with pytest.raises(ValueError, match="spectrogram"):
        mixup_batch(batch, fields=["spectrogram"])


def test_a_padded_atst_sed_batch_trains_and_scores_every_frame():
    # short_clips=pad: no lengths, so the model marks no frames; the task treats them all as valid
    model = _atst_sed()
    model.short_clips = "pad"
    task = SEDTask(model, TaskConfig(trainable_blocks=0), OptimConfig(name="adam", lr=1e-3))
    batch = task.with_inputs(collate([TinySED(6, grid=GRID_64MS)[i] for i in range(6)]))
    assert batch["inputs"].lengths is None
    out = model(*batch["inputs"])
    assert out.valid is None and out.frame_mask.shape == (6, 156) and bool(out.frame_mask.all())
    task.train()
    task.consistency_weight = lambda: 0.0  # no Trainer attached; no mean teacher here anyway
    loss, logs = task.compute_loss(task.augment(batch))
    assert np.isfinite(float(loss)) and float(logs["train/strong"]) > 0
