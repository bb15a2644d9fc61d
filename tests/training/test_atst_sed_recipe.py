"""recipes/atst_sed (ATST-SED's two stages), recipes/atst_sed_mini through the CLI, and the official
selection / padding / precision options of recipes/dcase22."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from atst_sed.cli.main import main
from atst_sed.data.corpus import SETS
from atst_sed.events import read_durations_tsv
from atst_sed.models.checkpoint import load_checkpoint
from atst_sed.training.run_config import load_recipe, stage_config

REPO = Path(__file__).resolve().parents[2]
ENCODER = ["models.frame.encoder=frame_tiny"]
FAST = ["data.num_workers=0", "data.epoch_length=2", "data.val_batch_size=12", "trainer.max_epochs=1",
        "trainer.check_val_every_n_epoch=1", "trainer.log_every_n_steps=1"]


def test_atst_sed_recipe_holds_both_official_stages():
    cfg = load_recipe(REPO / "recipes" / "atst_sed", ENCODER)
    assert list(cfg.stages) == ["stage1", "stage2", "test"] and cfg.stages["stage2"].init == "stage1"
    one, two = stage_config(cfg, "stage1"), stage_config(cfg, "stage2")
    assert one.data.batch_sizes == {"synth_train": 12, "strong_real_train": 12, "weak": 24, "unlabeled": 48}
    assert two.data.batch_sizes == {"synth_train": 24, "strong_real_train": 24, "weak": 48, "unlabeled": 48}
    assert one.data.val_sets == ["synth_val", "strong_real_val"] and one.data.short_clips == "pad"
    # stage 1: transformer frozen, Adam 1e-3 after a 50-epoch exponential warm-up, mean teacher (max 2), 200 epochs
    assert (one.task.trainable_blocks, one.optim.name, one.optim.lr, one.optim.warmup, one.optim.decay) == (0, "adam", 1e-3, "exponential", "constant")
    assert (one.task.consistency.max_weight, one.task.consistency.rampup_epochs, one.trainer.max_epochs) == (2.0, 50.0, 200)
    assert one.task.mixup.prob == 0.5 and one.task.mixup.mix_unlabeled and not one.task.consistency.ict
    assert one.validation.resolved_monitor() == ("val/objective", "min")
    # stage 2: every layer, per-part rates with layer scale 0.5, ICT + mean teacher (max 70, 10 epochs), warp, 250 epochs
    c = two.task.consistency
    assert (two.task.trainable_blocks, two.task.weak_weight, two.task.freq_warp.prob) == (-1, 0.5, 0.5)
    assert (c.max_weight, c.rampup_epochs, c.ict, c.teacher_input, c.clip_weight) == (70.0, 10.0, True, "clean", 0.5)
    assert two.optim.rates == {"head": 2e-3, "encoder": 2e-4} and two.optim.layer_decay == 0.5 and two.optim.decay == "cosine"
    assert two.optim.final_lr / two.optim.lr == pytest.approx(0.1) and two.trainer.max_epochs == 250
    assert two.validation.resolved_monitor() == ("val/objective", "max")
    # a stage's objective, rates and batch sizes replace the run's whole (no terms of stage 1 left over)
    assert two.validation.objective == {"teacher/synth_val/psds1": 1.0, "teacher/synth_val/psds2": 1.0}
    cli = load_recipe(REPO / "recipes" / "atst_sed", [*ENCODER, "validation.objective={teacher/weak_loss: 1.0}", "data.batch_sizes={weak: 4}"])
    assert cli.validation.objective == {"teacher/weak_loss": 1.0} and cli.data.batch_sizes == {"weak": 4}
    assert list(cfg.decoding.median_filter) == [6, 20, 7, 4, 7, 6, 6, 6, 6, 6] and one.decoding.median_filter == 7


def test_dcase22_selects_checkpoints_pads_and_offers_fp32_as_audiossl():
    cfg = load_recipe(REPO / "recipes" / "dcase22", ["models.frame.encoder=frame_tiny", "models.clip.encoder=clip_tiny"])
    assert cfg.validation.objective == {"weak_f1": 1.0, "synth_val/frame_intersection_f1": 1.0}
    assert cfg.validation.resolved_monitor() == ("val/objective", "max") and cfg.validation.median_filter == 3
    assert "frame_intersection_f1" in cfg.validation.set_metrics() and cfg.data.weak_val_fraction == 0.1
    assert cfg.data.short_clips == "pad" and cfg.trainer.precision is None  # bf16-mixed on a GPU
    masked = load_recipe(REPO / "recipes" / "dcase22", ["models.frame.encoder=frame_tiny", "models.clip.encoder=clip_tiny",
                                                         "data.short_clips=mask", "trainer.precision=32-true"])
    assert masked.data.short_clips == "mask" and masked.trainer.precision == "32-true"


def test_atst_sed_mini_trains_both_stages_through_the_cli(tiny_corpus, tmp_path):
    runs = tmp_path / "runs"
    assert main(["train", str(REPO / "recipes" / "atst_sed_mini"), f"data.root={tiny_corpus}", "--root-dir", str(runs), *FAST]) == 0
    run = runs / "atst_sed_mini"
    one = json.loads((run / "stage1" / "metrics.json").read_text())
    two = json.loads((run / "stage2" / "metrics.json").read_text())
    # stage 1 selects on the teacher's real-data losses (minimised); only the head trains
    assert one["monitor"] == "val/objective"
    v = one["val"]
    assert v["objective"] == pytest.approx((v["teacher/weak_loss"] + v["teacher/strong_real_val/loss"]) / 2, rel=1e-6)
    assert one["best_score"] == pytest.approx(v["objective"], rel=1e-6)
    assert one["n_trainable_parameters"] < one["n_parameters"] / 10
    # stage 2 continues stage 1 with every layer trainable and selects on the teacher's synthetic PSDS
    v = two["val"]
    assert v["objective"] == pytest.approx(v["teacher/synth_val/psds1"] + v["teacher/synth_val/psds2"], rel=1e-6)
    assert two["n_trainable_parameters"] > 0.99 * two["n_parameters"]
    for stage in ("stage1", "stage2"):
        assert (run / stage / "checkpoints" / "best_teacher.ckpt").is_file()
    # data.short_clips: pad — the checkpoint keeps the policy (detect does the same), and a short test
    # clip is scored over all 10 s, as the official test path scores it
    assert load_checkpoint(run / "stage2" / "checkpoints" / "best.ckpt").model.short_clips == "pad"
    durations = read_durations_tsv(tiny_corpus / SETS["test"].durations)
    short = next(Path(f).stem for f, d in durations.items() if d < 10.0)  # 9.9 s: 247 frames alone
    assert len(pd.read_csv(run / "test" / "student" / "scores" / f"{short}.tsv", sep="\t")) == 250
    for role in ("student", "teacher"):
        metrics = json.loads((run / "test" / role / "metrics.json").read_text())
        assert metrics["psds1"] is not None and (run / "test" / role / "scores").is_dir()
    assert main(["report", str(run)]) == 0
