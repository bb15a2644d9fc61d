"""Run folders: the one place that knows where everything of a run lives.

``atst-sed train`` writes them, ``atst-sed report`` and ``atst-sed package`` read them, ``atst-sed
pretrain`` writes its own kind. Layout of a training run (``RUN_DIR = root_dir / name``)::

    config.yaml  manifest.json                     resolved config; versions, data, model, stages done
    <stage>/config.yaml  <stage>/metrics.json      the stage's config; its results (written last)
    <stage>/checkpoints/{best,last}.ckpt           atst-sed format (what `atst-sed detect` reads);
    <stage>/checkpoints/{best,last}_teacher.ckpt   with a mean teacher also its models
    <stage>/lightning/last.ckpt                    Lightning state after the last finished epoch (--resume)
    <stage>/tensorboard/  <stage>/csv/metrics.csv
    <stage>/test/<student|teacher>/...             test outputs of a training stage's best model (optional)
    <test stage>/<student|teacher>/{operating_points/,scores/,scores_raw/,metrics.json,plots/}
    eval/events.{tsv,csv}  eval/scores/  eval/scores_raw/   evaluation-set outputs (for a submission)

Layout of a pretraining run (``output_dir``)::

    config.yaml  manifest.json
    checkpoints/last.ckpt  checkpoints/step-*.ckpt  logs/tensorboard/  logs/csv/  teacher_encoder.ckpt
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from os import PathLike
from pathlib import Path
from typing import Any

from atst_sed.errors import InputError
from atst_sed.fileio import write_json

CONFIG = "config.yaml"
MANIFEST = "manifest.json"
METRICS = "metrics.json"


def read_json_object(path: Path, what: str = "an `atst-sed train` run folder") -> dict[str, Any]:
    """A JSON object from ``path``; :class:`InputError` (naming the file, and the line for bad JSON)
    when it is missing, not JSON, or not an object. ``what`` says what the file's folder should be."""
    try:
        body = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(path, f"missing: is this {what}?") from None
    except json.JSONDecodeError as err:
        raise InputError(path, f"not valid JSON ({err.msg})", line=err.lineno) from None
    except UnicodeDecodeError as err:
        raise InputError(path, f"not valid JSON ({err})") from None
    if not isinstance(body, dict):
        raise InputError(path, "not a JSON object")
    return body


def repeated_folders(paths: Iterable[str | PathLike[str]]) -> list[list[str]]:
    """The folders among ``paths`` that are given more than once, by the same or another path
    (``runs/a``, ``./runs/a``, a link to it): one list of the given paths per such folder."""
    given: dict[Path, list[str]] = {}
    for path in paths:
        given.setdefault(Path(path).resolve(), []).append(str(path))
    return [names for names in given.values() if len(names) > 1]


class StageFolder:
    """``RUN_DIR/<stage>``: config, metrics, exported checkpoints, the resume checkpoint, test outputs."""

    def __init__(self, run: "RunFolder", name: str):
        self.run = run
        self.name = name
        self.path = run.path / name

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    def checkpoint(self, which: str = "best") -> Path:
        """``checkpoints/<which>.ckpt``: ``best``, ``last``, ``best_teacher``, ``last_teacher``."""
        return self.checkpoints_dir / f"{which}.ckpt"

    @property
    def resume_checkpoint(self) -> Path:
        """Lightning's whole training state after the last finished epoch (``--resume``)."""
        return self.path / "lightning" / "last.ckpt"

    def test_dir(self, role: str, test_stage: bool) -> Path:
        """Test outputs of ``role`` (``student``/``teacher``): ``<stage>/<role>`` for a test stage,
        ``<stage>/test/<role>`` for a training stage that tests its best model."""
        return (self.path if test_stage else self.path / "test") / role

    @property
    def finished(self) -> bool:
        """A stage is finished once its ``metrics.json`` is written (the last thing it writes)."""
        return self.metrics_path.exists()

    def read_metrics(self) -> dict[str, Any] | None:
        """``metrics.json`` (None when the stage has not finished)."""
        return read_json_object(self.metrics_path) if self.metrics_path.is_file() else None


class RunFolder:
    """A run folder (see the module docstring). Paths only, until :meth:`read_manifest`."""

    def __init__(self, path: str | PathLike[str]):
        self.path = Path(path)
        self._manifest: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    @classmethod
    def open(cls, path: str | PathLike[str]) -> "RunFolder":
        """An existing run folder with its manifest read; :class:`InputError` when there is none."""
        run = cls(path)
        if not run.path.is_dir():
            raise InputError(run.path, "run folder not found")
        run.read_manifest()
        return run

    # ------------------------------------------------------------------------------ files
    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    def stage(self, name: str) -> StageFolder:
        return StageFolder(self, name)

    # ------------------------------------------------------------------------------ manifest
    def read_manifest(self) -> dict[str, Any]:
        """``manifest.json`` (read once); :class:`InputError` when missing or not a JSON object."""
        if self._manifest is None:
            self._manifest = read_json_object(self.manifest_path)
        return self._manifest

    @property
    def manifest(self) -> dict[str, Any]:
        return self.read_manifest()

    def previous_manifest(self) -> dict[str, Any]:
        """The manifest already written (``{}`` before the first), for a run that continues."""
        return read_json_object(self.manifest_path) if self.manifest_path.is_file() else {}

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        """Write ``manifest.json`` atomically (NaN/Inf → null)."""
        write_json(self.manifest_path, manifest)
        self._manifest = dict(manifest)

    @property
    def stages(self) -> list[str]:
        """Stages the manifest lists (those finished when it was written), in run order."""
        return [s for s in self.manifest.get("stages") or [] if isinstance(s, str)]

    @property
    def seed(self) -> int | None:
        return self.manifest.get("seed")

    @property
    def fingerprint(self) -> str | None:
        """The dataset fingerprint the run was trained and tested on."""
        return (self.manifest.get("dataset") or {}).get("fingerprint")

    # ------------------------------------------------------------------------------ progress
    def finished_stages(self, names: list[str]) -> list[str]:
        return [s for s in names if self.stage(s).finished]

    def has_progress(self) -> bool:
        """True when the folder holds more than a failed start leaves (its config and manifest): a
        finished stage, a resume checkpoint or an exported model."""
        return (any(self.path.glob(f"*/{METRICS}")) or any(self.path.glob("*/lightning/*.ckpt"))
                or any(self.path.glob("*/checkpoints/*.ckpt")))

    # ------------------------------------------------------------------------------ results
    def tested_stages(self) -> Iterator[tuple[str, dict[str, dict[str, Any]]]]:
        """``(stage, {role: test metrics})`` of every listed stage that holds test results."""
        for name in self.stages:
            metrics = self.stage(name).read_metrics()
            tested = (metrics or {}).get("test")
            if isinstance(tested, dict) and tested:
                yield name, tested

    def development_metrics(self) -> tuple[dict[str, float], Path | None]:
        """The numeric top-level metrics (with ``psds1``/``psds2``) of the development set, from
        ``test/student/metrics.json``, else the latest listed stage's ``metrics.json``, and the file."""
        candidates = [self.stage("test").test_dir("student", test_stage=True) / METRICS]
        candidates += [self.stage(s).metrics_path for s in reversed(self.stages)]
        for candidate in candidates:
            if not candidate.is_file():
                continue
            data = read_json_object(candidate)
            found = {k: float(v) for k, v in data.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            if "psds1" in found or "psds2" in found:
                return found, candidate
        return {}, None

    def best_checkpoints(self) -> list[Path]:
        """``<stage>/checkpoints/best.ckpt`` of the listed stages that have a non-empty one, in order."""
        paths = [self.stage(s).checkpoint("best") for s in self.stages]
        return [p for p in paths if p.is_file() and p.stat().st_size > 0]

    # ------------------------------------------------------------------------------ evaluation set
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

    # ------------------------------------------------------------------------------ pretraining runs
    @property
    def pretrain_checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def pretrain_resume_checkpoint(self) -> Path:
        """A pretraining run's resume checkpoint (every ``checkpoint_every_n_steps`` and at the end)."""
        return self.pretrain_checkpoints_dir / "last.ckpt"

    @property
    def teacher_encoder(self) -> Path:
        """A pretraining run's exported EMA teacher encoder (atst-sed format)."""
        return self.path / "teacher_encoder.ckpt"

    @property
    def logs_dir(self) -> Path:
        return self.path / "logs"
