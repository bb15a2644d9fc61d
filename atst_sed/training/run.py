"""Training runs: the stages of a recipe (fine-tune, distil, test) in one run folder, and resume.

A run is a sequence of named *stages* over one corpus::

    finetune_clip (finetune, ATST-Clip) → finetune_frame (finetune, ATST-Frame)
        → distill_c2f (distill: student ATST-Frame, teacher = finetune_clip's best) → test

The configuration is :mod:`atst_sed.training.run_config`, the folder layout
:mod:`atst_sed.runfolder`, the Trainer :func:`atst_sed.training.trainer.build_trainer`, the models
:func:`atst_sed.models.build_model`. Everything model-specific (the frame grid of the targets,
the frontend, the classes) is read from the stage's model (:attr:`SEDModel.spec`).
"""

from __future__ import annotations

import functools
import logging
import shutil
import time
from os import PathLike
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from atst_sed.config import read_yaml, write_yaml
from atst_sed.data.corpus import read_fingerprint
from atst_sed.data.datamodule import SEDDataModule, run_classes, training_data
from atst_sed.decoding import Decoding
from atst_sed.errors import AtstSedError, InputError
from atst_sed.fileio import write_json
from atst_sed.models.checkpoint import load_checkpoint
from atst_sed.models.crnn import ATSTSEDModel
from atst_sed.models.factory import build_model
from atst_sed.models.sed import SEDModel
from atst_sed.runfolder import RunFolder
from atst_sed.timegrid import FrameGrid
from atst_sed.training.callbacks import (
    ContinuedCSVLogger,
    EpochSummary,
    ExportCheckpoints,
    ResumeCheckpoint,
    ResumePoint,
    count_parameters,
)
from atst_sed.training.distill import DistillTask
from atst_sed.training.finetune import SEDTask
from atst_sed.training.provenance import run_manifest
from atst_sed.training.run_config import RunConfig, StageConfig, frontend_config, resolve_config, stage_config
from atst_sed.training.scoring import score_batches, write_test_outputs
from atst_sed.training.trainer import build_trainer, is_main_process, uses_gpu
from atst_sed.training.validation import SetMetrics, ValidationSet

log = logging.getLogger(__name__)

#: (student family, distillation teacher family) → the paper's name of the distilled model
DISTILLED = {("ATST-Frame", "ATST-Clip"): "ATST-C2F", ("ATST-Clip", "ATST-Frame"): "ATST-F2C"}


def run_config_for_folder(
    config: RunConfig, run_dir: str | PathLike[str], overrides: list[str], resume: bool, allow_existing: bool
) -> RunConfig:
    """The resume policy: the configuration a run folder runs with.

    A folder with progress (a finished stage, a checkpoint) continues with its saved config (and
    the command line's ``overrides``) when ``resume``; otherwise it is refused unless
    ``allow_existing`` (rerunning one stage, printing the config) — on the main process only, as the
    other DDP ranks find the folder rank 0 has just made. A folder a failed start left is reused."""
    folder = RunFolder(run_dir)
    if folder.config_path.exists() and folder.has_progress():
        if resume:  # a resumed run keeps its saved configuration; command-line overrides still apply
            return resolve_config(read_yaml(folder.config_path), overrides, str(folder.config_path))
        if not allow_existing and is_main_process():
            raise AtstSedError(f"run folder {folder.path} already exists; pass --resume to continue it, "
                               "--stage NAME to rerun one stage, or name=... for a new run")
    return config


class Run:
    """One run folder: executes the stages of a :class:`RunConfig` (see the module docstring)."""

    def __init__(self, config: RunConfig, run_dir: str | Path):
        self.config = config
        self.folder = RunFolder(run_dir)
        self.dir = self.folder.path
        self._datamodules: dict[tuple[Any, FrameGrid], SEDDataModule] = {}

    # ------------------------------------------------------------------ data
    def data(self, cfg: RunConfig, grid: FrameGrid) -> SEDDataModule:
        """The datamodule of ``cfg.data`` with targets on ``grid`` (a model's), set up once."""
        key = (repr(cfg.data), grid)
        if key not in self._datamodules:
            dm = SEDDataModule(cfg.data, grid)
            dm.prepare_data()
            dm.setup("fit")
            self._datamodules[key] = dm
        return self._datamodules[key]

    @functools.cached_property
    def classes(self) -> list[str]:
        """The run's class order (``data.classes``, else the corpus's)."""
        return list(run_classes(self.config.data))

    def stage_decoding(self, cfg: RunConfig) -> Decoding:
        """The post-processing a stage's models carry into their checkpoints."""
        return Decoding.for_classes(self.classes, cfg.decoding.thresholds, cfg.decoding.median_filter)

    def checkpoint_info(self, cfg: RunConfig, stage: str):
        """What :class:`ExportCheckpoints` adds to a model's own contract: the run's meta data."""

        def info(model: SEDModel, meta: dict[str, Any]) -> dict[str, Any]:
            return {"meta": {"run": cfg.name, "stage": stage, "seed": cfg.seed, **meta}}

        return info

    # ------------------------------------------------------------------ manifest
    def write_manifest(self, stages_done: list[str], model: SEDModel | None = None) -> None:
        previous = self.folder.previous_manifest()
        corpus = read_fingerprint(self.config.data.root)
        described = previous.get("model")
        models = dict(previous.get("models", {}))
        frontend = previous.get("frontend") or frontend_config(self.config).to_dict()
        if model is not None:
            n_all, n_train = count_parameters(model)
            spec = model.spec
            described = {"family": spec.family, "encoder": model.encoder.config.to_dict(),
                         "frontends": {name: c.to_dict() for name, c in spec.frontends.items()},
                         "n_parameters": n_all, "n_trainable_parameters": n_train}
            if isinstance(model, ATSTSEDModel):
                described["crnn"] = model.config.to_dict()
            models[stages_done[-1]] = described
            frontend = spec.frontend.to_dict()  # the ATST log-mel the last trained model reads
        self.folder.write_manifest(run_manifest(
            created=previous.get("created"),
            updated=True,
            seed=self.config.seed,
            dataset={"root": str(self.config.data.root), "fingerprint": corpus["fingerprint"],
                     "missing_files": corpus.get("missing_files", 0)},
            classes=self.classes,
            frontend=frontend,
            model=described,
            models=models,
            training_data=self.training_data(corpus),
            stages=stages_done,
        ))

    def training_data(self, fingerprint: dict[str, Any]) -> list[str]:
        """The corpus sets the recipe's training stages train on, each once (a stage's overrides
        may change the pools): :func:`~atst_sed.data.datamodule.training_data`."""
        lines = [line for name, st in self.config.stages.items() if st.kind != "test"
                 for line in training_data(stage_config(self.config, name).data, fingerprint)]
        return list(dict.fromkeys(lines))

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
            if created and is_main_process() and self.dir.is_dir() and not self.folder.has_progress():
                shutil.rmtree(self.dir, ignore_errors=True)
            raise

    def _run(self, only: str | None, resume: bool) -> dict[str, dict[str, Any]]:
        self.dir.mkdir(parents=True, exist_ok=True)
        if is_main_process():
            write_yaml(self.folder.config_path, self.config)
            self.write_manifest(self.folder.finished_stages(list(self.config.stages)))
        results: dict[str, dict[str, Any]] = {}
        for name in self.config.stages:
            if only is not None and name != only:
                continue
            stage = self.folder.stage(name)
            if resume and only is None and stage.finished:
                log.info("stage %s already finished; skipping (metrics in %s)", name, stage.metrics_path)
                results[name] = stage.read_metrics() or {}
                continue
            results[name] = self.run_stage(name, resume=resume)
        return results

    def _fresh_stage_dir(self, name: str, resume: bool) -> Path:
        sdir = self.folder.stage(name).path
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
            write_yaml(self.folder.stage(name).config_path, cfg)
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
            write_json(self.folder.stage(name).metrics_path, metrics)  # last: marks the stage as finished
            self.write_manifest(self.folder.finished_stages(list(self.config.stages)), model)
        return metrics

    # ------------------------------------------------------------------ models of earlier stages
    def stage_model(self, stage: str, which: str = "best") -> SEDModel:
        path = self.folder.stage(stage).checkpoint(which)
        if not path.exists():
            raise AtstSedError(f"stage {stage} has no {which} checkpoint ({path}); run that stage first")
        loaded = load_checkpoint(path)
        if loaded.model is None or list(loaded.classes) != self.classes:
            raise InputError(path, "not a SED checkpoint for this run's classes")
        return loaded.model

    def stage_teacher(self, stage: str) -> SEDModel | None:
        """The model tested beside a stage's student: its mean teacher, else its distillation teacher."""
        if self.folder.stage(stage).checkpoint("best_teacher").exists():
            return self.stage_model(stage, "best_teacher")
        st = self.config.stages[stage]
        if st.kind == "distill" and st.teacher is not None:
            return self.distillation_teacher(st)
        return None

    def distillation_teacher(self, st: StageConfig) -> SEDModel:
        """The frozen teacher of a distill stage: an earlier stage's best model, or the SED model of a
        ``models`` entry (a checkpoint with a head for this run's classes, such as a published
        fine-tuned ATST-Clip)."""
        if st.teacher in self.config.stages:
            return self.stage_model(st.teacher)
        source = self.config.models[st.teacher]
        loaded = load_checkpoint(source.encoder, source.encoder_prefix, source.variant)
        if loaded.model is None or list(loaded.classes) != self.classes:
            found = "an encoder without a SED head" if loaded.model is None else f"a SED model for {list(loaded.classes)}"
            raise AtstSedError(f"models.{st.teacher}: {source.encoder} is {found}; a distillation teacher must be a "
                               f"SED model for this run's classes {self.classes}")
        return loaded.model

    def initial_model(self, st: StageConfig, cfg: RunConfig) -> SEDModel:
        """The model a stage starts from, carrying the stage's decoding settings and its way with
        short clips (``data.short_clips``; both travel in its checkpoints)."""
        if st.init is not None:
            model = self.stage_model(st.init)
        else:
            model = build_model(cfg.models[st.model], self.classes, cfg.data.frontend)
        model.decoding = self.stage_decoding(cfg)
        model.short_clips = cfg.data.short_clips
        return model

    # ------------------------------------------------------------------ evaluation helpers
    def device(self, cfg: RunConfig) -> str:
        return "cuda" if uses_gpu(cfg.trainer.accelerator) else "cpu"

    def _limited(self, loader, limit: int | float):
        if isinstance(limit, float) and limit >= 1.0:
            return loader
        n = int(limit) if isinstance(limit, int) else max(1, int(round(limit * len(loader))))
        return (b for i, b in zip(range(n), loader))

    def model_titles(self, stage: str | None, models: dict[str, SEDModel]) -> dict[str, str]:
        """How result tables name the models tested after ``stage`` (None: untrained), per role:
        e.g. ``ATST-C2F (student)`` and ``ATST-Clip (fine-tuned teacher)`` after a C2F distillation,
        ``ATST-Frame (fine-tuned)`` and ``ATST-Frame (mean teacher)`` after a fine-tuning."""
        family = {role: m.spec.family for role, m in models.items()}
        if stage is None:
            return {role: f"{family[role]} (untrained)" for role in models}
        st = self.config.stages[stage]
        mean_teacher = self.folder.stage(stage).checkpoint("best_teacher").exists()
        titles = {"student": f"{family['student']} (fine-tuned)"}
        if st.kind == "distill":
            teacher = models["teacher"] if "teacher" in models and not mean_teacher else self.distillation_teacher(st)
            pair = (family["student"], teacher.spec.family)
            titles["student"] = f"{DISTILLED.get(pair, family['student'] + ' distilled')} (student)"
        if "teacher" in models:
            titles["teacher"] = f"{family['teacher']} (mean teacher)" if mean_teacher else f"{family['teacher']} (fine-tuned teacher)"
        return titles

    def test_models(self, stage: str, test_stage: bool, models: dict[str, SEDModel], cfg: RunConfig,
                    titles: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
        """Test-set outputs and metrics per role (``titles``: the models' names, kept as ``model``),
        each model scored on its own grid against the ground truth as written."""
        results = {}
        for role, model in models.items():
            dm = self.data(cfg, model.grid)
            dm.setup("test")
            gt, dur = dm.ground_truth("test"), dm.durations("test")
            scores = score_batches(model, self._limited(dm.test_dataloader(), cfg.trainer.limit_test_batches), self.device(cfg))
            out_dir = self.folder.stage(stage).test_dir(role, test_stage)
            results[role] = write_test_outputs(
                out_dir, scores, gt, dur, self.classes, cfg.decoding.median_filter, model.grid, cfg.decoding.n_test_thresholds,
                model=(titles or {}).get(role),
            )
            log.info("%s %s: PSDS1 %.3f, PSDS2 %.3f (%d clips)", out_dir.parent.name, role, results[role].get("psds1", float("nan")), results[role].get("psds2", float("nan")), len(scores))
        return results

    def test_stage(self, name: str, cfg: RunConfig) -> dict[str, Any]:
        st = cfg.stages[name]
        source = st.init
        if source is None:  # the last training stage before this one, if any
            names = list(self.config.stages)
            earlier = [s for s in names[: names.index(name)] if self.config.stages[s].kind != "test"]
            source = earlier[-1] if earlier else None
        if source is None:
            models = {"student": build_model(cfg.models[st.model], self.classes, cfg.data.frontend)}
            models["student"].short_clips = cfg.data.short_clips
        else:
            models = {"student": self.stage_model(source)}
            teacher = self.stage_teacher(source)
            if teacher is not None:
                models["teacher"] = teacher
        results = self.test_models(name, True, models, cfg, self.model_titles(source, models))
        out = {"stage": name, "kind": "test", "source": source, "test": results}
        out.update({k: results["student"].get(k) for k in ("psds1", "psds2")})
        return out

    def evaluator(self, cfg: RunConfig, grid: FrameGrid) -> SetMetrics | None:
        """The metrics of the strong validation sets for a stage whose model's frames lie on ``grid``
        (None: the task's losses and weak F1 only)."""
        v = cfg.validation
        wanted = v.set_metrics()
        if not wanted:
            return None
        dm = self.data(cfg, grid)
        sets = [ValidationSet(name, dm.ground_truth(name), dm.durations(name)) for name in cfg.data.val_sets]
        median = v.median_filter if v.median_filter is not None else cfg.decoding.median_filter
        return SetMetrics(sets, self.classes, grid, wanted, median, v.n_thresholds, v.evaluator)

    # ------------------------------------------------------------------ training
    def build_task(self, st: StageConfig, cfg: RunConfig) -> SEDTask:
        model = self.initial_model(st, cfg)
        if st.kind == "distill":
            teacher = self.distillation_teacher(st)
            return DistillTask(model, teacher, cfg.task, cfg.optim, cfg.distill, self.evaluator(cfg, model.grid), cfg.validation)
        return SEDTask(model, cfg.task, cfg.optim, self.evaluator(cfg, model.grid), cfg.validation)

    def trainer(
        self, name: str, cfg: RunConfig, extra_callbacks: list[pl.Callback] | None = None, start: ResumePoint = ResumePoint(0, 0)
    ) -> tuple[pl.Trainer, ExportCheckpoints]:
        """The stage's Trainer: :class:`ExportCheckpoints` (best/last model), :class:`ResumeCheckpoint`
        (``lightning/last.ckpt``), TensorBoard and CSV logs that keep what was logged before ``start``."""
        t = cfg.trainer
        stage = self.folder.stage(name)
        monitor, mode = cfg.validation.resolved_monitor()
        export = ExportCheckpoints(stage.checkpoints_dir, monitor, mode, self.checkpoint_info(cfg, name))
        callbacks: list[pl.Callback] = [export, ResumeCheckpoint(stage.resume_checkpoint), EpochSummary(name), *(extra_callbacks or [])]
        # A resumed stage repeats the interrupted epoch: what the interrupted run logged from there on
        # gives way (TensorBoard's purge_step, the CSV rows of those epochs); everything before stays.
        loggers = [
            pl.loggers.TensorBoardLogger(save_dir=str(stage.path), name="tensorboard", version="", purge_step=start.steps),
            ContinuedCSVLogger(stage.path, "csv", "", keep_epochs_before=start.epochs),
        ]
        trainer = build_trainer(
            stage.path,
            accelerator=t.accelerator,
            devices=t.devices,
            num_nodes=t.num_nodes,
            strategy=t.strategy,
            precision=t.precision,
            callbacks=callbacks,
            loggers=loggers,
            max_epochs=t.max_epochs,
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
        )
        return trainer, export

    def train_stage(self, name: str, cfg: RunConfig, resume: bool, extra_callbacks: list[pl.Callback] | None = None) -> tuple[dict[str, Any], SEDModel]:
        st = cfg.stages[name]
        last = self.folder.stage(name).resume_checkpoint
        resumed = ResumePoint.read(last) if resume and last.exists() else None
        task = self.build_task(st, cfg)
        dm = self.data(cfg, task.model.grid)  # targets on the model's grid
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
            results = self.test_models(name, False, models, cfg, self.model_titles(name, models))
            metrics["test"] = results
            metrics.update({k: results["student"].get(k) for k in ("psds1", "psds2")})
        return metrics, task.model


def summary_rows(results: dict[str, dict[str, Any]]) -> list[tuple[str, str, float | None, float | None, float | None, float | None]]:
    """(stage, model, PSDS1, PSDS2, PSDS1 sed_scores_eval, PSDS2 sed_scores_eval) on the test set;
    the model by name (``ATST-C2F (student)``; its role for runs tested before names were kept)."""
    rows = []
    for stage, metrics in results.items():
        for role, m in (metrics.get("test") or {}).items():
            rows.append((stage, m.get("model", role), m.get("psds1"), m.get("psds2"), m.get("psds1_sed_scores_eval"), m.get("psds2_sed_scores_eval")))
    return rows
