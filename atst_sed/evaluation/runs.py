"""Test results of several training runs side by side: mean ± standard deviation over runs.

DCASE asks for several independent trainings (different seeds) and reports their mean and spread.
Each run folder written by ``atst-sed train`` (:class:`~atst_sed.runfolder.RunFolder`) holds
``manifest.json`` (stages in order, seed, dataset fingerprint) and ``<stage>/metrics.json``; stages
that were tested carry ``test`` → ``{student|teacher: metrics}`` there. This module aggregates them.
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from typing import Any

import numpy as np
import pandas as pd

from atst_sed.errors import InputError
from atst_sed.runfolder import RunFolder, repeated_folders

# summary column → how to read it from a test metrics.json
METRICS: dict[str, tuple[str, ...]] = {
    "psds1": ("psds1",),
    "psds2": ("psds2",),
    "psds1_sed_scores_eval": ("psds1_sed_scores_eval",),
    "psds2_sed_scores_eval": ("psds2_sed_scores_eval",),
    "psds1_sed_scores_eval_raw": ("psds1_sed_scores_eval_raw",),  # unprocessed scores
    "psds2_sed_scores_eval_raw": ("psds2_sed_scores_eval_raw",),
    "event_f1_macro": ("event_f1", "macro"),
    "segment_f1_macro": ("segment_f1", "macro"),
    "intersection_f1_macro": ("intersection_f1", "macro"),
}


def _value(metrics: dict[str, Any], keys: tuple[str, ...]) -> float:
    value: Any = metrics
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return float(value) if isinstance(value, (int, float)) else float("nan")


def run_test_results(run_dir: str | PathLike[str]) -> tuple[RunFolder, pd.DataFrame]:
    """The test results of one run: a row per (stage, model) with the :data:`METRICS` columns.

    Raises:
        InputError: no manifest, unreadable metrics, or no tested stage (naming the file).
    """
    run = RunFolder(run_dir)
    rows = []
    for stage, tested in run.tested_stages():  # stages not run (yet) have nothing to report
        for model, metrics in tested.items():
            rows.append({"run": run.name, "seed": run.seed, "stage": stage, "model": model,
                         **{name: _value(metrics, keys) for name, keys in METRICS.items()}})
    if not rows:
        raise InputError(run.manifest_path, "no stage of this run has test results yet")
    return run, pd.DataFrame(rows)


def collect_test_results(run_dirs: Sequence[str | PathLike[str]]) -> tuple[list[RunFolder], pd.DataFrame]:
    """Test results of every run (see :func:`run_test_results`), one table. A run folder given
    twice (by the same or another path) is refused: each run counts once in the mean ± std."""
    repeated = repeated_folders(run_dirs)
    if repeated:
        given = repeated[0]
        raise InputError(given[0], f"run folder given {len(given)} times ({', '.join(given)}); "
                                   "each run counts once in the mean ± std")
    infos, tables = zip(*(run_test_results(r) for r in run_dirs))
    names = [i.name for i in infos]
    if len(set(names)) < len(names):  # two folders with the same name: keep them apart by path
        for info, table in zip(infos, tables):
            table["run"] = str(info.path)
    return list(infos), pd.concat(tables, ignore_index=True)


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample standard deviation (n − 1; NaN for one run) and number of runs of every metric,
    per (stage, model), stages in their run order. Columns: ``stage, model, runs, <metric>_mean,
    <metric>_std`` for each metric of :data:`METRICS`."""
    order = list(dict.fromkeys(results["stage"]))
    out = []
    for (stage, model), group in results.groupby(["stage", "model"], sort=False):
        row: dict[str, Any] = {"stage": stage, "model": model, "runs": int(group["run"].nunique())}
        for name in METRICS:
            values = group[name].to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            row[f"{name}_mean"] = float(values.mean()) if len(values) else float("nan")
            row[f"{name}_std"] = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
        out.append(row)
    table = pd.DataFrame(out)
    table["_order"] = table["stage"].map(order.index)
    return table.sort_values(["_order", "model"], kind="stable").drop(columns="_order").reset_index(drop=True)
