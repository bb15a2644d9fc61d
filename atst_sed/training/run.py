"""Training runs: typed configuration, run folder, stages (fine-tune, distil, test), resume.

A run is a sequence of named *stages* over one datamodule::

    finetune_clip (finetune, ATST-Clip) → finetune_frame (finetune, ATST-Frame)
        → distill_c2f (distill: student ATST-Frame, teacher = finetune_clip's best) → test

Run folder (``RUN_DIR = root_dir / name``)::

    config.yaml  manifest.json
    <stage>/config.yaml  metrics.json
    <stage>/checkpoints/{best,last}.ckpt          atst-sed format (what `atst-sed detect` reads)
    <stage>/lightning/last.ckpt                   Lightning state after the last finished epoch (--resume)
    <stage>/tensorboard/  <stage>/csv/metrics.csv
    <stage>/test/<student|teacher>/...            DCASE outputs of the stage's best model (optional)
    test/<student|teacher>/{operating_points/,scores/,scores_raw/,metrics.json,plots/}
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as _dt
import importlib.metadata
import logging
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytorch_lightning as pl
import torch

from atst_sed import __version__
from atst_sed.config import (
    ConfigError,
    deep_merge,
    from_dict,
    missing_keys,
    parse_overrides,
    read_yaml,
    resolve_named,
    to_dict,
    write_yaml,
)
from atst_sed.data import DataConfig, SEDDataModule
from atst_sed.errors import AtstSedError, InputError
from atst_sed.features import FrontendConfig
from atst_sed.models.checkpoint import load_checkpoint
from atst_sed.models.encoder import ATSTEncoder, EncoderConfig
from atst_sed.models.sed import SEDModel
from atst_sed.training.callbacks import (
    ContinuedCSVLogger,
    EpochSummary,
    ExportCheckpoints,
    ResumeCheckpoint,
    ResumePoint,
    count_parameters,
)
from atst_sed.training.distill import DistillConfig, DistillTask
from atst_sed.training.finetune import OptimConfig, SEDTask, TaskConfig
from atst_sed.training.testing import score_batches, validation_psds, write_json, write_test_outputs

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
_NAMED = re.compile(r"^(frame|clip)_(tiny|small|base)$")
FAMILY = {"frame": "ATST-Frame", "clip": "ATST-Clip"}
#: (student variant, distillation teacher variant) → the paper's name of the distilled model
DISTILLED = {("frame", "clip"): "ATST-C2F", ("clip", "frame"): "ATST-F2C"}


# ===================================================================================== config
@dataclass
class ModelConfig:
    """An encoder to start from: a named architecture (``frame_base``, ``clip_small``, ``frame_tiny``
    …, random init) or a checkpoint path (ours — an exported pretraining teacher or a SED model —
    or any published ATST-Frame/ATST-Clip layout). ``variant`` forces frame/clip for published files;
    ``overrides`` replace EncoderConfig fields (e.g. ``width``, ``depth``, ``heads`` for named
    architectures, ``drop_path`` for both)."""

    encoder: str = "frame_base"
    variant: str | None = None
    encoder_prefix: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainerConfig:
    """Lightning Trainer settings. ``precision`` None = ``bf16-mixed`` on GPU, ``32-true`` on CPU."""

    max_epochs: int = 100
    accelerator: str = "auto"
    devices: int | str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str | None = None
    gradient_clip_val: float = 3.0
    accumulate_grad_batches: int = 1
    check_val_every_n_epoch: int = 1
    log_every_n_steps: int = 10
    limit_train_batches: int | float = 1.0
    limit_val_batches: int | float = 1.0
    limit_test_batches: int | float = 1.0
    num_sanity_val_steps: int = 0
    deterministic: bool = False
    enable_progress_bar: bool = True
    use_distributed_sampler: bool = False  # the datamodule's batch sampler shards by rank itself


@dataclass
class DecodingConfig:
    """Post-processing saved in checkpoints and used at test: per-class median filter in 40 ms frames
    (one int or one per class) and decision thresholds (for `detect`); ``n_test_thresholds``
    operating points for the DCASE 2022 PSDS (50: 0.01, 0.03 … 0.99)."""

    median_filter: int | list[int] = 7
    thresholds: float | list[float] = 0.5
    n_test_thresholds: int = 50


@dataclass
class ValidationConfig:
    """Per-epoch validation. ``metrics``: ``psds`` (PSDS1/PSDS2 on the validation set, psds_eval over
    ``n_thresholds`` operating points; fewer = faster) or ``loss`` (validation BCE only).
    ``monitor``/``mode`` choose the best checkpoint (default val/psds1 max, or val/loss min; with
    ``data.weak_val_fraction`` > 0 also val/weak_f1, the held-out weak clips' macro F1).
    ``median_filter`` None = decoding.median_filter (audiossl validates with 3). ``evaluator``:
    ``psds_eval`` (operating points, as DCASE 2022) or ``sed_scores_eval`` (threshold-free; several
    times faster — the fast path for CPU runs)."""

    metrics: Literal["psds", "loss"] = "psds"
    monitor: str | None = None
    mode: Literal["min", "max"] | None = None
    median_filter: int | list[int] | None = 3
    n_thresholds: int = 50
    evaluator: Literal["psds_eval", "sed_scores_eval"] = "psds_eval"

    def resolved_monitor(self) -> tuple[str, str]:
        monitor = self.monitor or ("val/psds1" if self.metrics == "psds" else "val/loss")
        mode = self.mode or ("min" if monitor.endswith("loss") else "max")
        return monitor, mode


@dataclass
class StageConfig:
    """One stage. ``kind``: ``finetune`` | ``distill`` | ``test``.

    ``model``: key of ``models`` to start from (the student for distill). ``init``: start from that
    earlier stage's best SED model instead (for ``test``: the stage whose model is tested; default
    the last training stage before it). ``teacher``: (distill) the stage whose best model is the
    frozen teacher. ``test``: (training stages) also write test-set outputs of the best model into
    ``<stage>/test/``. ``overrides``: config sections replaced for this stage only (e.g.
    ``{optim: {lr: 0.05}, trainer: {max_epochs: 50}}``)."""

    kind: Literal["finetune", "distill", "test"] = "finetune"
    model: str = "frame"
    init: str | None = None
    teacher: str | None = None
    test: bool = True
    overrides: dict[str, Any] = field(default_factory=dict)


def _default_models() -> dict[str, ModelConfig]:
    return {"frame": ModelConfig("frame_base"), "clip": ModelConfig("clip_base")}


def _default_stages() -> dict[str, StageConfig]:
    return {"finetune_frame": StageConfig(), "test": StageConfig(kind="test")}


@dataclass
class RunConfig:
    """Everything a run needs; YAML fills it (unknown keys are errors); saved resolved beside results."""

    name: str = "run"
    seed: int = 42
    models: dict[str, ModelConfig] = field(default_factory=_default_models)
    data: DataConfig = field(default_factory=DataConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    decoding: DecodingConfig = field(default_factory=DecodingConfig)
    stages: dict[str, StageConfig] = field(default_factory=_default_stages)


def build_config(data: dict[str, Any], where: str = "config") -> RunConfig:
    """Strict :class:`RunConfig` from a mapping (plain or holding command-line values); a bad key or
    value → one-line :class:`AtstSedError` naming the command line item, or else ``where``."""
    try:
        cfg = from_dict(RunConfig, data)
    except ConfigError as err:
        raise AtstSedError(err.located(where)) from None
    _check(cfg, where)
    return cfg


def _check(cfg: RunConfig, where: str) -> None:
    names = list(cfg.stages)
    for i, (name, st) in enumerate(cfg.stages.items()):
        earlier = names[:i]
        if st.kind != "test" or st.init is None:
            if st.model not in cfg.models and st.init is None:
                raise AtstSedError(f"{where}: stage {name}: model {st.model!r} is not in models ({', '.join(cfg.models)})")
        for ref, what in ((st.init, "init"), (st.teacher, "teacher")):
            if ref is not None and ref not in earlier:
                raise AtstSedError(f"{where}: stage {name}: {what} {ref!r} must name an earlier stage ({', '.join(earlier) or 'none'})")
        if st.kind == "distill" and st.teacher is None:
            raise AtstSedError(f"{where}: stage {name}: a distill stage needs a teacher stage")
        bad = sorted(set(st.overrides) & {"stages", "name", "models"})
        if bad:
            raise AtstSedError(f"{where}: stage {name}: overrides may not change {', '.join(bad)}")


def default_config_dict() -> dict[str, Any]:
    """The defaults of every run: the dataclasses above (their one source; ``configs/finetune/
    default.yaml`` documents them and a test keeps it equal)."""
    return to_dict(RunConfig())


def merge_recipe(base: dict[str, Any], recipe: dict[str, Any]) -> dict[str, Any]:
    """Recipe over defaults: sections merge key by key, but a recipe's ``stages`` replace the default list."""
    merged = deep_merge(base, {k: v for k, v in recipe.items() if k != "stages"})
    if "stages" in recipe:
        merged["stages"] = recipe["stages"]
    return merged


def recipe_path(recipe: str | os.PathLike[str]) -> Path:
    """``recipe.yaml`` of a recipe folder, a YAML file, or a shipped recipe's name (``mini``, ``dcase22``, …)."""
    return resolve_named(recipe, in_folder="recipe.yaml", shipped="recipes", pattern="{name}/recipe.yaml", what="recipe")


def load_recipe(recipe: str | os.PathLike[str], overrides: list[str] | None = None) -> RunConfig:
    """A recipe (:func:`recipe_path`: only its differences from the defaults) + ``key=value``
    overrides → :class:`RunConfig` (see :func:`resolve_config`). ``name`` defaults to the recipe's
    folder name (a YAML file other than ``recipe.yaml``: its stem)."""
    path = recipe_path(recipe)
    recipe_data = read_yaml(path)
    merged = merge_recipe(default_config_dict(), recipe_data)
    if "name" not in recipe_data:
        merged["name"] = path.resolve().parent.name if path.name == "recipe.yaml" else path.stem
    return resolve_config(merged, overrides, str(path))


def resolve_config(data: dict[str, Any], overrides: list[str] | None, where: str) -> RunConfig:
    """Command-line ``key=value`` overrides over ``data`` (defaults + recipe, or a saved run config).

    Precedence: defaults < recipe < a stage's ``overrides`` < command line. A command-line key also
    replaces what a stage's overrides set for it (reported in the log); ``stages.<stage>.overrides.<key>=…``
    sets a value for one stage only. Values marked ``???`` must be given. Every stage's config is
    checked here, so a bad value fails at load time, not when its stage starts."""
    try:
        command_line = parse_overrides(list(overrides or []))
    except ValueError as err:
        raise AtstSedError(str(err)) from None
    merged, replaced = _command_line_over_stages(deep_merge(data, command_line), command_line)
    missing = missing_keys(merged)
    if missing:
        more = f" (and {', '.join(missing[1:])})" if len(missing) > 1 else ""
        raise AtstSedError(f"{where}: {missing[0]} must be given{more}: add {missing[0]}=... to the command line")
    cfg = build_config(merged, where)
    sections = {k: v for k, v in merged.items() if k != "stages"}
    for name, stage in (merged.get("stages") or {}).items():
        over = stage.get("overrides") if isinstance(stage, dict) else None
        if not over:
            continue
        try:
            from_dict(RunConfig, deep_merge(sections, over))
        except ConfigError as err:
            raise AtstSedError(ConfigError(f"stages.{name}.overrides.{err.key}".rstrip("."), err.problem, err.origin).located(where)) from None
    for note in replaced:
        log.info("%s", note)
    return cfg


def _leaf_keys(data: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        out.extend(_leaf_keys(value, dotted) if isinstance(value, dict) and value else [dotted])
    return out


def _at(data: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        data = data[part]
    return data


def _drop_key(data: dict[str, Any], dotted: str) -> None:
    *parents, last = dotted.split(".")
    chain = [data]
    for part in parents:
        chain.append(chain[-1][part])
    del chain[-1][last]
    for node, part in zip(reversed(chain[:-1]), reversed(parents)):  # drop sections left empty
        if not node[part]:
            del node[part]


def _command_line_over_stages(merged: dict[str, Any], command_line: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Drop from every stage's overrides the keys the command line sets for the whole run (``data.x=…``
    outranks a recipe's ``stages.S.overrides.data.x``), except where it addresses the stage itself.
    Returns the new dict and one line per value replaced."""
    given = _leaf_keys({k: v for k, v in command_line.items() if k != "stages"})
    replaced: list[str] = []
    if not given or not isinstance(merged.get("stages"), dict):
        return merged, replaced
    merged = dict(merged, stages=copy.deepcopy(merged["stages"]))
    for name, stage in merged["stages"].items():
        over = stage.get("overrides") if isinstance(stage, dict) else None
        if not isinstance(over, dict):
            continue
        addressed = set(_leaf_keys(((command_line.get("stages") or {}).get(name) or {}).get("overrides") or {}))
        for key in _leaf_keys(over):
            winner = next((g for g in given if key == g or key.startswith(g + ".")), None)
            if winner is None or key in addressed:
                continue
            replaced.append(f"stage {name}: the command line's {_at(command_line, winner).item} replaces "
                            f"the stage's override {key}={to_dict(_at(over, key))}")
            _drop_key(over, key)
    return merged, replaced


def stage_config(cfg: RunConfig, stage: str) -> RunConfig:
    """The run config with ``stages[stage].overrides`` applied (checked when the config was loaded)."""
    over = cfg.stages[stage].overrides
    if not over:
        return cfg
    return build_config(deep_merge(to_dict(cfg), over), f"stages.{stage}.overrides")


# ===================================================================================== helpers
def package_versions() -> dict[str, str]:
    names = ["atst-sed", "torch", "torchaudio", "pytorch-lightning", "numpy", "pandas", "scipy", "psds-eval", "sed-eval", "sed-scores-eval", "librosa", "soundfile"]
    out = {}
    for n in names:
        try:
            out[n] = importlib.metadata.version(n)
        except importlib.metadata.PackageNotFoundError:
            continue
    out["python"] = ".".join(map(str, __import__("sys").version_info[:3]))
    return out


def git_commit() -> str | None:
    """``git rev-parse HEAD`` of the source tree (None outside a git checkout)."""
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() or None if res.returncode == 0 else None


def is_main_process() -> bool:
    """True in the process that writes the run folder: global rank 0 of a distributed run, or the
    only process. Lightning's DDP launcher starts the other ranks by running the same command line
    again (with LOCAL_RANK / NODE_RANK set), torchrun sets RANK, SLURM SLURM_PROCID; so they go
    through every stage too, and this decides who writes."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank() == 0
    env = os.environ
    if "RANK" in env:
        return int(env["RANK"]) == 0
    if "LOCAL_RANK" in env:  # SLURM_PROCID may be inherited from a one-task job: check this first
        return int(env["LOCAL_RANK"]) == 0 and int(env.get("NODE_RANK", env.get("GROUP_RANK", 0))) == 0
    return int(env.get("SLURM_PROCID", 0)) == 0


def on_gpu(trainer_cfg: TrainerConfig) -> bool:
    return torch.cuda.is_available() and trainer_cfg.accelerator in ("auto", "gpu", "cuda")


def build_model(mc: ModelConfig, classes: list[str]) -> SEDModel:
    """A SED model for ``classes`` from a :class:`ModelConfig` (a fresh head unless the checkpoint
    is a SED model with the same classes)."""
    overrides = dict(mc.overrides)
    if _NAMED.match(mc.encoder):
        try:
            config = EncoderConfig.named(mc.encoder, **overrides)
        except (TypeError, ValueError) as err:
            raise AtstSedError(f"models: encoder {mc.encoder} with overrides {overrides}: {err}") from None
        return SEDModel(config, len(classes))
    path = Path(mc.encoder).expanduser()
    if not path.exists():
        raise InputError(path, "no such encoder checkpoint (and not a named encoder like frame_base / clip_small)")
    loaded = load_checkpoint(path, mc.encoder_prefix, mc.variant)  # refuses a file that says otherwise
    encoder = loaded.encoder
    if overrides:
        try:
            config = dataclasses.replace(encoder.config, **overrides)
        except TypeError as err:
            raise AtstSedError(f"models: overrides {overrides}: {err}") from None
        rebuilt = ATSTEncoder(config)
        rebuilt.load_state_dict(encoder.state_dict())
        encoder = rebuilt
    if loaded.kind == "sed" and loaded.model is not None and list(loaded.classes) == list(classes):
        model = SEDModel(encoder, len(classes))
        model.head.load_state_dict(loaded.model.head.state_dict())
        return model
    return SEDModel(encoder, len(classes))


class Run:
    """One run folder: executes the stages of a :class:`RunConfig` (see the module docstring)."""

    def __init__(self, config: RunConfig, run_dir: str | Path):
        self.config = config
        self.dir = Path(run_dir)
        self.datamodule: SEDDataModule | None = None
        self._dm_config: DataConfig | None = None

    # ------------------------------------------------------------------ data
    def data(self, cfg: RunConfig) -> SEDDataModule:
        if self.datamodule is None or self._dm_config != cfg.data:
            dm = SEDDataModule(cfg.data)
            dm.prepare_data()
            dm.setup("fit")
            self.datamodule, self._dm_config = dm, cfg.data
        return self.datamodule

    @property
    def classes(self) -> list[str]:
        return list(self.data(self.config).classes)

    def decoding_dict(self, cfg: RunConfig) -> dict[str, Any]:
        n = len(self.classes)
        mf = cfg.decoding.median_filter
        th = cfg.decoding.thresholds
        return {
            "thresholds": [float(th)] * n if isinstance(th, (int, float)) else [float(v) for v in th],
            "median_filter": [int(mf)] * n if isinstance(mf, int) else [int(v) for v in mf],
        }

    def checkpoint_info(self, cfg: RunConfig, stage: str):
        frontend = getattr(self.data(cfg), "frontend_config", None) or FrontendConfig()

        def info(model: SEDModel, meta: dict[str, Any]) -> dict[str, Any]:
            return {
                "classes": self.classes,
                "decoding": self.decoding_dict(cfg),
                "frontend": frontend,
                "meta": {"run": cfg.name, "stage": stage, "seed": cfg.seed, **meta},
            }

        return info

    # ------------------------------------------------------------------ manifest
    def write_manifest(self, stages_done: list[str], model: SEDModel | None = None) -> None:
        dm = self.data(self.config)
        path = self.dir / "manifest.json"
        previous: dict[str, Any] = {}
        if path.exists():
            import json

            previous = json.loads(path.read_text())
        manifest = {
            "atst_sed_version": __version__,
            "git_commit": git_commit(),
            "created": previous.get("created") or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "updated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "seed": self.config.seed,
            "versions": package_versions(),
            "dataset": {
                "root": str(getattr(self.config.data, "root", "")),
                "fingerprint": getattr(dm, "fingerprint", None),
                "missing_files": getattr(dm, "missing_files", None),
            },
            "classes": self.classes,
            "frontend": (getattr(dm, "frontend_config", None) or FrontendConfig()).to_dict(),
            "model": previous.get("model"),
            "models": previous.get("models", {}),
            "training_data": list(getattr(dm, "training_sets", None) or previous.get("training_data") or []),
            "stages": stages_done,
        }
        if model is not None:
            n_all, n_train = count_parameters(model)
            manifest["model"] = {"encoder": model.encoder.config.to_dict(), "n_parameters": n_all, "n_trainable_parameters": n_train}
            manifest["models"][stages_done[-1]] = manifest["model"]
        write_json(path, manifest)

    def _stages_done(self) -> list[str]:
        return [s for s in self.config.stages if (self.dir / s / "metrics.json").exists()]

    # ------------------------------------------------------------------ running
    def run(self, only: str | None = None, resume: bool = False) -> dict[str, dict[str, Any]]:
        """Run all stages (or ``only`` one). With ``resume``, finished stages are skipped and an
        interrupted stage continues from its resume checkpoint. Returns ``{stage: metrics}``.

        A run that fails before it has trained or tested anything (a refused checkpoint, a corpus
        problem) removes the run folder it created, so the corrected command starts afresh."""
        if only is not None and only not in self.config.stages:
            raise AtstSedError(f"no stage {only!r} in the recipe (stages: {', '.join(self.config.stages)})")
        created = not self.dir.exists()
        try:
            return self._run(only, resume)
        except BaseException:
            if created and is_main_process() and self.dir.is_dir() and not has_progress(self.dir):
                shutil.rmtree(self.dir, ignore_errors=True)
            raise

    def _run(self, only: str | None, resume: bool) -> dict[str, dict[str, Any]]:
        self.dir.mkdir(parents=True, exist_ok=True)
        if is_main_process():
            write_yaml(self.dir / "config.yaml", self.config)
            self.write_manifest(self._stages_done())
        results: dict[str, dict[str, Any]] = {}
        for name in self.config.stages:
            if only is not None and name != only:
                continue
            metrics_path = self.dir / name / "metrics.json"
            if resume and only is None and metrics_path.exists():
                log.info("stage %s already finished; skipping (metrics in %s)", name, metrics_path)
                import json

                results[name] = json.loads(metrics_path.read_text())
                continue
            results[name] = self.run_stage(name, resume=resume)
        return results

    def _fresh_stage_dir(self, name: str, resume: bool) -> Path:
        sdir = self.dir / name
        if sdir.exists() and not resume and is_main_process():
            shutil.rmtree(sdir)
        sdir.mkdir(parents=True, exist_ok=True)
        return sdir

    def run_stage(self, name: str, resume: bool = False) -> dict[str, Any]:
        st = self.config.stages[name]
        cfg = stage_config(self.config, name)
        sdir = self._fresh_stage_dir(name, resume)
        main = is_main_process()
        if main:
            write_yaml(sdir / "config.yaml", cfg)
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        start = time.perf_counter()
        log.info("stage %s (%s) → %s", name, st.kind, sdir)
        if st.kind == "test":
            if not main:  # testing runs in one process; the other ranks have nothing to do
                return {"stage": name, "kind": "test"}
            metrics = self.test_stage(name, cfg)
            model = None
        else:
            metrics, model = self.train_stage(name, cfg, resume)
        metrics["seconds"] = round(time.perf_counter() - start, 1)
        if main:
            write_json(sdir / "metrics.json", metrics)  # last: marks the stage as finished
            self.write_manifest(self._stages_done(), model)
        return metrics

    # ------------------------------------------------------------------ models of earlier stages
    def stage_model(self, stage: str, which: str = "best") -> SEDModel:
        path = self.dir / stage / "checkpoints" / f"{which}.ckpt"
        if not path.exists():
            raise AtstSedError(f"stage {stage} has no {which} checkpoint ({path}); run that stage first")
        loaded = load_checkpoint(path)
        if loaded.model is None or list(loaded.classes) != self.classes:
            raise InputError(path, "not a SED checkpoint for this run's classes")
        return loaded.model

    def stage_teacher(self, stage: str) -> SEDModel | None:
        """The model tested beside a stage's student: its mean teacher, else its distillation teacher."""
        mt = self.dir / stage / "checkpoints" / "best_teacher.ckpt"
        if mt.exists():
            return self.stage_model(stage, "best_teacher")
        st = self.config.stages[stage]
        if st.kind == "distill" and st.teacher is not None:
            return self.stage_model(st.teacher)
        return None

    def initial_model(self, st: StageConfig, cfg: RunConfig) -> SEDModel:
        if st.init is not None:
            return self.stage_model(st.init)
        return build_model(cfg.models[st.model], self.classes)

    # ------------------------------------------------------------------ evaluation helpers
    def device(self, cfg: RunConfig) -> str:
        return "cuda" if on_gpu(cfg.trainer) else "cpu"

    def _limited(self, loader, limit: int | float):
        if isinstance(limit, float) and limit >= 1.0:
            return loader
        n = int(limit) if isinstance(limit, int) else max(1, int(round(limit * len(loader))))
        return (b for i, b in zip(range(n), loader))

    def model_titles(self, stage: str | None, models: dict[str, SEDModel]) -> dict[str, str]:
        """How result tables name the models tested after ``stage`` (None: untrained), per role:
        e.g. ``ATST-C2F (student)`` and ``ATST-Clip (fine-tuned teacher)`` after a C2F distillation,
        ``ATST-Frame (fine-tuned)`` and ``ATST-Frame (mean teacher)`` after a fine-tuning."""
        family = {role: FAMILY[m.encoder.config.variant] for role, m in models.items()}
        if stage is None:
            return {role: f"{family[role]} (untrained)" for role in models}
        st = self.config.stages[stage]
        mean_teacher = (self.dir / stage / "checkpoints" / "best_teacher.ckpt").exists()
        titles = {"student": f"{family['student']} (fine-tuned)"}
        if st.kind == "distill":
            teacher = models["teacher"] if "teacher" in models and not mean_teacher else self.stage_model(st.teacher)
            pair = (models["student"].encoder.config.variant, teacher.encoder.config.variant)
            titles["student"] = f"{DISTILLED.get(pair, family['student'] + ' distilled')} (student)"
        if "teacher" in models:
            titles["teacher"] = f"{family['teacher']} (mean teacher)" if mean_teacher else f"{family['teacher']} (fine-tuned teacher)"
        return titles

    def test_models(self, out_dir: Path, models: dict[str, SEDModel], cfg: RunConfig,
                    titles: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
        """Test-set outputs and metrics per role (``titles``: the models' names, kept as ``model``)."""
        dm = self.data(cfg)
        dm.setup("test")
        gt, dur = dm.ground_truth("test"), dm.durations("test")
        results = {}
        for role, model in models.items():
            scores = score_batches(model, self._limited(dm.test_dataloader(), cfg.trainer.limit_test_batches), self.device(cfg))
            results[role] = write_test_outputs(
                out_dir / role, scores, gt, dur, self.classes, cfg.decoding.median_filter, cfg.decoding.n_test_thresholds,
                model=(titles or {}).get(role),
            )
            log.info("%s %s: PSDS1 %.3f, PSDS2 %.3f (%d clips)", out_dir.name, role, results[role].get("psds1", float("nan")), results[role].get("psds2", float("nan")), len(scores))
        return results

    def test_stage(self, name: str, cfg: RunConfig) -> dict[str, Any]:
        st = cfg.stages[name]
        source = st.init
        if source is None:  # the last training stage before this one, if any
            names = list(self.config.stages)
            earlier = [s for s in names[: names.index(name)] if self.config.stages[s].kind != "test"]
            source = earlier[-1] if earlier else None
        if source is None:
            models = {"student": build_model(cfg.models[st.model], self.classes)}
        else:
            models = {"student": self.stage_model(source)}
            teacher = self.stage_teacher(source)
            if teacher is not None:
                models["teacher"] = teacher
        results = self.test_models(self.dir / name, models, cfg, self.model_titles(source, models))
        out = {"stage": name, "kind": "test", "source": source, "test": results}
        out.update({k: results["student"].get(k) for k in ("psds1", "psds2")})
        return out

    def evaluator(self, cfg: RunConfig):
        if cfg.validation.metrics != "psds":
            return None
        dm = self.data(cfg)
        gt, dur = dm.ground_truth("val"), dm.durations("val")
        median = cfg.validation.median_filter if cfg.validation.median_filter is not None else cfg.decoding.median_filter
        classes = self.classes
        n, which = cfg.validation.n_thresholds, cfg.validation.evaluator

        def evaluate(scores):
            return validation_psds(scores, gt, dur, classes, median, n, which)

        return evaluate

    # ------------------------------------------------------------------ training
    def build_task(self, st: StageConfig, cfg: RunConfig) -> SEDTask:
        model = self.initial_model(st, cfg)
        if st.kind == "distill":
            teacher = self.stage_model(st.teacher)
            return DistillTask(model, teacher, cfg.task, cfg.optim, cfg.distill, self.evaluator(cfg))
        return SEDTask(model, cfg.task, cfg.optim, self.evaluator(cfg))

    def trainer(
        self, name: str, cfg: RunConfig, extra_callbacks: list[pl.Callback] | None = None, start: ResumePoint = ResumePoint(0, 0)
    ) -> tuple[pl.Trainer, ExportCheckpoints]:
        """The stage's Trainer: :class:`ExportCheckpoints` (best/last model), :class:`ResumeCheckpoint`
        (``lightning/last.ckpt``), TensorBoard and CSV logs that keep what was logged before ``start``."""
        t = cfg.trainer
        sdir = self.dir / name
        monitor, mode = cfg.validation.resolved_monitor()
        export = ExportCheckpoints(sdir / "checkpoints", monitor, mode, self.checkpoint_info(cfg, name))
        callbacks: list[pl.Callback] = [export, ResumeCheckpoint(resume_checkpoint(sdir)), EpochSummary(name), *(extra_callbacks or [])]
        # A resumed stage repeats the interrupted epoch: what the interrupted run logged from there on
        # gives way (TensorBoard's purge_step, the CSV rows of those epochs); everything before stays.
        loggers = [
            pl.loggers.TensorBoardLogger(save_dir=str(sdir), name="tensorboard", version="", purge_step=start.steps),
            ContinuedCSVLogger(sdir, "csv", "", keep_epochs_before=start.epochs),
        ]
        precision = t.precision or ("bf16-mixed" if on_gpu(t) else "32-true")
        trainer = pl.Trainer(
            default_root_dir=str(sdir),
            max_epochs=t.max_epochs,
            accelerator=t.accelerator,
            devices=t.devices,
            num_nodes=t.num_nodes,
            strategy=t.strategy,
            precision=precision,
            gradient_clip_val=t.gradient_clip_val,
            accumulate_grad_batches=t.accumulate_grad_batches,
            check_val_every_n_epoch=t.check_val_every_n_epoch,
            log_every_n_steps=t.log_every_n_steps,
            limit_train_batches=t.limit_train_batches,
            limit_val_batches=t.limit_val_batches,
            num_sanity_val_steps=t.num_sanity_val_steps,
            deterministic=t.deterministic,
            enable_progress_bar=t.enable_progress_bar,
            enable_model_summary=False,
            use_distributed_sampler=t.use_distributed_sampler,
            callbacks=callbacks,
            logger=loggers,
        )
        return trainer, export

    def train_stage(self, name: str, cfg: RunConfig, resume: bool, extra_callbacks: list[pl.Callback] | None = None) -> tuple[dict[str, Any], SEDModel]:
        st = cfg.stages[name]
        last = resume_checkpoint(self.dir / name)
        resumed = ResumePoint.read(last) if resume and last.exists() else None
        dm = self.data(cfg)
        task = self.build_task(st, cfg)
        trainer, export = self.trainer(name, cfg, extra_callbacks, resumed or ResumePoint(0, 0))
        if resumed:
            log.info("resuming stage %s after epoch %d (step %d) from %s", name, resumed.epochs, resumed.steps, last)
        trainer.fit(task, datamodule=dm, ckpt_path=str(last) if resumed else None, weights_only=True)
        # every rank waits for rank 0's checkpoint exports: later stages start from them
        trainer.strategy.barrier(f"{name}-exported")
        if trainer.interrupted:
            raise AtstSedError(f"stage {name} was interrupted; continue with --resume (state in {last})")
        n_all, n_train = count_parameters(task.model)
        monitor, _ = cfg.validation.resolved_monitor()
        metrics: dict[str, Any] = {
            "stage": name,
            "kind": st.kind,
            "best_epoch": export.best_epoch,
            "monitor": monitor,
            "best_score": export.best_score,
            "val": export.best_metrics,
            "global_step": trainer.global_step,
            "n_parameters": n_all,
            "n_trainable_parameters": n_train,
        }
        if trainer.is_global_zero and st.test:
            models = {"student": self.stage_model(name)}
            teacher = self.stage_teacher(name)
            if teacher is not None:
                models["teacher"] = teacher
            results = self.test_models(self.dir / name / "test", models, cfg, self.model_titles(name, models))
            metrics["test"] = results
            metrics.update({k: results["student"].get(k) for k in ("psds1", "psds2")})
        return metrics, task.model


def resume_checkpoint(stage_dir: Path) -> Path:
    """Where a training stage keeps its resume checkpoint (:class:`ResumeCheckpoint`)."""
    return stage_dir / "lightning" / "last.ckpt"


def has_progress(run_dir: Path) -> bool:
    """True when a run folder holds more than a failed start leaves (its config and manifest): a
    finished stage, a resume checkpoint or an exported model."""
    return any(run_dir.glob("*/metrics.json")) or any(run_dir.glob("*/lightning/*.ckpt")) or any(run_dir.glob("*/checkpoints/*.ckpt"))


def summary_rows(results: dict[str, dict[str, Any]]) -> list[tuple[str, str, float | None, float | None, float | None, float | None]]:
    """(stage, model, PSDS1, PSDS2, PSDS1 sed_scores_eval, PSDS2 sed_scores_eval) on the test set;
    the model by name (``ATST-C2F (student)``; its role for runs tested before names were kept)."""
    rows = []
    for stage, metrics in results.items():
        for role, m in (metrics.get("test") or {}).items():
            rows.append((stage, m.get("model", role), m.get("psds1"), m.get("psds2"), m.get("psds1_sed_scores_eval"), m.get("psds2_sed_scores_eval")))
    return rows
