"""Loss masking, distillation weighting and mixup grouping against hand calculations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from atst_sed.models.encoder import EncoderConfig
from atst_sed.models.head import SEDOutput
from atst_sed.models.sed import SEDModel
from atst_sed.training.distill import DistillConfig, DistillTask
from atst_sed.training.losses import distillation_loss, group_permutation, mixup_batch, supervised_loss

from sed_training_helpers import CLASSES, TinySED, collate


def _output(logits: torch.Tensor, clip: torch.Tensor) -> SEDOutput:
    return SEDOutput(logits, torch.sigmoid(logits), clip)


def _bce(p, y):
    p = np.asarray(p, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def _case(seed=0, b=4, n=250, c=3):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, n, c, generator=g)
    clip = torch.rand(b, c, generator=g) * 0.9 + 0.05
    strong = (torch.rand(b, n, c, generator=g) > 0.5).float()
    weak = (torch.rand(b, c, generator=g) > 0.5).float()
    has_strong = torch.tensor([True, False, False, True])
    has_weak = torch.tensor([True, True, False, True])
    valid = torch.arange(n)[None, :] < torch.tensor([n, n, n, 100])[:, None]  # clip 3: 100 valid frames
    return logits, clip, strong, weak, has_strong, has_weak, valid


def test_supervised_loss_matches_hand_computation():
    logits, clip, strong, weak, has_strong, has_weak, valid = _case()
    res = supervised_loss(_output(logits, clip), strong, weak, has_strong, has_weak, valid)
    p = torch.sigmoid(logits).double().numpy()
    y = strong.numpy()
    # strong clips 0 (250 tokens) and 3 (first 100 tokens)
    frame_terms = np.concatenate([_bce(p[0], y[0]).ravel(), _bce(p[3, :100], y[3, :100]).ravel()])
    weak_terms = _bce(clip[1].numpy(), weak[1].numpy())  # the only weak-only clip
    assert res.strong.item() == pytest.approx(frame_terms.mean(), rel=1e-5)
    assert res.weak.item() == pytest.approx(weak_terms.mean(), rel=1e-5)
    assert res.total.item() == pytest.approx(frame_terms.mean() + weak_terms.mean(), rel=1e-5)
    assert (res.strong_count.item(), res.weak_count.item()) == (frame_terms.size, weak_terms.size)


def test_wrong_targets_on_masked_samples_change_nothing():
    logits, clip, strong, weak, has_strong, has_weak, valid = _case()
    logits.requires_grad_(True)
    clip.requires_grad_(True)
    ref = supervised_loss(_output(logits, clip), strong, weak, has_strong, has_weak, valid)
    bad_strong, bad_weak = strong.clone(), weak.clone()
    bad_strong[1] = 1 - bad_strong[1]  # weak clip: its frame targets are absent
    bad_strong[2] = float("nan")  # unlabeled clip
    bad_strong[3, 100:] = float("nan")  # padded frames of a strong clip
    bad_weak[2] = 1 - bad_weak[2]  # unlabeled clip
    bad_weak[0] = 1 - bad_weak[0]  # strong clip: the clip loss covers weak-only clips by default
    res = supervised_loss(_output(logits, clip), bad_strong, bad_weak, has_strong, has_weak, valid)
    assert res.total.item() == ref.total.item()
    res.total.backward()
    assert torch.all(logits.grad[1:3] == 0) and torch.all(logits.grad[3, 100:] == 0)
    assert torch.all(clip.grad[[0, 2, 3]] == 0)
    assert logits.grad[0].abs().sum() > 0 and clip.grad[1].abs().sum() > 0


def test_weak_loss_on_strong_clips_option_uses_them():
    logits, clip, strong, weak, has_strong, has_weak, valid = _case()
    res = supervised_loss(_output(logits, clip), strong, weak, has_strong, has_weak, valid, weak_on_strong_clips=True)
    rows = [0, 1, 3]
    expected = _bce(clip[rows].numpy(), weak[rows].numpy()).mean()
    assert res.weak.item() == pytest.approx(expected, rel=1e-5)


def test_batch_without_labels_gives_zero_loss_with_graph():
    logits, clip, strong, weak, _, _, valid = _case()
    logits.requires_grad_(True)
    none = torch.zeros(4, dtype=torch.bool)
    res = supervised_loss(_output(logits, clip), strong, weak, none, none, valid)
    assert res.total.item() == 0.0
    res.total.backward()
    assert torch.all(logits.grad == 0)


def test_distillation_loss_on_known_probabilities():
    b, n, c = 2, 250, 3
    s_frame = torch.full((b, n, c), 0.8)
    t_frame = torch.full((b, n, c), 0.6)
    s_clip = torch.full((b, c), 0.3)
    t_clip = torch.full((b, c), 0.9)
    student = SEDOutput(torch.logit(s_frame), s_frame, s_clip)
    teacher = SEDOutput(torch.logit(t_frame), t_frame, t_clip)
    valid = torch.ones(b, n, dtype=torch.bool)
    frame = -(0.6 * math.log(0.8) + 0.4 * math.log(0.2))
    clip = -(0.9 * math.log(0.3) + 0.1 * math.log(0.7))
    loss = distillation_loss(student, teacher, valid)
    assert loss.item() == pytest.approx(0.5 * frame + 0.5 * clip, rel=1e-5)
    assert distillation_loss(student, teacher, valid, 1.0, 0.0).item() == pytest.approx(frame, rel=1e-5)


def test_distill_task_weights_ground_truth_and_teacher_half_half():
    torch.manual_seed(0)
    student = SEDModel(EncoderConfig.named("frame_tiny", drop_path=0.0), CLASSES)  # no random drops: the
    teacher = SEDModel(EncoderConfig.named("clip_tiny"), CLASSES)  # hand computation repeats the forward pass
    task = DistillTask(student, teacher)
    batch = task.with_inputs(collate([TinySED(6)[i] for i in range(6)]))  # strong, weak and unlabeled clips
    loss, logs = task.compute_loss(batch)
    with torch.no_grad():
        s = student(*batch["inputs"])
        t = teacher(*batch["inputs"])
    valid = s.valid
    assert valid.sum(1).tolist() == [150, 250, 250, 250, 150, 250]  # clips 0 and 4 hold 6 s of audio
    sup = supervised_loss(s, batch["strong"], batch["weak"], batch["has_strong"], batch["has_weak"], valid).total
    # Distillation by hand over ALL clips (incl. unlabeled), valid frames only.
    sp, tp = s.frame_probs.double(), t.frame_probs.double()
    frame_terms = -(tp * torch.log(sp) + (1 - tp) * torch.log(1 - sp))
    frame = frame_terms[valid].mean()
    sc, tc = s.clip_probs.double(), t.clip_probs.double()
    clip = (-(tc * torch.log(sc) + (1 - tc) * torch.log(1 - sc))).mean()
    expected = 0.5 * sup.item() + 0.5 * (0.5 * frame.item() + 0.5 * clip.item())
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert logs["train/distill"].item() == pytest.approx(0.5 * frame.item() + 0.5 * clip.item(), rel=1e-5)
    # configurable weights: distillation only
    only = DistillTask(student, teacher, distill=DistillConfig(gt_weight=0.0, distill_weight=1.0))
    assert only.compute_loss(batch)[0].item() == pytest.approx(0.5 * frame.item() + 0.5 * clip.item(), rel=1e-5)
    loss.backward()
    assert all(p.grad is None for p in teacher.parameters())


def test_group_permutation_stays_within_groups():
    groups = torch.tensor([0, 1, 2, 0, 0, 1, 2, 2, 0, 1])
    for seed in range(5):
        perm = group_permutation(groups, torch.Generator().manual_seed(seed))
        assert sorted(perm.tolist()) == list(range(10))
        assert torch.equal(groups[perm], groups)


def test_mixup_mixes_targets_like_features_and_leaves_unlabeled_alone():
    batch = collate([TinySED(9)[i] for i in range(9)])
    model = SEDModel(EncoderConfig.named("frame_tiny"), CLASSES)
    batch["inputs"] = model.features(batch["waveforms"], batch["lengths"])
    torch.manual_seed(3)
    mixed, lam, perm = mixup_batch(batch, alpha=0.2)
    lf = lam[:, None, None]
    features, mixed_features = batch["inputs"].features, mixed["inputs"].features
    assert torch.allclose(mixed_features, lf * features + (1 - lf) * features[perm])
    assert torch.allclose(mixed["strong"], lf * batch["strong"] + (1 - lf) * batch["strong"][perm])
    # valid lengths: the longer clip of each pair; the input keeps its type (model(*inputs) still works)
    assert torch.equal(mixed["inputs"].frame_lengths, torch.maximum(batch["inputs"].frame_lengths, batch["inputs"].frame_lengths[perm]))
    assert type(mixed["inputs"]) is type(batch["inputs"])
    unl = ~(batch["has_strong"] | batch["has_weak"])
    assert torch.equal(mixed_features[unl], features[unl])
    assert torch.equal(batch["has_strong"][perm], batch["has_strong"])
    assert ((mixed["weak"] >= 0) & (mixed["weak"] <= 1)).all()


def test_mixup_mixes_each_feature_tensor_of_a_model_with_two_frontends():
    batch = collate([TinySED(6)[i] for i in range(6)])
    cnn, atst = torch.randn(6, 128, 626), torch.randn(6, 64, 1001)
    batch["inputs"] = (cnn, atst)
    torch.manual_seed(3)
    mixed, lam, perm = mixup_batch(batch, alpha=0.2, mix_unlabeled=True)
    assert isinstance(mixed["inputs"], tuple) and len(mixed["inputs"]) == 2
    for got, x in zip(mixed["inputs"], (cnn, atst)):
        lf = lam[:, None, None]
        assert torch.allclose(got, lf * x + (1 - lf) * x[perm])

