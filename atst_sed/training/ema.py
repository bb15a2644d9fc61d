"""Exponential moving average (BYOL teacher) of model parameters."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from atst_sed.training.schedules import cosine_ramp


def ema_momentum_schedule(base: float, total_steps: int) -> np.ndarray:
    """Per-step EMA momentum: cosine from ``base`` at step 0 towards 1 (``total_steps`` values)."""
    return cosine_ramp(base, 1.0, total_steps)


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """θ_teacher ← m·θ_teacher + (1 − m)·θ_student for every *parameter* (matched by name).

    Buffers (BatchNorm running statistics) are left alone, as upstream does: the teacher's BN
    layers keep their own running statistics.
    """
    s_params = dict(student.named_parameters())
    t_list, s_list = [], []
    for name, t in teacher.named_parameters():
        if name not in s_params:
            raise KeyError(f"teacher parameter {name!r} has no student counterpart")
        s = s_params[name]
        if s.shape != t.shape:
            raise ValueError(f"shape mismatch for {name}: {tuple(s.shape)} vs {tuple(t.shape)}")
        t_list.append(t.data)
        s_list.append(s.data.to(t.dtype))
    if t_list:
        torch._foreach_lerp_(t_list, s_list, 1.0 - float(momentum))
