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


def exponential_rampup(step_num: int | np.ndarray, rampup_steps: int) -> float | np.ndarray:
    """The DCASE / ATST-SED ramp ``exp(−5 (1 − min(s, R)/R)²)`` at step number ``s`` (1 for R = 0).

    DESED_task's and ATST-SED's ``ExponentialWarmup`` count ``s`` from 1 at the first optimizer
    step, and scale both the learning rate and the consistency weight with it."""
    if rampup_steps <= 0:
        return np.ones_like(np.asarray(step_num, dtype=np.float64)) if np.ndim(step_num) else 1.0
    phase = 1.0 - np.clip(np.asarray(step_num, dtype=np.float64), 0.0, rampup_steps) / rampup_steps
    value = np.exp(-5.0 * phase * phase)
    return value if np.ndim(step_num) else float(value)


def lr_factors(total_steps: int, warmup_steps: int, warmup: str = "linear", decay: str = "cosine", final: float = 0.0) -> np.ndarray:
    """Per-step factors (× each parameter group's peak rate), ``total_steps`` values.

    ``warmup``: ``linear`` (0 → 1 over ``warmup_steps``, :func:`cosine_schedule`'s ramp) or
    ``exponential`` (:func:`exponential_rampup` of step ``k + 1``, as DESED_task / ATST-SED's
    ``ExponentialWarmup``). ``decay`` after the warm-up: ``cosine`` down to ``final`` at the last step
    (ATST-SED's ``cos_down``: ``final + (1 − final)(1 + cos(π (s − R)/(T − R)))/2`` for the
    exponential ramp), or ``constant`` (DCASE 2022 baseline, ATST-SED stage 1)."""
    if total_steps <= 0:
        raise ValueError("total_steps must be positive")
    warmup_steps = min(max(int(warmup_steps), 0), total_steps)
    if warmup == "linear":
        if decay == "cosine":
            return cosine_schedule(1.0, final, total_steps, warmup_steps)
        ramp = np.linspace(0.0, 1.0, warmup_steps) if warmup_steps else np.zeros(0)
        return np.concatenate([ramp, np.ones(total_steps - warmup_steps)])
    if warmup != "exponential":
        raise ValueError(f"unknown warm-up {warmup!r}; use linear or exponential")
    s = np.arange(1, total_steps + 1, dtype=np.float64)
    factors = exponential_rampup(s, warmup_steps)
    if decay == "cosine":
        after = s >= warmup_steps
        phase = (s[after] - warmup_steps) / max(total_steps - warmup_steps, 1) * np.pi
        factors[after] = final + (1.0 - final) * (np.cos(phase) + 1.0) / 2.0
    elif decay != "constant":
        raise ValueError(f"unknown decay {decay!r}; use cosine or constant")
    return factors
