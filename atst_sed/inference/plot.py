"""Detection picture: log-mel spectrogram, per-class score heat map and event boxes on one time axis."""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from atst_sed.fileio import open_output
from atst_sed.frontend import FrontendConfig, LogMelFrontend
from atst_sed.timegrid import ATST_GRID, FrameGrid

MAX_COLUMNS = 4000  # longer recordings are averaged down to this many image columns


def _pool_columns(image: np.ndarray, max_columns: int = MAX_COLUMNS) -> np.ndarray:
    """(rows, T) → (rows, ≤ max_columns) by averaging groups of adjacent columns."""
    t = image.shape[1]
    if t <= max_columns:
        return image
    k = -(-t // max_columns)
    pad = (-t) % k
    padded = np.pad(image, ((0, 0), (0, pad)), mode="edge")
    return padded.reshape(image.shape[0], -1, k).mean(axis=2)


def plot_detection(
    path: str | PathLike[str],
    audio: np.ndarray,
    probs: np.ndarray,
    events: pd.DataFrame,
    classes: Sequence[str],
    title: str = "",
    thresholds: Sequence[float] | None = None,
    grid: FrameGrid = ATST_GRID,
    frontend: FrontendConfig | None = None,
) -> Path:
    """Write a PNG: log-mel of ``audio`` (N,) at the frontend's rate (``frontend``: the model's,
    default ATST's), scores ``probs`` (T, C) per frame of ``grid`` (the model's), and ``events``
    (onset/offset in seconds) as labelled boxes, sharing one time axis in seconds.
    Written atomically (temporary file, then rename)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    logmel = LogMelFrontend(frontend)
    rate = logmel.config.sample_rate
    duration = len(audio) / rate
    with torch.inference_mode():
        mel = logmel(torch.as_tensor(audio, dtype=torch.float32)).numpy()  # (64, F)
    n_classes = len(classes)
    fig, axes = plt.subplots(
        3, 1, figsize=(12, 3.5 + 0.5 * n_classes), sharex=True, layout="constrained",
        gridspec_kw={"height_ratios": [2.0, 0.25 * n_classes + 0.5, 0.25 * n_classes + 0.5]},
    )
    ax_mel, ax_scores, ax_events = axes
    mel_end = mel.shape[1] * logmel.config.hop_length / rate
    ax_mel.imshow(_pool_columns(mel), origin="lower", aspect="auto", cmap="magma", extent=(0, mel_end, 0, mel.shape[0]))
    ax_mel.set_ylabel("mel bin")
    ax_mel.set_title(title or path.stem)

    score_end = probs.shape[0] * grid.frame_seconds
    im = ax_scores.imshow(
        _pool_columns(np.asarray(probs, dtype=np.float32).T), origin="upper", aspect="auto", cmap="viridis",
        vmin=0.0, vmax=1.0, extent=(0, score_end, n_classes - 0.5, -0.5), interpolation="nearest",
    )
    ax_scores.set_yticks(range(n_classes), list(classes), fontsize=7)
    ax_scores.set_ylabel("score")
    fig.colorbar(im, ax=axes, fraction=0.015, pad=0.01, label="probability")

    cmap = plt.get_cmap("tab10")
    index = {c: i for i, c in enumerate(classes)}
    for row in events.itertuples(index=False):
        i = index[row.event_label]
        ax_events.broken_barh([(row.onset, row.offset - row.onset)], (i - 0.4, 0.8), color=cmap(i % 10), alpha=0.8)
        label = f"{row.event_label} {row.score:.2f}" if hasattr(row, "score") else row.event_label
        ax_events.text(row.onset, i, " " + label, va="center", ha="left", fontsize=6, clip_on=True)
    ax_events.set_ylim(n_classes - 0.5, -0.5)
    ax_events.set_yticks(range(n_classes), list(classes), fontsize=7)
    ax_events.set_ylabel("events")
    ax_events.set_xlim(0, duration)
    ax_events.set_xlabel("time (s)")
    ax_events.grid(axis="x", alpha=0.3)

    try:
        with open_output(path) as handle:
            fig.savefig(handle, format="png", dpi=100)
    finally:
        plt.close(fig)
    return path
