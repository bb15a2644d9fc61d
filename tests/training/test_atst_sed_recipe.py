"""recipes/atst_sed (ATST-SED's two stages), recipes/atst_sed_mini through the CLI, and the official
selection / padding / precision options of recipes/dcase22."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from sed_scores_eval.base_modules.io import read_sed_scores

from atst_sed.cli.main import main
from atst_sed.data.corpus import SETS
from atst_sed.events import read_durations_tsv
from atst_sed.models.checkpoint import load_checkpoint
from atst_sed.models.crnn import ATSTSEDModel
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
    assert two.optim.rates == {"cnn": 2e-4, "rnn": 2e-3, "transformer": 2e-4} and two.optim.layer_decay == 0.5 and two.optim.decay == "cosine"
    # the model is ATST-SED's CRNN; stage 1 mixes its CNN branch only, stage 2 both, and warps the ATST branch
    assert one.models["frame"].architecture == "atst_sed" and one.models["frame"].overrides == {"drop_path": 0.0}
    assert (one.task.mixup.fields, two.task.mixup.fields, two.task.freq_warp.field) == (["cnn"], None, "atst")
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


def test_atst_sed_mini_trains_both_stages_through_the_cli(tiny_corpus, tmp_path, report_pdf):
    runs = tmp_path / "runs"
    assert main(["train", str(REPO / "recipes" / "atst_sed_mini"), f"data.root={tiny_corpus}", "--root-dir", str(runs), *FAST]) == 0
    run = runs / "atst_sed_mini"
    one = json.loads((run / "stage1" / "metrics.json").read_text())
    two = json.loads((run / "stage2" / "metrics.json").read_text())
    # both stages train ATST-SED's CRNN (its 64 ms grid end to end)
    model = load_checkpoint(run / "stage2" / "checkpoints" / "best.ckpt").model
    assert isinstance(model, ATSTSEDModel) and model.grid.frame_seconds == 0.064
    n_transformer = sum(p.numel() for p in model.atst.parameters())
    # stage 1 selects on the teacher's real-data losses (minimised); everything but the transformer trains
    assert one["monitor"] == "val/objective"
    v = one["val"]
    assert v["objective"] == pytest.approx((v["teacher/weak_loss"] + v["teacher/strong_real_val/loss"]) / 2, rel=1e-6)
    assert one["best_score"] == pytest.approx(v["objective"], rel=1e-6)
    assert one["n_trainable_parameters"] == one["n_parameters"] - n_transformer
    # stage 2 continues stage 1 with every layer trainable (not the pretraining mask token) and selects on
    # the teacher's synthetic PSDS
    v = two["val"]
    assert v["objective"] == pytest.approx(v["teacher/synth_val/psds1"] + v["teacher/synth_val/psds2"], rel=1e-6)
    assert two["n_trainable_parameters"] == two["n_parameters"] - model.atst.mask_embed.numel()
    for stage in ("stage1", "stage2"):
        assert (run / stage / "checkpoints" / "best_teacher.ckpt").is_file()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["model"]["family"] == "ATST-SED" and manifest["model"]["crnn"]["n_rnn_cell"] == 32
    assert manifest["frontend"]["clamp_db_min"] == -50.0  # the ATST branch's log-mel
    # data.short_clips: pad — the checkpoint keeps the policy (detect does the same), and a short test
    # clip is scored over all 10 s, as the official test path scores it
    assert model.short_clips == "pad"
    durations = read_durations_tsv(tiny_corpus / SETS["test"].durations)
    short = next(Path(f).stem for f, d in durations.items() if d < 10.0)  # 9.9 s: 154 frames of 64 ms alone
    assert len(pd.read_csv(run / "test" / "student" / "scores" / f"{short}.tsv", sep="\t")) == 156
    for role in ("student", "teacher"):
        metrics = json.loads((run / "test" / role / "metrics.json").read_text())
        assert metrics["psds1"] is not None and (run / "test" / role / "scores").is_dir()
    assert main(["report", str(run)]) == 0
    # the run packages for DCASE 2023+: detect with its teacher on an "evaluation set" → 64 ms score files
    eval_audio = tiny_corpus / "audio/validation/validation_16k"
    assert main(["detect", str(eval_audio), "--checkpoint", str(run / "stage2/checkpoints/best_teacher.ckpt"),
                 "-o", str(run / "eval/events.csv"), "--scores-dir", str(run / "eval/scores")]) == 0
    runs = [shutil.copytree(run, tmp_path / f"run{k}") for k in (1, 2, 3)]
    meta = tmp_path / "META.yaml"
    meta.write_text(yaml.safe_dump({
        "submission": {"name": "ATST-SED mini", "abbreviation": "ATSTSEDmini", "authors": [
            {"lastname": "Doe", "firstname": "Jane", "email": "jane@uni.org", "corresponding": True,
             "affiliation": {"abbreviation": "UNI", "institute": "University", "location": "City"}}]},
        "system": {"description": {"machine_learning_method": "CRNN + transformer"}, "source_code": "https://example.org/atst-sed"}}))
    out = tmp_path / "Doe_UNI_task4.zip"
    assert main(["package", "--format", "dcase2023", "--system", "Doe_UNI_task4_1", "--runs", *map(str, runs),
                 "--report", str(report_pdf), "--meta", str(meta), "-o", str(out)]) == 0
    assert main(["package", "validate", str(out), "--format", "dcase2023"]) == 0
    scores = read_sed_scores(str(run / "eval" / "scores"))
    full = [frames for clip, frames in scores.items() if durations[f"{clip}.wav"] == 10.0]
    assert len(full) >= 10 and {len(frames) for frames in full} == {156}
    assert {round(float(frames["offset"].iloc[-1]), 3) for frames in full} == {9.984}
