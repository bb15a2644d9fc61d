"""Scoring a dataset with a SED model, validation metrics, and the test stage's output folders.

Clip ids follow :func:`atst_sed.events.clip_id` (file name without extension), as sed_scores_eval.
Frame times come from the model's grid; the ground truth is scored as written (as ``atst-sed
evaluate`` scores it, see :meth:`atst_sed.data.SEDDataModule.ground_truth`).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from atst_sed.decoding import dcase2022_thresholds, decode_operating_points, median_filter
from atst_sed.evaluation import evaluate_operating_points, plot_psd_roc, psds_from_operating_points, threshold_free_psds
from atst_sed.events import clip_id, write_events_tsv
from atst_sed.fileio import json_ready, write_json
from atst_sed.models.sed import SEDModel
from atst_sed.score_files import score_dataframe, write_score_files
from atst_sed.timegrid import FrameGrid

log = logging.getLogger(__name__)


@torch.no_grad()
def score_batches(model: SEDModel, batches: Iterable[Mapping[str, Any]], device: str | torch.device = "cpu") -> dict[str, np.ndarray]:
    """Frame probabilities of every clip of waveform batches: ``{clip_id: (N_valid, C) float32}`` on
    the model's grid.

    The model computes its features; runs in bf16 autocast on CUDA, float32 elsewhere; padded
    frames are cut off.
    """
    device = torch.device(device)
    model = model.to(device).eval()
    out: dict[str, np.ndarray] = {}
    for batch in batches:
        inputs = model.features(batch["waveforms"].to(device), batch["lengths"].to(device))
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            res = model(*inputs)
        probs = res.frame_probs.float()
        n_valid = res.frame_mask.sum(dim=1).cpu().numpy()
        probs_np = probs.cpu().numpy()
        for name, p, n in zip(batch["filenames"], probs_np, n_valid):
            out[clip_id(name)] = p[: int(n)]
    return out


def by_clip_id(ground_truth: pd.DataFrame, durations: Mapping[str, float], keep: Iterable[str] | None = None) -> tuple[pd.DataFrame, dict[str, float]]:
    """Ground truth and durations keyed by clip id, restricted to ``keep`` clip ids if given."""
    gt = ground_truth.copy()
    gt["filename"] = gt["filename"].map(clip_id)
    dur = {clip_id(k): float(v) for k, v in durations.items()}
    if keep is not None:
        keep = set(keep)
        gt = gt[gt["filename"].isin(keep)]
        dur = {k: v for k, v in dur.items() if k in keep}
    return gt.reset_index(drop=True), dur


def validation_psds(
    scores: Mapping[str, np.ndarray],
    ground_truth: pd.DataFrame,
    durations: Mapping[str, float],
    classes: Sequence[str],
    median_sizes: int | Sequence[int],
    grid: FrameGrid,
    n_thresholds: int = 50,
    evaluator: str = "psds_eval",
) -> dict[str, float]:
    """PSDS1/PSDS2 of median-filtered scores (frames of ``grid``) on the scored clips: ``psds_eval``
    over ``n_thresholds`` DCASE-style operating points, or ``sed_scores_eval`` (threshold-free, faster)."""
    scores = {clip_id(k): v for k, v in scores.items()}
    gt, dur = by_clip_id(ground_truth, durations, scores)
    if gt["onset"].notna().sum() == 0:
        return {"psds1": 0.0, "psds2": 0.0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if evaluator == "sed_scores_eval":
            frames = {k: score_dataframe(median_filter(v, median_sizes), classes, grid.frame_seconds) for k, v in scores.items()}
            return {s: threshold_free_psds(frames, gt, dur, s).value for s in ("psds1", "psds2")}
        preds = decode_operating_points(scores, classes, dcase2022_thresholds(n_thresholds), median_sizes, grid=grid)
        return {s: psds_from_operating_points(preds, gt, dur, s, classes).value for s in ("psds1", "psds2")}


def write_test_outputs(
    directory: str | Path,
    scores: Mapping[str, np.ndarray],
    ground_truth: pd.DataFrame,
    durations: Mapping[str, float],
    classes: Sequence[str],
    median_sizes: int | Sequence[int],
    grid: FrameGrid,
    n_thresholds: int = 50,
    threshold_free: bool = True,
    model: str | None = None,
) -> dict[str, Any]:
    """DCASE 2022 test outputs of one model (frame scores on ``grid``) into ``directory``:

    ``operating_points/predictions_th_0.01.tsv`` … (``n_thresholds`` event tables, median-filtered
    scores thresholded), ``scores/<clip>.tsv`` (median-filtered frame scores, sed_scores_eval
    format) and ``scores_raw/<clip>.tsv`` (unprocessed), ``metrics.json`` and ``plots/*.png``
    (PSD-ROC). Returns the metrics: psds1/psds2 and F1 from the operating points (psds_eval,
    sed_eval), plus ``psds1_sed_scores_eval``/``psds2_sed_scores_eval`` (threshold-free) and the
    same of the unprocessed scores (``…_sed_scores_eval_raw``). ``model``: the tested model's name
    (e.g. ``ATST-C2F (student)``), kept first in the metrics.
    """
    directory = Path(directory)
    gt, dur = by_clip_id(ground_truth, durations, scores)
    thresholds = dcase2022_thresholds(n_thresholds)
    preds = decode_operating_points(scores, classes, thresholds, median_sizes, grid=grid)
    for th, table in preds.items():
        write_events_tsv(directory / "operating_points" / f"predictions_th_{th:.2f}.tsv", table)
    filtered = {k: median_filter(v, median_sizes) for k, v in scores.items()}
    write_score_files(directory / "scores", filtered, classes, grid.frame_seconds)
    write_score_files(directory / "scores_raw", scores, classes, grid.frame_seconds)

    plots = directory / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # psds_eval warns once per merged operating point
        warnings.simplefilter("ignore")
        result = evaluate_operating_points(preds, gt, dur, classes, plot_dir=plots)
        metrics: dict[str, Any] = {k: json_ready(v) for k, v in result.items() if k not in ("plots", "classes")}
        if threshold_free:  # post-processed scores, and the unprocessed ones (DCASE 2023+ reports both)
            for suffix, chosen in (("", filtered), ("_raw", scores)):
                frames = {k: score_dataframe(v, classes, grid.frame_seconds) for k, v in chosen.items()}
                for scenario in ("psds1", "psds2"):
                    try:
                        res = threshold_free_psds(frames, gt, dur, scenario)
                    except ValueError as err:  # e.g. no ground-truth event among the scored clips
                        log.warning("threshold-free %s skipped: %s", scenario, err)
                        continue
                    metrics[f"{scenario}_sed_scores_eval{suffix}"] = float(res.value)
                    plot_psd_roc(res, plots / f"psd_roc_{scenario}_sed_scores_eval{suffix}.png")
    metrics["n_clips"] = len(scores)
    metrics["n_thresholds"] = int(n_thresholds)
    metrics["median_filter"] = median_sizes if isinstance(median_sizes, int) else list(median_sizes)
    if model is not None:
        metrics = {"model": model, **metrics}
    write_json(directory / "metrics.json", metrics)
    return metrics
