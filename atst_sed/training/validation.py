"""What validation measures and which number chooses the best checkpoint.

The metrics of a strong-labelled validation set come from the frame scores of its clips
(:class:`SetMetrics`): PSDS1/PSDS2, the frame BCE (``loss``), the intersection-based macro F1 of
psds_eval (``intersection_f1``, the DCASE 2022 baseline's) and audiossl's frame-level intersection
macro F1 (``frame_intersection_f1``, :func:`~atst_sed.evaluation.f1.frame_intersection_f1`); the
held-out weak clips give ``weak_f1`` / ``weak_loss`` (computed by the task). A mean teacher's
metrics carry the prefix ``teacher/``. An *objective* is a weighted sum of them, logged as
``val/objective``; the official DESED pipelines select on:

- DCASE 2022 baseline: ``weak_f1 + synth_val/intersection_f1`` (maximised);
- audiossl (the paper's DESED fine-tuning): ``weak_f1 + synth_val/frame_intersection_f1`` with a
  3-frame median filter (maximised);
- ATST-SED stage 1: ``(teacher/weak_loss + teacher/strong_real_val/loss) / 2`` (minimised);
- ATST-SED stage 2: ``teacher/synth_val/psds1 + teacher/synth_val/psds2`` (sed_scores_eval,
  maximised).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from atst_sed.decoding import decode_operating_points, median_filter
from atst_sed.evaluation.f1 import frame_intersection_counts, frame_intersection_f1, intersection_f1
from atst_sed.events import clip_id
from atst_sed.labels import events_to_frames
from atst_sed.timegrid import FrameGrid
from atst_sed.training.scoring import by_clip_id, validation_psds

#: Metrics of a strong-labelled validation set (``val/<set>/<name>``; the first set also ``val/<name>``).
SET_METRICS = ("psds1", "psds2", "loss", "intersection_f1", "frame_intersection_f1")
TEACHER = "teacher/"


@dataclass
class ValidationConfig:
    """Per-epoch validation. ``metrics``: ``psds`` (PSDS1/PSDS2 on every validation set, psds_eval
    over ``n_thresholds`` operating points; fewer = faster) or ``loss`` (validation BCE only); the
    other set metrics (:data:`SET_METRICS`) are computed when the objective or the monitor names them.
    ``objective``: a weighted sum of logged metrics (names without ``val/``, e.g.
    ``{weak_f1: 1, synth_val/frame_intersection_f1: 1}``; ``teacher/…`` for the mean teacher's),
    logged as ``val/objective``. ``teacher``: validate the mean teacher too (implied when the
    objective or monitor names a ``teacher/`` metric). ``monitor``/``mode`` choose the best checkpoint
    (default val/objective if there is an objective, else val/psds1 or val/loss; mode max, min for
    losses). ``median_filter`` None = decoding.median_filter (audiossl validates with 3; its frame
    F1 median-filters the decisions at 0.5, the same as filtering the scores for odd windows).
    ``evaluator``: ``psds_eval`` (operating points, as DCASE 2022) or ``sed_scores_eval``
    (threshold-free; several times faster — the fast path for CPU runs, and ATST-SED's)."""

    metrics: Literal["psds", "loss"] = "psds"
    monitor: str | None = None
    mode: Literal["min", "max"] | None = None
    median_filter: int | list[int] | None = 3
    n_thresholds: int = 50
    evaluator: Literal["psds_eval", "sed_scores_eval"] = "psds_eval"
    objective: dict[str, float] = field(default_factory=dict)
    teacher: bool = False

    def resolved_monitor(self) -> tuple[str, str]:
        monitor = self.monitor or ("val/objective" if self.objective else "val/psds1" if self.metrics == "psds" else "val/loss")
        if self.mode:
            return monitor, self.mode
        losses = list(self.objective) if monitor == "val/objective" else [monitor]
        return monitor, "min" if all(name.endswith("loss") for name in losses) else "max"

    def named_metrics(self) -> list[str]:
        """The metric names (without ``val/``) that the objective and the monitor read."""
        monitor, _ = self.resolved_monitor()
        names = [*self.objective, monitor.removeprefix("val/")]
        return [n for n in names if n != "objective"]

    def validates_teacher(self) -> bool:
        return self.teacher or any(n.startswith(TEACHER) for n in self.named_metrics())

    def set_metrics(self) -> set[str]:
        """The :data:`SET_METRICS` to compute for every strong validation set."""
        wanted = {"psds1", "psds2"} if self.metrics == "psds" else set()
        wanted |= {n.rsplit("/", 1)[-1] for n in self.named_metrics()} & set(SET_METRICS)
        return wanted


def objective_value(objective: Mapping[str, float], metrics: Mapping[str, float]) -> float:
    """Σ weight · metric over the objective's terms; a term the validation did not log is an error."""
    missing = [name for name in objective if name not in metrics]
    if missing:
        raise KeyError(f"validation.objective names {', '.join(missing)}, which validation does not log "
                       f"(it logs: {', '.join(sorted(metrics))})")
    return float(sum(float(w) * float(metrics[name]) for name, w in objective.items()))


@dataclass
class ValidationSet:
    """One strong-labelled validation set: its reference events as written and clip durations."""

    name: str
    ground_truth: pd.DataFrame
    durations: Mapping[str, float]


class SetMetrics:
    """The validation metrics of strong-labelled sets from frame scores (the task's ``evaluator``).

    Called with ``{filename: probs (N_valid, C)}`` of every strong validation clip; returns
    ``{"<set>/<metric>": value}`` for each set and metric (:data:`SET_METRICS`) asked for, plus
    ``{"<metric>": value}`` of the first set (not ``loss``: the task's ``val/loss`` is over every clip). Frame targets for ``loss`` and
    ``frame_intersection_f1`` are the reference events on ``grid`` (onset floor, offset ceil).
    """

    def __init__(
        self,
        sets: Sequence[ValidationSet],
        classes: Sequence[str],
        grid: FrameGrid,
        metrics: set[str] | Sequence[str],
        median_sizes: int | Sequence[int] = 3,
        n_thresholds: int = 50,
        evaluator: str = "psds_eval",
    ):
        unknown = sorted(set(metrics) - set(SET_METRICS))
        if unknown:
            raise ValueError(f"unknown validation metric(s) {unknown}; known: {', '.join(SET_METRICS)}")
        self.sets = list(sets)
        self.classes = list(classes)
        self.grid = grid
        self.metrics = [m for m in SET_METRICS if m in set(metrics)]
        self.median_sizes = median_sizes
        self.n_thresholds = int(n_thresholds)
        self.evaluator = evaluator
        self._members = [{clip_id(f) for f in s.durations} for s in self.sets]

    def __call__(self, scores: Mapping[str, np.ndarray]) -> dict[str, float]:
        scores = {clip_id(k): v for k, v in scores.items()}
        out: dict[str, float] = {}
        for i, (vset, members) in enumerate(zip(self.sets, self._members)):
            mine = {k: v for k, v in scores.items() if k in members}
            if not mine:
                continue
            values = self.set_values(vset, mine)
            out.update({f"{vset.name}/{k}": v for k, v in values.items()})
            if i == 0:  # the first set's metrics also unprefixed, but for its loss: the task's val/loss covers every clip
                out.update({k: v for k, v in values.items() if k != "loss"})
        return out

    def set_values(self, vset: ValidationSet, scores: Mapping[str, np.ndarray]) -> dict[str, float]:
        values: dict[str, float] = {}
        if {"psds1", "psds2"} & set(self.metrics):
            psds = validation_psds(scores, vset.ground_truth, vset.durations, self.classes, self.median_sizes, self.grid,
                                   self.n_thresholds, self.evaluator)
            values.update({k: v for k, v in psds.items() if k in self.metrics})
        gt, dur = by_clip_id(vset.ground_truth, vset.durations, scores)
        if {"loss", "frame_intersection_f1"} & set(self.metrics):
            targets = self._frame_targets(gt, scores)
            if "loss" in self.metrics:
                values["loss"] = frame_bce(scores, targets)
            if "frame_intersection_f1" in self.metrics:
                counts = sum(frame_intersection_counts(median_filter((p > 0.5).astype(np.float32), self.median_sizes), targets[k])
                             for k, p in scores.items())
                values["frame_intersection_f1"] = frame_intersection_f1(counts)
        if "intersection_f1" in self.metrics:
            decided = decode_operating_points(scores, self.classes, [0.5], self.median_sizes, self.grid)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                values["intersection_f1"] = intersection_f1(next(iter(decided.values())), gt, dur, self.classes)["macro"]
        return values

    def _frame_targets(self, gt: pd.DataFrame, scores: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        by_clip = {k: g for k, g in gt.groupby("filename", sort=False)}
        empty = gt.iloc[:0]
        return {k: events_to_frames(by_clip.get(k, empty), self.classes, len(p), grid=self.grid) for k, p in scores.items()}


def frame_bce(scores: Mapping[str, np.ndarray], targets: Mapping[str, np.ndarray]) -> float:
    """Mean binary cross-entropy over every frame and class of the clips (``torch.nn.BCELoss``: log ≥ −100)."""
    if not scores:
        return float("nan")
    probs = torch.from_numpy(np.concatenate([np.asarray(scores[k], dtype=np.float64) for k in scores]))
    truth = torch.from_numpy(np.concatenate([np.asarray(targets[k], dtype=np.float64) for k in scores]))
    return float(F.binary_cross_entropy(probs, truth))
