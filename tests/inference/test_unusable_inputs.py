"""``atst-sed detect`` tells the user about every input it cannot use, in one plain line each, as seen
on the terminal (a real subprocess: the decoder's own stderr output would show there too)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from atst_sed.audio import read_audio_16k
from atst_sed.errors import InputError
from inference_helpers import noise_with_bursts


def _detect(args, ckpt, tmp_path) -> tuple[int, list[str], pd.DataFrame | None]:
    out = tmp_path / "events.csv"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[2]),
                                                                      os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-m", "atst_sed.cli.main", "detect", *map(str, args), "-c", str(ckpt),
                           "-o", str(out)], capture_output=True, text=True, timeout=300, env=env)
    table = pd.read_csv(out) if out.is_file() else None
    lines = proc.stderr.strip().splitlines()
    if proc.returncode in (0, 1):  # the run finished: its last line is the summary, the lines above are the news
        assert lines and lines[-1].startswith("atst-sed detect: ") and f"→ {out} (" in lines[-1], lines
        lines = lines[:-1]
    return proc.returncode, lines, table


def _truncated_wav(path: Path, seconds_announced: float = 10.0, seconds_present: float = 3.0) -> Path:
    """A 16-bit WAV whose header announces ``seconds_announced``, cut after ``seconds_present``."""
    sf.write(path, noise_with_bursts(seconds_announced, [(1.0, 2.0)]), 16000, subtype="PCM_16")
    data_start = 44  # soundfile's PCM_16 WAV header: RIFF + fmt + data chunk header
    with open(path, "r+b") as handle:
        handle.truncate(data_start + int(seconds_present * 16000) * 2)
    return path


def test_symlinks_in_a_folder_that_lead_nowhere_get_one_line_each(tmp_path, loud_ckpt):
    folder = tmp_path / "in"
    folder.mkdir()
    sf.write(folder / "good.wav", noise_with_bursts(3.0, [(1.0, 2.0)]), 16000)
    os.symlink(tmp_path / "deleted.wav", folder / "dangling.wav")
    os.symlink(folder / "loop.wav", folder / "loop.wav")
    os.symlink(folder / "pong.flac", folder / "ping.flac")
    os.symlink(folder / "ping.flac", folder / "pong.flac")
    os.symlink(tmp_path / "gone.txt", folder / "notes.txt")  # not an audio name: not an input
    code, lines, table = _detect([folder], loud_ckpt, tmp_path)
    assert code == 1
    assert set(table["filename"]) == {"good.wav"}
    problems = [line for line in lines if line.startswith("atst-sed detect:")]
    assert len(problems) == 4, lines
    for name, reason in (("dangling.wav", "dangling symbolic link"), ("loop.wav", "symbolic link loop"),
                         ("ping.flac", "symbolic link loop"), ("pong.flac", "symbolic link loop")):
        assert sum(name in line and reason in line for line in problems) == 1, (name, lines)
    assert not any("notes.txt" in line for line in lines)


def test_a_link_loop_given_by_path_says_what_it_is(tmp_path, loud_ckpt):
    os.symlink(tmp_path / "loop.wav", tmp_path / "loop.wav")
    code, lines, _ = _detect([tmp_path / "loop.wav"], loud_ckpt, tmp_path)
    assert code == 1
    assert lines == [f"atst-sed detect: {tmp_path / 'loop.wav'}: symbolic link loop (the link leads back to itself)"]
    with pytest.raises(InputError, match="symbolic link loop"):
        read_audio_16k(tmp_path / "loop.wav")


def test_a_truncated_wav_is_processed_with_a_warning(tmp_path, loud_ckpt):
    path = _truncated_wav(tmp_path / "cut.wav")
    assert sf.info(str(path)).frames == 3 * 16000  # libsndfile itself only sees what is there
    code, lines, table = _detect([path], loud_ckpt, tmp_path)
    assert code == 0
    assert set(table["filename"]) == {"cut.wav"}
    warnings = [line for line in lines if "cut.wav" in line]
    assert len(warnings) == 1, lines
    assert "truncated: the header announces 10.00 s of audio, the file holds 3.00 s" in warnings[0]


def test_an_intact_wav_gets_no_truncation_warning(tmp_path, caplog):
    sf.write(tmp_path / "whole.wav", noise_with_bursts(3.0, []), 16000, subtype="PCM_16")
    assert len(read_audio_16k(tmp_path / "whole.wav")) == 48000
    assert "truncated" not in caplog.text


def test_random_bytes_named_mp3_give_one_clear_line(tmp_path, loud_ckpt):
    path = tmp_path / "noise.mp3"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 40_000, dtype=np.uint8).tobytes())
    code, lines, _ = _detect([path], loud_ckpt, tmp_path)
    assert code == 1
    assert len(lines) == 1, lines  # no libmpg123 "Note:" lines on the terminal
    assert lines[0].startswith(f"atst-sed detect: {path}: not a readable audio file (unrecognised format or corrupt data")
    assert "does not exist" not in lines[0] and "regular file" not in lines[0]
