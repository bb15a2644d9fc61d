"""``atst-sed detect`` into devices and pipes: ``-o /dev/null`` leaves /dev/null a device, a named
pipe receives the CSV, ``-o -`` is ``-o /dev/stdout``, and folder options refuse a device."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import soundfile as sf

from atst_sed.cli.main import main
from inference_helpers import noise_with_bursts

REPO = Path(__file__).resolve().parents[2]


def _recording(tmp_path: Path) -> Path:
    path = tmp_path / "rec.wav"
    sf.write(path, noise_with_bursts(6.0, [(1.0, 2.5)]), 16000)
    return path


def test_detect_into_a_device_or_pipe_leaves_it_one_and_a_pipe_gets_the_csv(device_output, loud_ckpt, tmp_path, capsys):
    rec = _recording(tmp_path)
    assert main(["detect", str(rec), "--checkpoint", str(loud_ckpt), "-o", str(tmp_path / "events.csv")]) == 0
    assert main(["detect", str(rec), "--checkpoint", str(loud_ckpt), "-o", str(device_output.path)]) == 0
    received = device_output.finish()
    if device_output.kind == "named pipe":
        assert received == (tmp_path / "events.csv").read_bytes()
    assert capsys.readouterr().out == ""


def test_dash_and_dev_stdout_give_the_same_stdout(loud_ckpt, tmp_path):
    rec = _recording(tmp_path)
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    outputs = []
    for target in ("-", "/dev/stdout"):
        done = subprocess.run([sys.executable, "-m", "atst_sed.cli.main", "detect", str(rec), "--checkpoint", str(loud_ckpt),
                               "-o", target], capture_output=True, env=env, timeout=300)
        assert done.returncode == 0, done.stderr.decode()
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1] and outputs[0].startswith(b"filename,onset,offset,event_label,score\n")
    assert outputs[0].count(b"\n") >= 2  # the burst is detected


def test_folder_options_refuse_a_device_or_pipe_in_one_line(device_output, loud_ckpt, tmp_path, capsys):
    rec = _recording(tmp_path)
    for option in ("--scores-dir", "--raw-scores-dir", "--plot"):
        rc = main(["detect", str(rec), "--checkpoint", str(loud_ckpt), "-o", str(tmp_path / "e.csv"), option, str(device_output.path)])
        err = capsys.readouterr().err
        assert rc == 2
        assert err.strip().splitlines() == [f"atst-sed detect: error: {device_output.path}: {option} needs a folder; "
                                            f"this is a {device_output.described}"]
    assert not (tmp_path / "e.csv").exists()  # refused before any work
    device_output.finish_refused()
