"""Two-process DDP pretraining on CPU (gloo), launched like a user would: the CLI in a subprocess."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import pytest

from atst_sed.models.checkpoint import load_checkpoint
from atst_sed.training.schedules import cosine_schedule


def test_two_process_ddp_run(wav_dir, tmp_path):
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "atst_sed.cli.main", "pretrain", "mini", f"data.source={wav_dir}",
           "data.batch_size=2", "data.num_workers=0", "optim.max_steps=2", "optim.warmup_steps=1", "optim.lr=0.01",
           "model.projector_hidden=64", "model.projector_out=32", "trainer.devices=2", "trainer.strategy=ddp",
           "trainer.log_every_n_steps=1", "trainer.enable_progress_bar=false", "-o", str(run)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "pretraining ATST-Frame" in proc.stderr and " in 2 process(es): " in proc.stderr  # our line, not Lightning's
    loaded = load_checkpoint(run / "teacher_encoder.ckpt")
    assert loaded.meta["global_step"] == 2
    with open(run / "logs" / "csv" / "version_0" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/lr")]
    # the learning rate is scaled by the total batch over both processes: 0.01 · 2 · 2 / 256
    lr = cosine_schedule(0.01 * 4 / 256, 1e-6, 2, 1)
    assert [float(r["train/lr"]) for r in rows] == pytest.approx(list(lr), rel=1e-6)
    assert all(float(r["std/teacher"]) > 0 for r in rows)
