"""Per-step schedules (audiossl conventions): arrays indexed by the optimizer step."""

from __future__ import annotations

import numpy as np


def cosine_schedule(base: float, final: float, total_steps: int, warmup_steps: int = 0, warmup_start: float = 0.0) -> np.ndarray:
    """``total_steps`` values: linear warm-up from ``warmup_start`` to ``base`` over ``warmup_steps``
    (``np.linspace``, so the last warm-up step is exactly ``base``), then a half cosine from ``base``
    to ``final``: v_j = final + ½(base − final)(1 + cos(π j / (total − warmup))), j = 0 … total − warmup − 1.
    """
    if total_steps <= 0:
        raise ValueError("total_steps must be positive")
    warmup_steps = min(max(warmup_steps, 0), total_steps)
    warmup = np.linspace(warmup_start, base, warmup_steps) if warmup_steps else np.zeros(0)
    j = np.arange(total_steps - warmup_steps)
    decay = final + 0.5 * (base - final) * (1 + np.cos(np.pi * j / max(len(j), 1)))
    return np.concatenate([warmup, decay])


def cosine_ramp(start: float, end: float, total_steps: int) -> np.ndarray:
    """v_k = end + ½(start − end)(1 + cos(π k / total)), k = 0 … total − 1 (weight decay 0.04 → 0.4,
    EMA momentum m → 1)."""
    k = np.arange(total_steps)
    return end + 0.5 * (start - end) * (1 + np.cos(np.pi * k / total_steps))
