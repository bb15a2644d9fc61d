"""``atst-sed detect`` end to end: CSV schema, bad inputs, stdout, score files, plots, real recordings."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.ndimage
import soundfile as sf

from atst_sed.cli.detect import parse_per_class
from atst_sed.cli.main import main
from atst_sed.errors import AtstSedError
from atst_sed.inference.detector import Detector
from atst_sed.timegrid import ATST_GRID
from inference_helpers import ALWAYS, CLASSES, LOUD, noise_with_bursts

DECIMALS_3 = re.compile(r"^\d+\.\d{3}$")
#: detect's last stderr line: what was done, where it went, seconds, problems
SUMMARY = re.compile(r"^atst-sed detect: (.+) → (.+) \(\d+\.\d s\)(.*)$")


@pytest.fixture
def mixed_folder(tmp_path) -> Path:
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    sf.write(d / "a.wav", noise_with_bursts(12.0, [(1.0, 2.5), (8.0, 9.0)]), 16000)
    x = noise_with_bursts(6.3, [(2.0, 4.0)], sr=44100, seed=1)
    sf.write(d / "sub" / "b.flac", np.stack([x, x], 1), 44100)
    sf.write(d / "c.ogg", noise_with_bursts(3.3, [(0.5, 1.5)], sr=22050, seed=2), 22050)
    sf.write(d / "silent.wav", np.zeros(16000, np.float32), 16000)
    (d / "empty.wav").write_bytes(b"")
    (d / "text.wav").write_text("this is not audio")
    nan = noise_with_bursts(2.0, [])
    nan[100] = np.nan
    sf.write(d / "nan.wav", nan, 16000, subtype="FLOAT")
    raw = (d / "a.wav").read_bytes()
    (d / "truncated.wav").write_bytes(raw[:30])
    (d / "notes.txt").write_text("not an audio extension: ignored in folders")
    return d


def _run(argv, capsys):
    rc = main(["detect", *map(str, argv)])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_mixed_folder_good_files_in_csv_one_line_per_bad_file(mixed_folder, loud_ckpt, tmp_path, capsys):
    out_csv = tmp_path / "out" / "events.csv"
    rc, stdout, stderr = _run([mixed_folder, "--checkpoint", loud_ckpt, "-o", out_csv], capsys)
    assert rc == 1
    assert stdout == ""
    lines = stderr.strip().splitlines()
    bad = {"empty.wav": "empty file", "text.wav": "not a readable audio file", "nan.wav": "NaN or infinite", "truncated.wav": "truncated.wav"}
    for name, problem in bad.items():
        hits = [line for line in lines if name in line]
        assert len(hits) == 1 and problem in hits[0], (name, lines)
    assert sum("silent.wav" in line and "warning" in line for line in lines) == 1
    assert len(lines) == 6 and not any("Traceback" in line for line in lines)
    # the last line sums up: the 4 usable files (the silent one included), what went where
    assert SUMMARY.match(lines[-1]).groups() == ("4 files, 4 events", str(out_csv), "; 4 problems (above)"), lines[-1]

    text = out_csv.read_text()
    df = pd.read_csv(io.StringIO(text))
    assert list(df.columns) == ["filename", "onset", "offset", "event_label", "score"]
    assert set(df.filename) == {"a.wav", "sub/b.flac", "c.ogg"}  # the silent file has no event
    assert df.equals(df.sort_values(["filename", "onset", "event_label"]).reset_index(drop=True))
    for row in text.strip().splitlines()[1:]:
        name, onset, offset, label, score = row.split(",")
        assert all(DECIMALS_3.match(v) for v in (onset, offset, score)), row
        assert label in CLASSES
    a = df[df.filename == "a.wav"]
    assert list(a.event_label) == [LOUD, LOUD]
    np.testing.assert_allclose(a[["onset", "offset"]].to_numpy(), [[1.0, 2.5], [8.0, 9.0]], atol=0.041)
    assert not list(out_csv.parent.glob("*.tmp"))


def test_stdout_mode_and_glob_and_missing_input(mixed_folder, loud_ckpt, capsys):
    rc, stdout, stderr = _run([str(mixed_folder / "*.ogg"), "nope.wav", "--checkpoint", loud_ckpt, "-o", "-"], capsys)
    problem, summary = stderr.strip().splitlines()
    assert rc == 1 and problem == "atst-sed detect: nope.wav: no such file or folder"
    assert SUMMARY.match(summary).groups() == ("1 file, 1 event", "stdout", "; 1 problem (above)"), summary
    df = pd.read_csv(io.StringIO(stdout))
    assert list(df.filename) == ["c.ogg"] and list(df.event_label) == [LOUD]
    rc, stdout, stderr = _run([mixed_folder / "a.wav", "--checkpoint", loud_ckpt, "--thresholds", f"{ALWAYS}=0.7"], capsys)
    assert rc == 0 and SUMMARY.match(stderr.strip()).groups() == ("1 file, 3 events", "stdout", ""), stderr
    df = pd.read_csv(io.StringIO(stdout))
    assert sorted(df.event_label) == [LOUD, LOUD, ALWAYS]
    assert df[df.event_label == ALWAYS][["onset", "offset"]].values.tolist() == [[0.0, 12.0]]


def test_no_event_writes_a_header_only_csv(mixed_folder, loud_ckpt, tmp_path, capsys):
    out = tmp_path / "none.csv"
    rc, _, _ = _run([mixed_folder / "a.wav", "-c", loud_ckpt, "-o", out, "--thresholds", "0.9999"], capsys)
    assert rc == 0 and out.read_text() == "filename,onset,offset,event_label,score\n"


def test_scores_dir_is_readable_by_sed_scores_eval_and_plots_are_written(mixed_folder, loud_ckpt, tmp_path, capsys):
    from sed_scores_eval.base_modules.io import read_sed_scores

    scores_dir, plot_dir = tmp_path / "scores", tmp_path / "plots"
    inputs = [mixed_folder / "a.wav", mixed_folder / "sub" / "b.flac"]
    rc, _, _ = _run([*inputs, "-c", loud_ckpt, "--scores-dir", scores_dir, "--plot", plot_dir, "-o", tmp_path / "e.csv"], capsys)
    assert rc == 0
    scores = read_sed_scores(str(scores_dir))
    assert sorted(scores) == ["a", "b"]
    assert list(scores["b"].columns) == ["onset", "offset", *CLASSES]
    det = Detector.from_checkpoint(loud_ckpt, device="cpu")
    # post-processed: the model's scores through the checkpoint's 7-frame median filter
    expected = scipy.ndimage.median_filter(det.scores(mixed_folder / "a.wav").probs, size=(7, 1), mode="reflect")
    got = scores["a"]
    assert len(got) == ATST_GRID.n_frames(12 * 16000) == 300
    np.testing.assert_allclose(got[CLASSES].to_numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(got["onset"], np.arange(300) * 0.04, atol=1e-9)
    np.testing.assert_allclose(got["offset"], np.arange(1, 301) * 0.04, atol=1e-9)
    for name in ("a.png", "b.png"):
        data = (plot_dir / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_threshold_and_median_filter_parsing():
    assert parse_per_class("0.5", float, "thresholds") == 0.5
    assert parse_per_class("Speech=0.4, Dog=0.6", float, "thresholds") == {"Speech": 0.4, "Dog": 0.6}
    assert parse_per_class("9", int, "median-filter") == 9
    assert parse_per_class("Dog=3,", int, "median-filter") == {"Dog": 3}
    assert parse_per_class(None, float, "thresholds") is None
    for bad in ("Speech=x", "=0.3", "abc", "Dog=3.5"):
        with pytest.raises(AtstSedError, match="cannot parse"):
            parse_per_class(bad, int if "3.5" in bad else float, "thresholds")


def test_bad_settings_are_one_line_errors_with_exit_2(mixed_folder, loud_ckpt, tmp_path, capsys):
    wav = mixed_folder / "a.wav"
    for argv, message in [
        ([wav, "-c", loud_ckpt, "--thresholds", "Doggo=0.3"], "unknown class 'Doggo'"),
        ([wav, "-c", tmp_path / "missing.ckpt"], "no such checkpoint"),
        ([wav, "-c", loud_ckpt, "--hop", "0"], "hop"),
        ([wav, "-c", loud_ckpt, "--batch-size", "0"], "batch-size"),
    ]:
        rc, stdout, stderr = _run(argv, capsys)
        assert rc == 2 and stdout == ""
        assert len(stderr.strip().splitlines()) == 1 and message in stderr, stderr


def test_real_recordings_through_the_console_script(shared_audio, loud_ckpt, tmp_path):
    wavs = sorted(shared_audio.glob("*.wav"))
    assert len(wavs) >= 2
    exe = Path(sys.executable).with_name("atst-sed")
    cmd = [str(exe), "detect", *map(str, wavs), "-c", str(loud_ckpt), "--scores-dir", str(tmp_path / "s"),
           "--thresholds", "0.5", "-o", str(tmp_path / "real.csv")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    df = pd.read_csv(tmp_path / "real.csv")
    assert set(df.filename) == {w.name for w in wavs}  # ALWAYS (0.731 > 0.5) marks every file
    for w in wavs:
        n = sf.info(str(w)).frames
        rows = df[(df.filename == w.name) & (df.event_label == ALWAYS)]
        assert rows[["onset", "offset"]].values.tolist() == [[0.0, round(ATST_GRID.n_frames(n) * 0.04, 3)]]
        scores = pd.read_csv(tmp_path / "s" / f"{w.stem}.tsv", sep="\t")
        assert len(scores) == ATST_GRID.n_frames(n)


def test_the_detection_library_returns_its_problems_and_prints_nothing(loud_ckpt, write_wav, tmp_path, capsys):
    """``atst-sed package --eval-audio`` and the CLI share detect_inputs: it reports, the caller prints."""
    from atst_sed.inference.batch import detect_inputs

    good = write_wav("good.wav", noise_with_bursts(4.0, [(1.0, 2.5)]))
    silent = write_wav("silent.wav", np.zeros(16000, np.float32))
    seen = []
    report = detect_inputs([str(good), str(silent), str(tmp_path / "missing.wav")], str(loud_ckpt),
                           output=str(tmp_path / "events.csv"), device="cpu", on_message=seen.append)
    assert report.problems == [f"{tmp_path / 'missing.wav'}: no such file or folder"] and report.failed
    assert report.warnings == [f"{silent}: warning: the recording is digitally silent (processed anyway)"]
    assert seen == report.problems + report.warnings  # as they happened
    assert report.files == 2 and report.events == len(pd.read_csv(tmp_path / "events.csv")) >= 1
    assert capsys.readouterr() == ("", "")


def _on_a_terminal(argv: list[str]) -> str:
    """Run the console script with stderr on a pseudo-terminal (stdout to a pipe); what a person would
    see on that terminal in the end: escape sequences applied crudely (carriage returns and erased
    lines dropped), as plain lines."""
    import os
    import pty
    import select

    exe = Path(sys.executable).with_name("atst-sed")
    leader, follower = pty.openpty()
    env = {**os.environ, "COLUMNS": "120", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([str(exe), *argv], stdout=subprocess.PIPE, stderr=follower, env=env)
    os.close(follower)
    chunks = []
    while True:
        ready, _, _ = select.select([leader], [], [], 300)
        if not ready:
            proc.kill()
            raise AssertionError("no output from the terminal within 300 s")
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the process closed its side
            break
        if not data:
            break
        chunks.append(data)
    proc.wait(timeout=60)
    os.close(leader)
    assert proc.returncode == 0
    text = b"".join(chunks).decode("utf-8", "replace")
    text = re.sub(r"\x1b\[2K|\x1b\[1A", "\n", text)  # rich's "erase line" / "cursor up": the bar goes
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text).replace("\r", "\n")
    return "\n".join(line.rstrip() for line in text.splitlines() if line.strip())


def test_on_a_terminal_the_bar_gives_way_to_a_summary_that_stays(mixed_folder, loud_ckpt, tmp_path):
    out = tmp_path / "events.csv"
    seen = _on_a_terminal(["detect", str(mixed_folder / "a.wav"), str(mixed_folder / "c.ogg"), "-c", str(loud_ckpt),
                           "-o", str(out), "--scores-dir", str(tmp_path / "scores")])
    last = seen.splitlines()[-1]
    match = SUMMARY.match(last)
    assert match, seen
    assert match.groups() == ("2 files, 3 events", f"{out}, post-processed scores in {tmp_path / 'scores'}", ""), last
    assert len(pd.read_csv(out)) == 3
