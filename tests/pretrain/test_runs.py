"""Real Lightning runs on CPU: both methods, CLI, export, resume, official-layout initialisation."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ProgressBar

from atst_sed.cli.main import main
from atst_sed.errors import InputError
from atst_sed.models.checkpoint import load_checkpoint
from atst_sed.training.callbacks import ResumePoint, StepLog, StepProgressBar
from atst_sed.training.pretrain import PretrainModule
from atst_sed.runfolder import RunFolder
from atst_sed.training.pretrain_config import load_pretrain_config
from atst_sed.training.pretrain_run import build_trainer, init_from_checkpoint, run_pretraining
from atst_sed.training.schedules import cosine_ramp, cosine_schedule
from console_output import LIGHTNING_NOISE, run_redirected

REPO = Path(__file__).resolve().parents[2]

FAST = ["data.batch_size=4", "data.num_workers=0", "trainer.log_every_n_steps=1", "trainer.enable_progress_bar=false",
        "model.projector_hidden=64", "model.projector_out=32", "optim.warmup_steps=2", "optim.lr=0.05"]


def read_metrics(run: Path, version: int = 0) -> list[dict[str, str]]:
    with open(run / "logs" / "csv" / f"version_{version}" / "metrics.csv") as f:
        return list(csv.DictReader(f))


class EmaProbe(pl.Callback):
    """Snapshots around the module's EMA update (callbacks run before the module's hook)."""

    def __init__(self):
        self.records = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.records.append({
            "step": trainer.global_step - 1,
            "teacher_before": module.model.teacher.encoder.blocks[0].mlp.fc1.weight.detach().clone(),
            "student_after": module.model.student.encoder.blocks[0].mlp.fc1.weight.detach().clone(),
        })

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if self.records:
            self.records[-1]["teacher_after"] = module.model.teacher.encoder.blocks[0].mlp.fc1.weight.detach().clone()


def test_frame_run_schedules_ema_export_and_resume(wav_dir, tmp_path):
    run = tmp_path / "frame"
    config = load_pretrain_config("mini", [f"data.source={wav_dir}", f"output_dir={run}", "optim.max_steps=3", *FAST])
    probe = EmaProbe()
    out = run_pretraining(config, callbacks=[probe])
    loaded = load_checkpoint(out)
    assert loaded.kind == "encoder" and loaded.encoder.config.variant == "frame"
    assert loaded.meta["global_step"] == 3 and loaded.meta["method"] == "frame"
    assert (run / "config.yaml").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["dataset"]["n_files"] == 8 and manifest["stages"] == ["pretrain"]
    assert manifest["model"]["encoder"]["width"] == 64
    # the Lightning checkpoint keeps the official layout: its teacher is the exported encoder
    from_lightning = load_checkpoint(run / "checkpoints" / "last.ckpt")
    for k, v in loaded.encoder.state_dict().items():
        assert torch.equal(v, from_lightning.encoder.state_dict()[k])
    # per-step lr / wd / ema logged from the schedules (peak = 0.05 · 4 / 256)
    rows = read_metrics(run)
    lr = cosine_schedule(0.05 * 4 / 256, 1e-6, 3, 2)
    wd = cosine_ramp(0.04, 0.4, 3)
    train_rows = [r for r in rows if r.get("train/lr")]
    assert len(train_rows) == 3
    for r in train_rows:
        k = int(r["step"])
        assert float(r["train/lr"]) == pytest.approx(lr[k], rel=1e-6, abs=1e-12)
        assert float(r["train/wd"]) == pytest.approx(wd[k], rel=1e-6)
        assert float(r["std/teacher"]) > 0 and float(r["std/student"]) > 0
        assert np.isfinite(float(r["train/loss"]))
    # EMA after optimizer step k uses m_k
    ema = cosine_ramp(0.99, 1.0, 3)
    checked = 0
    for rec in probe.records:
        if "teacher_after" in rec:
            m = ema[rec["step"]]
            torch.testing.assert_close(rec["teacher_after"], m * rec["teacher_before"] + (1 - m) * rec["student_after"])
            checked += 1
    assert checked == 2
    # resume to 4 steps from last.ckpt (a new CSV version; the first one is kept)
    with pytest.raises(Exception, match="--resume"):
        run_pretraining(config)
    config.optim.max_steps = 4
    out = run_pretraining(config, resume=True)
    assert load_checkpoint(out).meta["global_step"] == 4
    assert len([r for r in read_metrics(run, 0) if r.get("train/lr")]) == 3 and [int(r["step"]) for r in read_metrics(run, 1) if r.get("train/lr")] == [3]


def test_the_resume_checkpoint_holds_the_last_step_not_the_last_interval(wav_dir, tmp_path):
    run = tmp_path / "frame"
    config = load_pretrain_config("mini", [f"data.source={wav_dir}", f"output_dir={run}", "optim.max_steps=3",
                                           "trainer.checkpoint_every_n_steps=2", *FAST])
    run_pretraining(config)
    assert ResumePoint.read(run / "checkpoints" / "last.ckpt").steps == 3
    assert [p.name for p in (run / "checkpoints").glob("step-*.ckpt")] == ["step-2.ckpt"]  # the kept interval copies


@pytest.mark.parametrize("kind", ["truncated", "pickle"])
def test_a_corrupt_or_pickle_carrying_resume_checkpoint_is_refused_in_one_line(kind, bad_checkpoints, wav_dir, tmp_path, capsys):
    last = tmp_path / "pre" / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    last.write_bytes(bad_checkpoints[kind])
    assert main(["pretrain", "mini", f"data.source={wav_dir}", *FAST, "-o", str(tmp_path / "pre"), "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"atst-sed pretrain: error: {last}: "), err
    assert ("pickled Python object" in err) if kind == "pickle" else ("truncated or corrupt" in err)
    assert not bad_checkpoints["marker"].exists(), "the pickled payload ran"


@pytest.mark.parametrize("method", ["mini", "clip_small"])
def test_bf16_mixed_pretraining_steps_keep_float32_weights(method, wav_dir, tmp_path):
    """``bf16-mixed`` (the GPU default) through the same autocast code on CPU, both methods."""
    run = tmp_path / method
    small = ["model.encoder=clip_tiny"] if method == "clip_small" else []
    config = load_pretrain_config(method, [f"data.source={wav_dir}", f"output_dir={run}", "optim.max_steps=2",
                                           "trainer.precision=bf16-mixed", "trainer.accelerator=cpu", "trainer.devices=1",
                                           "trainer.strategy=auto", *small, *FAST])
    loaded = load_checkpoint(run_pretraining(config))
    assert loaded.meta["global_step"] == 2
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in loaded.encoder.state_dict().values())
    rows = [r for r in read_metrics(run) if r.get("train/loss")]
    assert len(rows) == 2 and all(np.isfinite(float(r["train/loss"])) and float(r["std/teacher"]) > 0 for r in rows)


def test_the_progress_bar_counts_steps_not_unbounded_epochs(wav_dir, tmp_path, monkeypatch):
    import atst_sed.training.pretrain_run as pretrain_run

    monkeypatch.setattr(pretrain_run, "on_a_terminal", lambda: True)  # the bar shows on a terminal only
    config = load_pretrain_config("mini", [f"data.source={wav_dir}", "optim.max_steps=100"])
    trainer = build_trainer(config, RunFolder(tmp_path))
    bars = [c for c in trainer.callbacks if isinstance(c, ProgressBar)]
    assert [type(b) for b in bars] == [StepProgressBar] and trainer.max_epochs == -1
    bars[0]._trainer = trainer  # what Lightning's setup hook does
    assert bars[0]._get_train_description(3) == "Epoch 3 · step 0/100"


def test_clip_run_through_the_cli(wav_dir, tmp_path, capsys):
    run = tmp_path / "clip"
    code = main(["pretrain", "mini", f"data.source={wav_dir}", "model.method=clip", "model.encoder=clip_tiny",
                 "optim.max_steps=2", *FAST, "-o", str(run)])
    assert code == 0
    assert "teacher_encoder.ckpt" in capsys.readouterr().out
    loaded = load_checkpoint(run / "teacher_encoder.ckpt")
    assert loaded.encoder.config.variant == "clip" and loaded.encoder.cls_token is not None
    # the exported teacher encodes audio features
    out = loaded.encoder(torch.randn(1, 64, 1001))
    assert out.frames.shape == (1, 250, 64) and out.cls.shape == (1, 64)
    # `atst-sed embed` takes it as it is
    npz = tmp_path / "emb.npz"
    assert main(["embed", str(wav_dir / "clip02.wav"), "--checkpoint", str(run / "teacher_encoder.ckpt"), "-o", str(npz)]) == 0
    assert np.load(npz)["embeddings"].shape[-1] == 64


def test_cli_reports_bad_configs_in_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: " + str(REPO / "configs" / "pretrain" / "mini.yaml") + "\nmodel:\n  methd: frame\n")
    assert main(["pretrain", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "methd" in err and "Traceback" not in err
    assert main(["pretrain", str(tmp_path / "nope.yaml")]) == 2


def test_shipped_configs_follow_table_one():
    peaks = {}
    for name in ("frame_small", "frame_base", "clip_small", "clip_base", "mini"):
        c = load_pretrain_config(name)
        n_clips = c.data.batch_size * int(c.trainer.devices if c.trainer.devices != "auto" else 1)
        peaks[name] = (c.optim.lr * n_clips / 256, c.optim.warmup_steps, c.optim.max_steps, c.optim.ema)
    assert peaks["frame_base"] == pytest.approx((2.7e-4, 19900, 398000, 0.9996))
    assert peaks["frame_small"] == pytest.approx((1.6e-3, 1950, 58500, 0.997))
    assert peaks["clip_base"] == pytest.approx((1.2e-3, 15860, 318000, 0.9995))
    assert peaks["clip_small"] == pytest.approx((3e-3, 1300, 39100, 0.99))


def official_layout(module: PretrainModule, variant: str) -> dict:
    """Rename our module's state dict to audiossl's pretraining names (FrameAST / AST)."""
    sd = {}
    for k, v in module.state_dict().items():
        k = k.replace("encoder.patch_embed.", "encoder.patch_embed.patch_embed.")
        if variant == "frame":
            k = k.replace("encoder.norm.", "encoder.norm_frame.")
        sd[k] = v.clone()
    return {"state_dict": sd, "pytorch-lightning_version": "1.8.6", "global_step": 1234, "epoch": 3,
            "hyper_parameters": {"anchor_len": 10.0, "n_mels": 64}}


@pytest.mark.parametrize("variant", ["frame", "clip"])
def test_initialise_from_the_official_pretraining_layout(variant, tmp_path):
    kw = dict(model={"method": variant, "encoder": f"{variant}_tiny", "projector_hidden": 64, "projector_out": 32})
    source = PretrainModule(**kw)
    with torch.no_grad():  # make student and teacher differ so that each is checked
        for p in source.model.teacher.parameters():
            p.add_(torch.randn_like(p))
    path = tmp_path / "official.ckpt"
    torch.save(official_layout(source, variant), path)
    target = PretrainModule(**kw)
    info = init_from_checkpoint(target, path)
    assert info["global_step"] == 1234
    assert set(info["parts"]) == {"student.encoder", "teacher.encoder", "student.projector", "student.predictor", "teacher.projector"}
    want = source.state_dict()
    for k, v in target.state_dict().items():
        assert torch.equal(v, want[k]), k
    # an encoder-only checkpoint initialises both encoders
    enc_only = tmp_path / "teacher_encoder.ckpt"
    from atst_sed.models.checkpoint import save_checkpoint

    save_checkpoint(enc_only, source.teacher_encoder)
    fresh = PretrainModule(**kw)
    init_from_checkpoint(fresh, enc_only)
    for k, v in source.teacher_encoder.state_dict().items():
        assert torch.equal(fresh.student_encoder.state_dict()[k], v) and torch.equal(fresh.teacher_encoder.state_dict()[k], v)
    # an encoder of another size is refused with one line
    other = PretrainModule(model={**kw["model"], "encoder_overrides": {"depth": 3}})
    with pytest.raises(InputError, match="does not match"):
        init_from_checkpoint(other, path)


def test_pretraining_into_a_file_logs_its_progress_without_lightning_chatter(wav_dir, tmp_path):
    """Output redirected (a batch job, `> log`): no bar can be seen, so a line every
    trainer.log_every_n_steps steps says how far it is; Lightning's tips, banners, model-summary table
    and deprecation warnings stay out of both streams."""
    run = tmp_path / "run"
    fast = [o for o in FAST if not o.startswith(("trainer.log_every_n_steps", "trainer.enable_progress_bar"))]
    code, out, err = run_redirected(["pretrain", "mini", f"data.source={wav_dir}", "-o", str(run), "optim.max_steps=4",
                                     "trainer.log_every_n_steps=2", *fast], tmp_path)
    assert code == 0, err
    assert out == f"teacher encoder: {run / 'teacher_encoder.ckpt'}\n"  # no frozen bar, no summary table
    steps = re.findall(r"pretrain step (\d+)/4: loss (\d+\.\d{4}), (\d+\.\d\d) steps/s \((\d+\.\d) clips/s\), "
                       r"\d+:\d\d elapsed", err)
    assert [s[0] for s in steps] == ["2", "4"], err
    assert all(np.isfinite(float(loss)) for _, loss, _, _ in steps)
    assert all(float(clips) == pytest.approx(4 * float(rate), rel=0.05, abs=0.1) for _, _, rate, clips in steps)
    for noise in LIGHTNING_NOISE:
        assert noise not in err and noise not in out, noise
    assert re.search(r"pretraining ATST-Frame \([\d,]+ parameters, [\d,]+ trainable\)", err)  # instead of the table


def test_progress_is_a_bar_on_a_terminal_and_step_lines_elsewhere(wav_dir, tmp_path, monkeypatch):
    import atst_sed.training.pretrain_run as pretrain_run

    config = load_pretrain_config("mini", [f"data.source={wav_dir}", "optim.max_steps=100"])
    monkeypatch.setattr(pretrain_run, "on_a_terminal", lambda: False)
    quiet = build_trainer(config, RunFolder(tmp_path / "a"))
    assert not [c for c in quiet.callbacks if isinstance(c, ProgressBar)]
    assert [c.every for c in quiet.callbacks if isinstance(c, StepLog)] == [config.trainer.log_every_n_steps]
    monkeypatch.setattr(pretrain_run, "on_a_terminal", lambda: True)
    live = build_trainer(config, RunFolder(tmp_path / "b"))
    assert [type(c) for c in live.callbacks if isinstance(c, ProgressBar)] == [StepProgressBar]
    assert not [c for c in live.callbacks if isinstance(c, StepLog)]
