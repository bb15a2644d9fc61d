"""Scoring a dataset with a SED model, validation metrics, and the test stage's output folders.

Clip ids follow :func:`atst_sed.events.clip_id` (file name without extension), as sed_scores_eval.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from atst_sed.events import clip_id, write_events_tsv
from atst_sed.features import TOKEN_SECONDS
from atst_sed.fileio import atomic_write_text
from atst_sed.inference.postprocess import dcase2022_thresholds, decode_operating_points
from atst_sed.models.sed import SEDModel
from atst_sed.training.losses import token_validity

log = logging.getLogger(__name__)


@torch.no_grad()
def score_batches(model: SEDModel, batches: Iterable[Mapping[str, Any]], device: str | torch.device = "cpu") -> dict[str, np.ndarray]:
    """Frame probabilities of every clip: ``{clip_id: (N_valid, C) float32}`` (40 ms frames).

    Runs in bf16 autocast on CUDA, float32 elsewhere; padded frames are cut off.
    """
    device = torch.device(device)
    model = model.to(device).eval()
    out: dict[str, np.ndarray] = {}
    for batch in batches:
        feats = batch["features"].to(device)
        lengths = batch.get("frame_lengths")
        lengths = None if lengths is None else lengths.to(device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            res = model(feats, lengths)
        probs = res.frame_probs.float()
        valid = token_validity(lengths, probs.shape[1], probs.shape[0], device)
        n_valid = valid.sum(dim=1).cpu().numpy()
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
    median_filter: int | Sequence[int],
    n_thresholds: int = 50,
    evaluator: str = "psds_eval",
) -> dict[str, float]:
    """PSDS1/PSDS2 of median-filtered scores on the scored clips: ``psds_eval`` over
    ``n_thresholds`` DCASE-style operating points, or ``sed_scores_eval`` (threshold-free, faster)."""
    from atst_sed.evaluation.psds import psds_from_operating_points, threshold_free_psds
    from atst_sed.evaluation.scores import score_dataframe
    from atst_sed.inference.postprocess import median_filter as apply_median

    scores = {clip_id(k): v for k, v in scores.items()}
    gt, dur = by_clip_id(ground_truth, durations, scores)
    if gt["onset"].notna().sum() == 0:
        return {"psds1": 0.0, "psds2": 0.0}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if evaluator == "sed_scores_eval":
            frames = {k: score_dataframe(apply_median(v, median_filter), classes, TOKEN_SECONDS) for k, v in scores.items()}
            return {s: threshold_free_psds(frames, gt, dur, s).value for s in ("psds1", "psds2")}
        preds = decode_operating_points(scores, classes, dcase2022_thresholds(n_thresholds), median_filter)
        return {s: psds_from_operating_points(preds, gt, dur, s, classes).value for s in ("psds1", "psds2")}


def _json_ready(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def write_json(path: str | Path, data: Mapping[str, Any]) -> None:
    """Atomic, pretty JSON (NaN/Inf → null)."""
    atomic_write_text(path, json.dumps(_json_ready(dict(data)), indent=2, sort_keys=False) + "\n")


def write_test_outputs(
    directory: str | Path,
    scores: Mapping[str, np.ndarray],
    ground_truth: pd.DataFrame,
    durations: Mapping[str, float],
    classes: Sequence[str],
    median_filter: int | Sequence[int],
    n_thresholds: int = 50,
    threshold_free: bool = True,
    model: str | None = None,
) -> dict[str, Any]:
    """DCASE 2022 test outputs of one model into ``directory``:

    ``operating_points/predictions_th_0.01.tsv`` … (``n_thresholds`` event tables, median-filtered
    scores thresholded), ``scores/<clip>.tsv`` (median-filtered frame scores, sed_scores_eval
    format) and ``scores_raw/<clip>.tsv`` (unprocessed), ``metrics.json`` and ``plots/*.png``
    (PSD-ROC). Returns the metrics: psds1/psds2 and F1 from the operating points (psds_eval,
    sed_eval), plus ``psds1_sed_scores_eval``/``psds2_sed_scores_eval`` (threshold-free) and the
    same of the unprocessed scores (``…_sed_scores_eval_raw``). ``model``: the tested model's name
    (e.g. ``ATST-C2F (student)``), kept first in the metrics.
    """
    from atst_sed.evaluation import evaluate_operating_points, plot_psd_roc, threshold_free_psds, write_score_files
    from atst_sed.evaluation.scores import score_dataframe
    from atst_sed.inference.postprocess import median_filter as apply_median

    directory = Path(directory)
    gt, dur = by_clip_id(ground_truth, durations, scores)
    thresholds = dcase2022_thresholds(n_thresholds)
    preds = decode_operating_points(scores, classes, thresholds, median_filter)
    for th, table in preds.items():
        write_events_tsv(directory / "operating_points" / f"predictions_th_{th:.2f}.tsv", table)
    filtered = {k: apply_median(v, median_filter) for k, v in scores.items()}
    write_score_files(directory / "scores", filtered, classes, frame_seconds=TOKEN_SECONDS)
    write_score_files(directory / "scores_raw", scores, classes, frame_seconds=TOKEN_SECONDS)

    plots = directory / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # psds_eval warns once per merged operating point
        warnings.simplefilter("ignore")
        result = evaluate_operating_points(preds, gt, dur, classes, plot_dir=plots)
        metrics: dict[str, Any] = {k: _json_ready(v) for k, v in result.items() if k not in ("plots", "classes")}
        if threshold_free:  # post-processed scores, and the unprocessed ones (DCASE 2023+ reports both)
            for suffix, chosen in (("", filtered), ("_raw", scores)):
                frames = {k: score_dataframe(v, classes, TOKEN_SECONDS) for k, v in chosen.items()}
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
    metrics["median_filter"] = median_filter if isinstance(median_filter, int) else list(median_filter)
    if model is not None:
        metrics = {"model": model, **metrics}
    write_json(directory / "metrics.json", metrics)
    return metrics
