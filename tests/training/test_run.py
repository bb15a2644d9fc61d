"""Whole runs on the tiny corpus: every stage through the CLI, the run folder, checkpoints, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch

from atst_sed.cli.main import main
from atst_sed.config import read_yaml, to_dict
from atst_sed.evaluation.runs import collect_test_results
from atst_sed.frontend import FrontendConfig
from atst_sed.labels import DESED_CLASSES, ClassMap, events_to_frames
from atst_sed.models.checkpoint import load_checkpoint, save_checkpoint
from atst_sed.models.encoder import ATSTEncoder
from atst_sed.models.factory import build_model
from atst_sed.timegrid import FrameGrid
from atst_sed.training.pretrain_config import load_pretrain_config
from atst_sed.training.run import Run
from atst_sed.training.run_config import RunConfig, load_recipe
from mini_settings import MINI_FAST

REPO = Path(__file__).resolve().parents[2]
FAST = MINI_FAST


def test_default_yaml_documents_exactly_the_dataclass_defaults():
    assert read_yaml(REPO / "configs" / "finetune" / "default.yaml") == to_dict(RunConfig())


def test_the_mini_pretraining_exports_the_frame_architecture_of_the_mini_recipe():
    # `make demo` starts recipes/mini's ATST-Frame from configs/pretrain/mini.yaml's teacher encoder
    pretrained = load_pretrain_config("mini").model.encoder_config()
    recipe = load_recipe(REPO / "recipes" / "mini")
    frame = build_model(recipe.models["frame"], list(DESED_CLASSES)).encoder.config
    assert {k: v for k, v in pretrained.to_dict().items() if k != "drop_path"} == {
        k: v for k, v in frame.to_dict().items() if k != "drop_path"}


def test_linear_evaluation_recipe_trains_the_head_of_a_frozen_pretrained_encoder(tiny_corpus, tmp_path):
    # recipes/mini_probe: an `atst-sed pretrain` export (here a random one) stays bit-exact
    encoder = ATSTEncoder(load_pretrain_config("mini").model.encoder_config())
    save_checkpoint(tmp_path / "teacher_encoder.ckpt", encoder, frontend=FrontendConfig())
    code = main(["train", str(REPO / "recipes" / "mini_probe"), f"data.root={tiny_corpus}", "--root-dir", str(tmp_path),
                 f"models.frame.encoder={tmp_path / 'teacher_encoder.ckpt'}", *FAST])
    assert code == 0
    metrics = json.loads((tmp_path / "mini_probe" / "finetune_frame" / "metrics.json").read_text())
    assert metrics["monitor"] == "val/loss" and metrics["n_trainable_parameters"] == 2 * (64 * 10 + 10)
    trained = load_checkpoint(tmp_path / "mini_probe" / "finetune_frame" / "checkpoints" / "best.ckpt").model
    for key, value in encoder.state_dict().items():
        assert torch.equal(trained.encoder.state_dict()[key], value), key
    assert (tmp_path / "mini_probe" / "test" / "student" / "metrics.json").is_file()


def test_every_stage_of_the_mini_recipe_runs_and_the_run_folder_describes_itself(tiny_corpus, mini_run):
    # the session's recipes/mini run; 3 of the 12 weak clips validate (val/weak_f1)
    run = mini_run
    stages = ["untrained", "finetune_clip", "finetune_frame", "distill_c2f", "test"]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stages"] == stages
    assert manifest["classes"] == list(DESED_CLASSES)
    assert manifest["dataset"]["fingerprint"].startswith("sha256:") and manifest["dataset"]["missing_files"] == 0
    assert manifest["seed"] == 42 and manifest["versions"]["torch"] == torch.__version__.split("+")[0]
    assert manifest["model"]["encoder"]["variant"] == "frame"
    assert 0 < manifest["model"]["n_trainable_parameters"] <= manifest["model"]["n_parameters"]
    assert read_yaml(run / "config.yaml")["data"]["root"] == str(tiny_corpus)
    for stage in stages[1:4]:
        sdir = run / stage
        for f in ("checkpoints/best.ckpt", "checkpoints/last.ckpt", "lightning/last.ckpt", "config.yaml", "metrics.json", "csv/metrics.csv"):
            assert (sdir / f).is_file(), f"{stage}/{f}"
        assert list((sdir / "tensorboard").glob("events.out.tfevents.*"))
        metrics = json.loads((sdir / "metrics.json").read_text())
        assert {"psds1", "psds2", "loss", "weak_f1"} <= set(metrics["val"])
        ckpt = load_checkpoint(sdir / "checkpoints" / "best.ckpt")
        assert ckpt.kind == "sed" and ckpt.classes == list(DESED_CLASSES)
        assert ckpt.decoding == {"thresholds": [0.5] * 10, "median_filter": [21] * 10}  # recipes/mini
        assert ckpt.encoder.config.variant == ("clip" if stage == "finetune_clip" else "frame")
        assert ckpt.meta["stage"] == stage
        raw = torch.load(sdir / "checkpoints" / "best.ckpt", weights_only=True)
        assert raw["frontends"]["atst"]["n_mels"] == 64
    # the test stage: the distilled student and its ATST-Clip teacher, each in its own folder
    for role in ("student", "teacher"):
        out = run / "test" / role
        assert len(list((out / "operating_points").glob("predictions_th_*.tsv"))) == 50
        assert (out / "operating_points" / "predictions_th_0.01.tsv").is_file()
        assert len(list((out / "scores").glob("*.tsv"))) == 12 and len(list((out / "scores_raw").glob("*.tsv"))) == 12
        assert list((out / "plots").glob("*.png"))
        m = json.loads((out / "metrics.json").read_text())
        assert 0.0 <= m["psds1"] <= 1.0 and 0.0 <= m["psds2"] <= 1.0 and m["n_operating_points"] == 50
        assert {"psds1_sed_scores_eval", "psds1_sed_scores_eval_raw", "psds2_sed_scores_eval_raw"} <= set(m)
    teacher = load_checkpoint(run / "finetune_clip" / "checkpoints" / "best.ckpt").model
    student = load_checkpoint(run / "distill_c2f" / "checkpoints" / "best.ckpt").model
    assert teacher.encoder.config.variant == "clip" and student.encoder.config.variant == "frame"
    assert (run / "untrained" / "student" / "metrics.json").is_file()
    # `atst-sed report` reads the run folder: one row per tested (stage, model), values as written
    _, results = collect_test_results([run])
    assert list(zip(results["stage"], results["model"])) == [("untrained", "student"), ("test", "student"), ("test", "teacher")]
    written = json.loads((run / "test" / "teacher" / "metrics.json").read_text())
    assert results["psds2"].iloc[2] == pytest.approx(written["psds2"])
    assert results["event_f1_macro"].iloc[2] == pytest.approx(written["event_f1"]["macro"])


def test_a_run_folder_with_results_needs_resume(tiny_corpus, tmp_path, capsys):
    (tmp_path / "mini" / "untrained").mkdir(parents=True)
    (tmp_path / "mini" / "config.yaml").write_text("name: mini\n")
    (tmp_path / "mini" / "untrained" / "metrics.json").write_text("{}")
    assert main(["train", str(REPO / "recipes" / "mini"), "--root-dir", str(tmp_path)]) == 2
    assert "--resume" in capsys.readouterr().err


class _StopAfterFirstEpoch(pl.Callback):
    def on_train_epoch_end(self, trainer, module):
        trainer.should_stop = True


def test_interrupted_stage_resumes_to_the_same_weights(tiny_corpus, tmp_path):
    over = [*FAST, f"data.root={tiny_corpus}", "trainer.max_epochs=3", "stages.finetune_frame.test=false",
            "task.mixup.prob=0.5", "models.frame.overrides.drop_path=0.1"]
    cfg = load_recipe(REPO / "recipes" / "mini", over)
    cfg.stages = {"finetune_frame": cfg.stages["finetune_frame"]}

    straight = Run(cfg, tmp_path / "straight")
    straight.run()

    interrupted = Run(cfg, tmp_path / "interrupted")
    interrupted.dir.mkdir(parents=True)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    interrupted.train_stage("finetune_frame", cfg, resume=False, extra_callbacks=[_StopAfterFirstEpoch()])
    partial = load_checkpoint(interrupted.dir / "finetune_frame" / "checkpoints" / "last.ckpt")
    assert partial.meta["epochs"] == 1
    torch.manual_seed(1234)  # a new process would start from other random states
    Run(cfg, tmp_path / "interrupted").run(resume=True)

    a = load_checkpoint(straight.dir / "finetune_frame" / "checkpoints" / "last.ckpt").model.state_dict()
    b = load_checkpoint(interrupted.dir / "finetune_frame" / "checkpoints" / "last.ckpt").model.state_dict()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key
    assert not torch.allclose(a["head.linear.weight"], partial.model.state_dict()["head.linear.weight"])
    ma = json.loads((straight.dir / "finetune_frame" / "metrics.json").read_text())
    mb = json.loads((interrupted.dir / "finetune_frame" / "metrics.json").read_text())
    assert ma["global_step"] == mb["global_step"] == 6
    assert ma["best_epoch"] == mb["best_epoch"] and ma["val"] == pytest.approx(mb["val"])


def test_a_model_on_a_64ms_grid_trains_and_tests_on_its_own_grid(tiny_corpus, tmp_path):
    """Label encoding, training and the test stage read the frame grid from the model: a frontend hop of
    256 samples (and a 156-token encoder) gives 64 ms frames, and targets, scores and events follow."""
    grid = FrameGrid(256, 4)
    over = [*FAST, f"data.root={tiny_corpus}", "data.frontend.hop_length=256", "models.frame.overrides.max_tokens=156"]
    cfg = load_recipe(REPO / "recipes" / "mini", over)
    cfg.stages = {"finetune_frame": cfg.stages["finetune_frame"], "test": cfg.stages["test"]}
    run = Run(cfg, tmp_path / "run")
    run.run()
    model = load_checkpoint(run.dir / "finetune_frame" / "checkpoints" / "best.ckpt").model
    assert model.grid == grid and model.spec.window_samples == 156 * 1024
    # training targets: 156 frames of 64 ms per 10 s clip, the labels encoded on that grid
    dataset = run.data(cfg, model.grid).dataset("synth_val")
    for index in range(3):
        events = dataset.events[dataset.events["filename"] == dataset.filenames[index]]
        want = events_to_frames(events, ClassMap(DESED_CLASSES), 156, grid=grid)
        np.testing.assert_array_equal(dataset[index]["strong"].numpy(), want)
    # test outputs: score files on the 64 ms grid, events at multiples of 64 ms
    test_set = run.data(cfg, model.grid).dataset(cfg.data.test_set)
    lengths = dict(zip(test_set.filenames, test_set.num_samples))
    out = run.dir / "test" / "student"
    for path in sorted((out / "scores").glob("*.tsv")):
        table = pd.read_csv(path, sep="\t")
        assert len(table) == grid.n_frames(int(lengths[path.stem + ".wav"]))
        np.testing.assert_allclose(table["onset"], np.arange(len(table)) * 0.064, atol=1e-9)
    tables = [pd.read_csv(p, sep="\t").dropna() for p in (out / "operating_points").glob("*.tsv")]
    events = pd.concat([t for t in tables if len(t)])
    assert len(events) and np.allclose(events[["onset", "offset"]] / 0.064, np.round(events[["onset", "offset"]] / 0.064), atol=1e-6)
    assert json.loads((out / "metrics.json").read_text())["n_clips"] == 12
