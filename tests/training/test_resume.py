"""``atst-sed train --resume``: a run killed with SIGKILL in the middle of an epoch continues from the
resume checkpoint of its last finished epoch and ends exactly where the uninterrupted run ends
(weights, validation and test metrics, CSV and TensorBoard logs). Resume files that are corrupt or
carry pickled code are refused in one line; a run that fails before training leaves no folder."""

from __future__ import annotations

import csv
import json
import os
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from atst_sed.cli.main import main
from atst_sed.config import read_yaml, to_dict
from atst_sed.models.checkpoint import load_checkpoint
from atst_sed.training.callbacks import ResumePoint
from atst_sed.runfolder import RunFolder
from atst_sed.training.run_config import load_recipe

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 300
STEPS_PER_EPOCH, EPOCHS, KILL_AT_STEP = 3, 4, 11  # killed after the 2nd of 3 steps of the 4th epoch

# recipes/mini's frame model and optimiser, with the randomness a resume must restore: mixup draws,
# DropPath, random crops, two DataLoader workers. Validation after every 2nd epoch, so the best model
# (epoch 2) is older than the last finished epoch (3). Deterministic algorithms, one thread.
RECIPE = {
    "models": {"frame": {"encoder": "frame_tiny", "overrides": {"heads": 4, "drop_path": 0.1}}},
    "data": {"batch_size": 4, "proportions": {"strong": 0.5, "weak": 0.5, "unlabeled": 0.0}, "epoch_length": STEPS_PER_EPOCH,
             "clip_seconds": 4.0, "val_batch_size": 12, "num_workers": 2},
    "task": {"trainable_blocks": -1, "mixup": {"prob": 0.5}},
    "optim": {"name": "adamw", "lr": 0.01, "warmup_epochs": 1.0},
    "trainer": {"max_epochs": EPOCHS, "check_val_every_n_epoch": 2, "accelerator": "cpu", "log_every_n_steps": 1,
                "enable_progress_bar": False, "deterministic": True},
    "validation": {"evaluator": "sed_scores_eval", "median_filter": None},
    "decoding": {"median_filter": 21, "n_test_thresholds": 5},
    "stages": {"finetune_frame": {"kind": "finetune", "model": "frame", "test": False}, "test": {"kind": "test"}},
}

# `atst-sed train` that kills itself (SIGKILL: no clean-up, no flush) right after optimizer step N.
KILLER = '''\
import os, signal, sys
from atst_sed.cli.main import main
from atst_sed.training.finetune import SEDTask

def on_train_batch_end(self, outputs, batch, batch_idx):
    if self.global_step == int(os.environ["KILL_AT_STEP"]):
        os.kill(os.getpid(), signal.SIGKILL)

SEDTask.on_train_batch_end = on_train_batch_end
sys.exit(main())
'''


def start(args: list[str], cwd: Path, script: str | None = None, env: dict | None = None) -> subprocess.Popen:
    """``atst-sed ARGS`` (or ``python SCRIPT ARGS``) as its own process, one thread."""
    command = [sys.executable, script] if script else [sys.executable, "-m", "atst_sed.cli.main"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore", **(env or {})}
    return subprocess.Popen([*command, *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen) -> tuple[int, str]:
    """(exit code, stderr) of a process started with :func:`start`."""
    try:
        _, err = process.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        _, err = process.communicate()
    return process.returncode, err[-3000:]


def csv_rows(run: Path) -> list[dict[str, str]]:
    with open(run / "finetune_frame" / "csv" / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def tensorboard_scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "finetune_frame" / "tensorboard"))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_a_run_killed_mid_epoch_resumes_to_the_uninterrupted_result(tiny_corpus, tmp_path):
    recipe = tmp_path / "resume"
    recipe.mkdir()
    (recipe / "recipe.yaml").write_text(yaml.safe_dump(RECIPE, sort_keys=False))
    (tmp_path / "killer.py").write_text(KILLER)
    common = ["train", str(recipe), f"data.root={tiny_corpus}"]

    straight = start([*common, "name=straight"], tmp_path)
    killed = start([*common, "name=resumed"], tmp_path, "killer.py", {"KILL_AT_STEP": str(KILL_AT_STEP)})
    code, err = finish(killed)
    assert code == -signal.SIGKILL, err
    a, b = tmp_path / "runs" / "straight", tmp_path / "runs" / "resumed"
    # the resume checkpoint holds the last finished epoch, not the best one; the stage had not finished
    assert ResumePoint.read(RunFolder(b).stage("finetune_frame").resume_checkpoint) == ResumePoint(epochs=3, steps=3 * STEPS_PER_EPOCH)
    assert not (b / "finetune_frame" / "metrics.json").exists()
    assert {int(r["epoch"]) for r in csv_rows(b) if r["train/loss_epoch"]} == {0, 1, 2}, "finished epochs' logs not on disk at the kill"
    assert {int(r["epoch"]) for r in csv_rows(b) if r["val/loss"]} == {1}

    assert main([*common, "name=resumed", "--root-dir", str(tmp_path / "runs")]) == 2  # an existing run needs --resume
    code, err = finish(start([*common, "name=resumed", "--resume"], tmp_path))
    assert code == 0, err
    code, err = finish(straight)
    assert code == 0, err

    # ---- the same weights: the last and the best model
    for name in ("last", "best"):
        wa = load_checkpoint(a / "finetune_frame" / "checkpoints" / f"{name}.ckpt").model.state_dict()
        wb = load_checkpoint(b / "finetune_frame" / "checkpoints" / f"{name}.ckpt").model.state_dict()
        for key in wa:
            torch.testing.assert_close(wb[key], wa[key], rtol=1e-6, atol=1e-7, msg=f"{name}.ckpt {key}")
    # ---- the same validation and test metrics
    ma, mb = (json.loads((run / "finetune_frame" / "metrics.json").read_text()) for run in (a, b))
    assert mb["global_step"] == ma["global_step"] == EPOCHS * STEPS_PER_EPOCH
    assert mb["best_epoch"] == ma["best_epoch"] and mb["val"] == pytest.approx(ma["val"], rel=1e-6, abs=1e-9)
    ta, tb = (json.loads((run / "test" / "student" / "metrics.json").read_text()) for run in (a, b))
    assert tb == ta
    raw_a, raw_b = (sorted((run / "test" / "student" / "scores_raw").glob("*.tsv")) for run in (a, b))
    assert [p.name for p in raw_b] == [p.name for p in raw_a] and len(raw_a) == 12
    for pa, pb in zip(raw_a, raw_b):  # the test-set frame probabilities themselves
        np.testing.assert_allclose(np.loadtxt(pb, skiprows=1), np.loadtxt(pa, skiprows=1), rtol=1e-6, atol=1e-7)
    # ---- the logs: the earlier epochs kept, the interrupted one once, the same values
    ra, rb = csv_rows(a), csv_rows(b)
    assert [(r["epoch"], r["step"]) for r in rb] == [(r["epoch"], r["step"]) for r in ra]
    for row_a, row_b in zip(ra, rb):
        assert {k: float(v) for k, v in row_b.items() if v} == pytest.approx({k: float(v) for k, v in row_a.items() if v}, rel=1e-6)
    sa, sb = tensorboard_scalars(a), tensorboard_scalars(b)
    assert sorted(sb) == sorted(sa) and [s for s, _ in sb["train/loss_step"]] == list(range(EPOCHS * STEPS_PER_EPOCH))
    for tag in sa:
        assert [s for s, _ in sb[tag]] == [s for s, _ in sa[tag]], tag
        assert [v for _, v in sb[tag]] == pytest.approx([v for _, v in sa[tag]], rel=1e-6), tag


def test_the_resume_checkpoint_is_the_last_epoch_and_best_ckpt_the_only_best_model(tiny_corpus, tmp_path):
    # validated after the 2nd of 3 epochs only: the best model is older than the last epoch
    over = [f"data.root={tiny_corpus}", "data.batch_size=4", "data.num_workers=0", "data.epoch_length=2", "data.clip_seconds=4.0",
            "data.val_batch_size=12", "trainer.max_epochs=3", "trainer.check_val_every_n_epoch=2", "validation.metrics=loss",
            "stages.finetune_frame.test=false"]
    assert main(["train", str(REPO / "recipes" / "mini_probe"), *over, "--root-dir", str(tmp_path)]) == 0
    stage = tmp_path / "mini_probe" / "finetune_frame"
    metrics = json.loads((stage / "metrics.json").read_text())
    assert metrics["best_epoch"] == 1 and metrics["global_step"] == 6
    resume = RunFolder(tmp_path / "mini_probe").stage("finetune_frame").resume_checkpoint
    assert ResumePoint.read(resume) == ResumePoint(epochs=3, steps=6)  # not the best epoch's
    assert sorted(p.name for p in (stage / "lightning").iterdir()) == ["last.ckpt"]  # no second best-model tracker
    best = load_checkpoint(stage / "checkpoints" / "best.ckpt")
    assert best.meta["epochs"] == 2 and best.meta["monitor"] == metrics["monitor"] == "val/loss"
    assert best.meta["score"] == pytest.approx(metrics["best_score"]) == pytest.approx(metrics["val"]["loss"])


@pytest.mark.parametrize("kind", ["truncated", "pickle"])
def test_a_corrupt_or_pickle_carrying_resume_checkpoint_is_refused_in_one_line(kind, bad_checkpoints, tiny_corpus, tmp_path, capsys):
    content, marker = bad_checkpoints[kind], bad_checkpoints["marker"]
    with pytest.raises(pickle.UnpicklingError if kind == "pickle" else RuntimeError):  # what torch itself says
        torch.load(_write(tmp_path / "probe.ckpt", content), weights_only=True)
    assert not marker.exists()
    cfg = load_recipe(REPO / "recipes" / "mini_probe", [f"data.root={tiny_corpus}"])
    run = tmp_path / "runs" / "mini_probe"
    (run / "finetune_frame" / "lightning").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    bad = _write(RunFolder(run).stage("finetune_frame").resume_checkpoint, content)
    assert main(["train", str(REPO / "recipes" / "mini_probe"), f"data.root={tiny_corpus}", "--resume", "--root-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"atst-sed train: error: {bad}: "), err
    assert ("pickled Python object" in err) if kind == "pickle" else ("truncated or corrupt" in err)
    assert not marker.exists(), "the pickled payload ran"
    assert read_yaml(run / "config.yaml")["name"] == "mini_probe" and bad.read_bytes() == content  # nothing lost


def test_a_run_that_fails_before_training_leaves_no_folder_and_the_fixed_command_runs(bad_checkpoints, tiny_corpus, tmp_path, capsys):
    marker = bad_checkpoints["marker"]
    encoder = _write(tmp_path / "encoder.ckpt", bad_checkpoints["pickle"])
    recipe = tmp_path / "probe"
    recipe.mkdir()
    (recipe / "recipe.yaml").write_text(yaml.safe_dump({
        "models": {"frame": {"encoder": "frame_tiny", "overrides": {"heads": 4}}},
        "data": {"batch_size": 4, "val_batch_size": 12, "num_workers": 0, "clip_seconds": 4.0},
        "decoding": {"n_test_thresholds": 3},
        "stages": {"untrained": {"kind": "test", "model": "frame"}}}))
    args = ["train", str(recipe), f"data.root={tiny_corpus}", "--root-dir", str(tmp_path / "runs")]
    assert main([*args, f"models.frame.encoder={encoder}"]) == 2
    assert "refusing to load" in capsys.readouterr().err and not marker.exists()
    assert not (tmp_path / "runs" / "probe").exists()
    # a folder that holds no results (e.g. a start killed before its first step) is reused
    (tmp_path / "runs" / "probe").mkdir(parents=True)
    (tmp_path / "runs" / "probe" / "config.yaml").write_text("name: probe\n")
    assert main(args) == 0
    assert (tmp_path / "runs" / "probe" / "untrained" / "student" / "metrics.json").is_file()


def _write(path: Path, content: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return path
