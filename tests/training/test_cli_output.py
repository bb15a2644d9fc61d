"""``atst-sed train`` as a person runs it, output in files: our own log lines, none of Lightning's chatter."""

from __future__ import annotations

from console_output import LIGHTNING_NOISE, run_redirected
from mini_settings import MINI_FAST


def test_a_mini_training_stage_prints_our_lines_and_no_lightning_chatter(tiny_corpus, tmp_path):
    code, out, err = run_redirected(["train", "mini", f"data.root={tiny_corpus}", "--root-dir", str(tmp_path / "runs"),
                                     "--stage", "finetune_frame", *MINI_FAST], tmp_path)
    assert code == 0, err
    assert "finetune_frame epoch 1/1: train loss" in err  # the run's own progress line
    for noise in LIGHTNING_NOISE:
        assert noise not in err and noise not in out, (noise, err)
    assert all(line.startswith("INFO atst_sed.") for line in err.splitlines()), err  # nothing but our log
