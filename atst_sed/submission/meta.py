"""System meta information: what a run folder knows about itself, merged with the human parts.

What a run folder (:class:`~atst_sed.runfolder.RunFolder`) gives a submission::

    RUN_DIR/manifest.json                 versions, frontend, model parameter counts, training data
    RUN_DIR/test/student/metrics.json     development-set PSDS1/PSDS2 (else RUN_DIR/<stage>/metrics.json)
    RUN_DIR/eval/events.tsv | events.csv  detections on the evaluation set (dcase2022)
    RUN_DIR/eval/scores/<clip>.tsv        sed_scores_eval scores on the evaluation set, post-processed
                                          (median-filtered, as detect's --scores-dir writes them; dcase2023)
    RUN_DIR/eval/scores_raw/              optional: scores before post-processing (detect's
                                          --raw-scores-dir; dcase2023;
                                          ``scores_unprocessed/`` is read too)

The user's ``META.yaml`` supplies what no run can know (authors, names, description). It has the
meta file's own sections, shared by every system, plus an optional ``systems:`` mapping from a
system label to the parts that differ per system::

    submission:
      authors:
        - {lastname: Doe, firstname: Jane, email: jane@uni.org, corresponding: true,
           affiliation: {abbreviation: UNI, institute: University, location: City}}
    system:
      description: {machine_learning_method: transformer, ...}
      source_code: https://github.com/...
    systems:
      Doe_UNI_task4_1:
        submission: {name: ATST-Frame fine-tuned, abbreviation: ATST-F}

Precedence: values from the runs < META.yaml shared sections < ``systems.<label>``; the label is
always the ``--system`` label.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from atst_sed.config import deep_merge
from atst_sed.runfolder import RunFolder
from atst_sed.submission.layout import RESULT_KEYS

__all__ = ["read_run", "auto_meta", "system_meta", "detect_command"]

log = logging.getLogger(__name__)

ACOUSTIC_FEATURES = "log-mel energies"


def read_run(path: str | Path) -> RunFolder:
    """A run folder with its manifest read (:meth:`RunFolder.open`); :class:`InputError` if it or
    its development-set metrics are unusable."""
    run = RunFolder.open(path)
    run.development_metrics()  # an unreadable metrics.json is refused now, with the manifest
    return run


def detect_command(run: RunFolder) -> str:
    """The ``atst-sed detect`` command that produces the evaluation outputs of ``run``."""
    with_ckpt = [s for s in run.stages if run.stage(s).checkpoint("best").is_file()]
    trained = [s for s in run.stages if s != "test"]
    stage = with_ckpt[-1] if with_ckpt else (trained[-1] if trained else "<stage>")
    out = run.eval_dir
    return (f"atst-sed detect EVAL_AUDIO --checkpoint {run.stage(stage).checkpoint('best')} "
            f"--scores-dir {out / 'scores'} --raw-scores-dir {out / 'scores_raw'} -o {out / 'events.csv'}")


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value


def _same(runs: Sequence[RunFolder], getter, what: str, problems: list[str]) -> Any:
    values = [getter(r) for r in runs]
    known = [v for v in values if v is not None]
    if len(set(map(repr, known))) > 1:
        listed = ", ".join(f"{r.path}: {v}" for r, v in zip(runs, values))
        problems.append(f"{runs[0].path}: the runs of one system differ in {what} ({listed})")
    return known[0] if known else None


def auto_meta(label: str, runs: Sequence[RunFolder], fmt: str, problems: list[str]) -> dict[str, Any]:
    """The meta fields a system's runs can fill (PSDS: the mean over the runs)."""
    meta: dict[str, Any] = {"submission": {"label": label}, "system": {}, "results": {}}
    sample_rate = _same(runs, lambda r: (r.manifest.get("frontend") or {}).get("sample_rate"),
                        "the frontend sample rate", problems)
    n_params = _same(runs, lambda r: (r.manifest.get("model") or {}).get("n_parameters"),
                     "the parameter count", problems)
    n_trainable = _same(runs, lambda r: (r.manifest.get("model") or {}).get("n_trainable_parameters"),
                        "the trainable parameter count", problems)
    if sample_rate is not None:
        _set(meta, "system.description.input_sampling_rate", sample_rate)
    _set(meta, "system.description.acoustic_features", ACOUSTIC_FEATURES)
    training = runs[0].manifest.get("training_data")
    if training:
        _set(meta, "system.description.training_data", list(training))
    if n_params is not None:
        _set(meta, "system.complexity.total_parameters", n_params)
    if n_trainable is not None:
        _set(meta, "system.complexity.trainable_parameters", n_trainable)
    first = runs[0].manifest
    software = {"atst_sed": first.get("atst_sed_version"), "git_commit": first.get("git_commit")}
    software.update(first.get("versions") or {})
    software = {k: str(v) for k, v in software.items() if v is not None}
    if software:
        _set(meta, "system.software", software)
    metrics = [r.development_metrics()[0] for r in runs]
    for dotted, keys in RESULT_KEYS[fmt].items():
        values = [next((m[k] for k in keys if k in m), None) for m in metrics]
        if None not in values:
            _set(meta, dotted, round(sum(values) / len(values), 6))
        else:
            lacking = [str(r.path) for r, v in zip(runs, values) if v is None]
            log.warning("no development-set %s in %s (looked for test/student/metrics.json and "
                        "<stage>/metrics.json); give %s in META.yaml", keys[-1], ", ".join(lacking), dotted)
    return meta


def system_meta(label: str, runs: Sequence[RunFolder], user: dict[str, Any], fmt: str,
                problems: list[str]) -> dict[str, Any]:
    """Full meta for one system: run facts < META.yaml shared sections < ``systems.<label>``."""
    shared = {k: v for k, v in user.items() if k != "systems"}
    specific = (user.get("systems") or {}).get(label) or {}
    meta = deep_merge(deep_merge(auto_meta(label, runs, fmt, problems), shared), specific)
    given = (meta.get("submission") or {}).get("label")
    if given not in (None, label):
        log.warning("META.yaml sets submission.label %r; using the --system label %r", given, label)
    submission = meta.setdefault("submission", {})
    submission["label"] = label
    first = ("label", "name", "abbreviation", "authors")
    meta["submission"] = {k: submission[k] for k in first if k in submission} | {
        k: v for k, v in submission.items() if k not in first}
    # A stable, readable key order: submission, system, results, then anything else.
    order = ("submission", "system", "results")
    return {k: meta[k] for k in order if k in meta} | {k: v for k, v in meta.items() if k not in order}
