"""System meta information: what a run folder knows about itself, merged with the human parts.

Run folder (training issue's contract)::

    RUN_DIR/manifest.json                 versions, frontend, model parameter counts, training data
    RUN_DIR/test/student/metrics.json     development-set PSDS1/PSDS2 (else RUN_DIR/<stage>/metrics.json)
    RUN_DIR/eval/events.tsv | events.csv  detections on the evaluation set (dcase2022)
    RUN_DIR/eval/scores/<clip>.tsv        sed_scores_eval scores on the evaluation set (dcase2023)
    RUN_DIR/eval/scores_raw/              optional: scores before post-processing (dcase2023;
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

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atst_sed.config import deep_merge
from atst_sed.errors import InputError
from atst_sed.submission.layout import RESULT_KEYS

__all__ = ["RunInfo", "read_run", "dev_metrics", "auto_meta", "system_meta", "detect_command"]

log = logging.getLogger(__name__)

ACOUSTIC_FEATURES = "log-mel energies"


@dataclass
class RunInfo:
    """A training run folder and what it says about itself."""

    path: Path
    manifest: dict[str, Any]
    metrics: dict[str, float]
    metrics_path: Path | None

    @property
    def eval_dir(self) -> Path:
        return self.path / "eval"

    def events_file(self) -> Path | None:
        """The evaluation-set detections: ``eval/events.tsv`` (DCASE) or ``eval/events.csv`` (detect)."""
        for name in ("events.tsv", "events.csv"):
            if (self.eval_dir / name).is_file():
                return self.eval_dir / name
        return None

    def scores_dir(self, unprocessed: bool = False) -> Path | None:
        """``eval/scores``, or for ``unprocessed`` ``eval/scores_raw`` (or ``eval/scores_unprocessed``)."""
        names = ("scores_raw", "scores_unprocessed") if unprocessed else ("scores",)
        for name in names:
            folder = self.eval_dir / name
            if folder.is_dir() and any(folder.glob("*.tsv")):
                return folder
        return None


def read_run(path: str | Path) -> RunInfo:
    """Read ``RUN_DIR/manifest.json`` and the development-set metrics; InputError if unusable."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(path, "run folder not found")
    manifest_path = path / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise InputError(manifest_path, "missing (is this a run folder written by atst-sed train?)") from None
    except json.JSONDecodeError as err:
        raise InputError(manifest_path, f"invalid JSON ({err.msg})", line=err.lineno) from None
    if not isinstance(manifest, dict):
        raise InputError(manifest_path, "expected a JSON object")
    metrics, metrics_path = dev_metrics(path, manifest)
    return RunInfo(path, manifest, metrics, metrics_path)


def dev_metrics(run_dir: Path, manifest: dict[str, Any]) -> tuple[dict[str, float], Path | None]:
    """Development-set metrics (the numeric top-level entries, with ``psds1``/``psds2``) from
    ``test/student/metrics.json``, else the latest stage's ``metrics.json``."""
    stages = [s for s in manifest.get("stages", []) if isinstance(s, str)]
    candidates = [run_dir / "test" / "student" / "metrics.json"]
    candidates += [run_dir / stage / "metrics.json" for stage in reversed(stages)]
    for candidate in candidates:
        if not candidate.is_file():
            continue
        try:
            data = json.loads(candidate.read_text())
        except json.JSONDecodeError as err:
            raise InputError(candidate, f"invalid JSON ({err.msg})", line=err.lineno) from None
        if not isinstance(data, dict):
            continue
        found = {k: float(v) for k, v in data.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if "psds1" in found or "psds2" in found:
            return found, candidate
    return {}, None


def detect_command(run: RunInfo) -> str:
    """The ``atst-sed detect`` command that produces the evaluation outputs of ``run``."""
    stages = [s for s in run.manifest.get("stages", []) if isinstance(s, str)]
    with_ckpt = [s for s in stages if (run.path / s / "checkpoints" / "best.ckpt").is_file()]
    trained = [s for s in stages if s != "test"]
    stage = with_ckpt[-1] if with_ckpt else (trained[-1] if trained else "<stage>")
    out = run.eval_dir
    return (f"atst-sed detect EVAL_AUDIO --checkpoint {run.path / stage / 'checkpoints' / 'best.ckpt'} "
            f"--scores-dir {out / 'scores'} -o {out / 'events.csv'}")


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value


def _same(runs: Sequence[RunInfo], getter, what: str, problems: list[str]) -> Any:
    values = [getter(r) for r in runs]
    known = [v for v in values if v is not None]
    if len(set(map(repr, known))) > 1:
        listed = ", ".join(f"{r.path}: {v}" for r, v in zip(runs, values))
        problems.append(f"{runs[0].path}: the runs of one system differ in {what} ({listed})")
    return known[0] if known else None


def auto_meta(label: str, runs: Sequence[RunInfo], fmt: str, problems: list[str]) -> dict[str, Any]:
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
    for dotted, keys in RESULT_KEYS[fmt].items():
        values = [next((r.metrics[k] for k in keys if k in r.metrics), None) for r in runs]
        if None not in values:
            _set(meta, dotted, round(sum(values) / len(values), 6))
        else:
            lacking = [str(r.path) for r, v in zip(runs, values) if v is None]
            log.warning("no development-set %s in %s (looked for test/student/metrics.json and "
                        "<stage>/metrics.json); give %s in META.yaml", keys[-1], ", ".join(lacking), dotted)
    return meta


def system_meta(label: str, runs: Sequence[RunInfo], user: dict[str, Any], fmt: str,
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
