"""Schedules (atst.md Appendix C values) and the EMA update against hand calculations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from atst_sed.training.ema import ema_momentum_schedule, ema_update
from atst_sed.training.pretrain import PretrainModelConfig, PretrainModule, PretrainOptimConfig
from atst_sed.training.schedules import cosine_ramp, cosine_schedule


def test_base_schedules_match_the_reference_numbers():
    # ATST-Frame base: 6 GPUs × 144 clips, base lr 8e-5 per 256 clips → 2.7e-4
    module = PretrainModule(PretrainModelConfig(encoder="frame_tiny", projector_hidden=32, projector_out=16),
                            PretrainOptimConfig(lr=8e-5, warmup_steps=19900, max_steps=398000, ema=0.9996),
                            batch_size=864)
    assert module.peak_lr() == pytest.approx(2.7e-4)
    s = module.schedules()
    assert all(len(v) == 398000 for v in s.values())
    lr, wd, ema = s["lr"], s["wd"], s["ema"]
    assert lr[0] == 0.0
    assert lr[19899] == pytest.approx(2.7e-4, rel=1e-12)
    assert lr[-1] == pytest.approx(1e-6, rel=1e-3)
    assert np.all(np.diff(lr[:19900]) > 0) and np.all(np.diff(lr[19900:]) <= 0)
    # cosine part by hand: j = 100 000 steps into the decay
    j, n = 100000, 398000 - 19900
    assert lr[19900 + j] == pytest.approx(1e-6 + 0.5 * (2.7e-4 - 1e-6) * (1 + np.cos(np.pi * j / n)))
    assert wd[0] == pytest.approx(0.04) and wd[-1] == pytest.approx(0.4, abs=1e-9)
    assert wd[199000] == pytest.approx(0.22)
    assert ema[0] == pytest.approx(0.9996) and ema[199000] == pytest.approx(0.9998)
    assert ema[-1] == pytest.approx(1.0, abs=1e-9)
    # the module uses the shared schedule functions
    np.testing.assert_array_equal(ema, ema_momentum_schedule(0.9996, 398000))
    np.testing.assert_array_equal(ema, cosine_ramp(0.9996, 1.0, 398000))
    np.testing.assert_array_equal(lr, cosine_schedule(2.7e-4, 1e-6, 398000, 19900))


def test_ema_update_is_a_parameter_lerp_and_leaves_buffers_alone():
    torch.manual_seed(0)
    student = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    teacher = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    teacher[1].running_mean.fill_(7.0)
    student[1].running_mean.fill_(-3.0)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    ema_update(teacher, student, 0.9)
    for name, p in teacher.named_parameters():
        expected = 0.9 * before[name] + 0.1 * dict(student.named_parameters())[name]
        torch.testing.assert_close(p.data, expected)
    assert torch.equal(teacher[1].running_mean, before["1.running_mean"])
    # momentum 1 → unchanged; momentum 0 → copy
    snap = {k: v.clone() for k, v in teacher.state_dict().items()}
    ema_update(teacher, student, 1.0)
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in snap.items())
    ema_update(teacher, student, 0.0)
    assert torch.equal(teacher[0].weight, student[0].weight)


def test_ema_update_rejects_mismatched_modules():
    with pytest.raises(KeyError):
        ema_update(nn.Linear(2, 2), nn.Linear(2, 2, bias=False), 0.5)
