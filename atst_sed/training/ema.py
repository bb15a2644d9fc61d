"""Exponential moving average of model parameters: the BYOL teacher of pretraining and the mean
teacher of fine-tuning share :func:`ema_update`."""

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
    """θ_teacher ← m·θ_teacher + (1 − m)·θ_student for every *parameter*, matched by name (a
    parameter without counterpart or of another shape is an error).

    Buffers are the teacher's own and left alone, as in audiossl's BYOL and the DCASE / ATST-SED mean
    teachers: BatchNorm running statistics belong to the network that normalises with them (the BYOL
    teacher's projector updates its own in its forward passes; ATST-SED's mean teacher its CNN's
    BatchNorm statistics, in its training-mode forward passes).
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
