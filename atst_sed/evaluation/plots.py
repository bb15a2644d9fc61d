"""PSD-ROC pictures (PNG, matplotlib's Agg canvas; no global backend change)."""

from __future__ import annotations

import io
from os import PathLike
from pathlib import Path

import numpy as np

from atst_sed.evaluation.psds import PsdsResult
from atst_sed.fileio import atomic_write_bytes

__all__ = ["plot_psd_roc"]


def _step_until(x: np.ndarray, y: np.ndarray, x_max: float) -> tuple[np.ndarray, np.ndarray]:
    """Curve points up to ``x_max``, extended flat to it (the area PSDS integrates)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = x <= x_max
    x, y = x[keep], y[keep]
    if x.size == 0:
        return np.array([0.0, x_max]), np.array([0.0, 0.0])
    return np.append(x, x_max), np.append(y, y[-1])


def plot_psd_roc(result: PsdsResult, path: str | PathLike[str], dpi: int = 110) -> Path:
    """Write a PNG with the PSD-ROC (left: eTPR vs eFPR, area shaded) and per-class ROCs (right).

    Args:
        result: a :class:`PsdsResult` (from psds_eval or sed_scores_eval).
        path: output PNG (written atomically; folders created).

    Returns:
        The path written.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 5), layout="constrained")
    FigureCanvasAgg(fig)
    overall, per_class = fig.subplots(1, 2)
    x, y = _step_until(result.efpr, result.etpr, result.max_efpr)
    overall.step(x, y, where="post", color="tab:blue", label="PSD-ROC")
    overall.fill_between(x, y, step="post", alpha=0.3, color="tab:blue",
                         label=f"area / max = {result.value:.4f}")
    overall.axvline(result.max_efpr, linestyle="--", color="grey")
    ops = f", {result.n_operating_points} operating points" if result.n_operating_points else ""
    overall.set_title(f"{result.scenario.upper()} = {result.value:.4f} ({result.evaluator}{ops})")
    overall.set_xlabel("eFPR (false positives per hour)")
    overall.set_ylabel("eTPR")
    overall.set_xlim(0, result.max_efpr * 1.02)
    overall.set_ylim(0, 1.02)
    overall.legend(loc="lower right")
    overall.grid(alpha=0.3)
    colors = [f"C{i % 10}" for i in range(len(result.per_class))]
    styles = ["-", "--", ":"]
    for i, (name, (cx, cy)) in enumerate(sorted(result.per_class.items())):
        cx, cy = np.asarray(cx, float), np.asarray(cy, float)
        valid = np.isfinite(cx) & np.isfinite(cy)
        px, py = _step_until(cx[valid], cy[valid], result.max_efpr)
        per_class.step(px, py, where="post", color=colors[i], linestyle=styles[(i // 10) % 3],
                       label=name)
    per_class.set_title("per class: TPR vs eFPR")
    per_class.set_xlabel("eFPR (false positives per hour)")
    per_class.set_ylabel("TPR")
    per_class.set_xlim(0, result.max_efpr * 1.02)
    per_class.set_ylim(0, 1.02)
    per_class.grid(alpha=0.3)
    if result.per_class:
        per_class.legend(loc="lower right", fontsize="small")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    path = Path(path)
    atomic_write_bytes(path, buffer.getvalue())
    return path
