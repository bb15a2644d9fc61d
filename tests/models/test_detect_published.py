"""`atst-sed detect` with every published SED layout reproduces the official test path's frame
probabilities (tests/golden, made once with the official audiossl / ATST-SED code) to 1e-4 in fp32,
through the whole command: audio file → windows → the model's frontends → overlap-add → score files
on the model's own grid (40 ms audiossl, 64 ms ATST-SED). Short recordings are padded to the window
by default, as the official test paths do; ``--short-clips mask`` scores them alone."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from models_helpers import GOLDEN, LAYOUTS, REAL, SHORT, SYNTHETIC, golden_arrays, golden_checkpoint, max_abs

from atst_sed.cli.main import main
from atst_sed.score_files import read_score_files

PROBABILITY_TOLERANCE = 1e-4
MEL_HOP = {"atst-sed": 256}  # samples per mel frame (every audiossl layout: 160); 4 mel frames per output
CASES = [pytest.param(folder, role, id=f"{folder}-{role}" if role else folder) for folder, role in LAYOUTS]


def _input_path(name: str, request) -> Path:
    if name in SYNTHETIC:
        return GOLDEN / "inputs" / f"{name}.flac"
    return request.getfixturevalue("shared_audio") / f"{name}.wav"


def _detect_scores(audio: Path, folder: str, role: str | None, tmp_path: Path, *options: str) -> pd.DataFrame:
    scores_dir = tmp_path / "scores"
    argv = ["detect", str(audio), "--checkpoint", str(golden_checkpoint(folder)), "--device", "cpu",
            "--precision", "fp32", "--raw-scores-dir", str(scores_dir), "-o", str(tmp_path / "events.csv"), *options]
    if role is not None:
        argv += ["--role", role]
    assert main(argv) == 0
    tables, _ = read_score_files(scores_dir)
    assert list(tables) == [audio.stem]
    return tables[audio.stem]


# a 10-s recording fills the window: only the short ones are scored differently with --short-clips mask
INPUTS = [*((name, None) for name in (*SYNTHETIC, *REAL)), *((name, "mask") for name in SHORT)]


@pytest.mark.parametrize("name,short_clips", INPUTS)
@pytest.mark.parametrize("folder,role", CASES)
def test_detect_reproduces_the_official_frame_probabilities(folder, role, name, short_clips, tmp_path, request):
    audio = _input_path(name, request)
    table = _detect_scores(audio, folder, role, tmp_path, *(["--short-clips", short_clips] if short_clips else []))
    golden = golden_arrays(folder, name)
    prefix = "unpadded_" if short_clips == "mask" and name in SHORT else ""
    expected = golden[f"{prefix}{role + '_' if role else ''}frame_probs"]  # (C, T) as the official code writes it
    mel_hop = MEL_HOP.get(LAYOUTS[folder, role], 160)
    frame_seconds = 4 * mel_hop / 16000
    n_frames = (SHORT.get(name, 160_000) // mel_hop + 1) // 4  # the recording's frames on the model's grid
    probs = table.drop(columns=["onset", "offset"]).to_numpy().T
    if "class_rows" in golden:  # AudioSet-strong: the golden file keeps every 10th of its 407 classes
        probs = probs[golden["class_rows"]]
    assert probs.shape[1] == n_frames  # the recording's own frames, also when it was scored padded
    assert max_abs(probs, expected[:, :n_frames]) <= PROBABILITY_TOLERANCE
    np.testing.assert_allclose(table["onset"], np.arange(n_frames) * frame_seconds, atol=1e-9)
    np.testing.assert_allclose(table["offset"], (np.arange(n_frames) + 1) * frame_seconds, atol=1e-9)


def test_the_installed_command_runs_a_published_atst_sed_file_on_its_64ms_grid(tmp_path):
    """The console entry point in a real subprocess: the student of a stage-2 file; CSV events, score
    files and the picture on 64 ms, and evaluate scores those score files."""
    audio = GOLDEN / "inputs" / "synth_10s.flac"
    scores_dir, raw_dir, csv, plots = tmp_path / "scores", tmp_path / "raw", tmp_path / "events.csv", tmp_path / "plots"
    done = subprocess.run(
        [sys.executable, "-m", "atst_sed.cli.main", "detect", str(audio), "--checkpoint",
         str(golden_checkpoint("atstsed_stage2")), "--role", "student", "--device", "cpu", "--precision", "fp32", "--thresholds", "0.3",
         "--scores-dir", str(scores_dir), "--raw-scores-dir", str(raw_dir), "-o", str(csv), "--plot", str(plots)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    table = read_score_files(raw_dir)[0]["synth_10s"]
    assert read_score_files(scores_dir)[0]["synth_10s"]["onset"].equals(table["onset"])
    expected = golden_arrays("atstsed_stage2", "synth_10s")["student_frame_probs"]
    assert max_abs(table.drop(columns=["onset", "offset"]).to_numpy().T, expected) <= PROBABILITY_TOLERANCE
    events = pd.read_csv(csv)
    assert len(events) > 0
    for column in ("onset", "offset"):  # event boundaries are frame boundaries of the 64 ms grid
        frames = events[column].to_numpy() / 0.064
        assert np.abs(frames - np.round(frames)).max() * 0.064 <= 0.0005 + 1e-9  # CSV times have 3 decimals
    assert (plots / "synth_10s.png").stat().st_size > 10_000
    truth, durations = tmp_path / "truth.tsv", tmp_path / "durations.tsv"
    truth.write_text("filename\tonset\toffset\tevent_label\nsynth_10s.flac\t1.0\t4.0\tSpeech\n"
                     "synth_10s.flac\t5.0\t6.0\tDog\n")
    durations.write_text("filename\tduration\nsynth_10s.flac\t10.0\n")
    metrics = tmp_path / "metrics.json"
    assert main(["evaluate", "--predictions", str(scores_dir), "--ground-truth", str(truth), "--durations",
                 str(durations), "--classes", "desed", "--json", str(metrics), "--jobs", "1"]) == 0
    result = json.loads(metrics.read_text())
    assert result["kind"] == "scores" and 0.0 <= result["psds1_threshold_free"] <= 1.0


def test_a_role_that_a_file_does_not_hold_is_one_line_and_exit_2(tmp_path, capsys):
    audio = GOLDEN / "inputs" / "synth_3p6s.flac"
    rc = main(["detect", str(audio), "--checkpoint", str(golden_checkpoint("audiossl_desed_frame")),
               "--role", "student", "-o", str(tmp_path / "events.csv")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert err.startswith("atst-sed detect: ") and "checkpoint.ckpt" in err and "student" in err
    assert not (tmp_path / "events.csv").exists()
