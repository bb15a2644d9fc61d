"""The Python API (``from atst_sed import load_model``) as the README shows it: the README's code block
is the code these tests run, offline, with a published model's name whose file was put into the cache
by hand (the small official-format stage-2 file of tests/golden). It gives what ``atst-sed detect``
and ``atst-sed evaluate`` give."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

import atst_sed
from atst_sed import hub
from atst_sed.cli.main import main
from atst_sed.errors import AtstSedError

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"


def readme_python_block(section: str) -> str:
    """The first ```python block after the README heading ``section``."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index(f"\n{section}\n")
    found = re.search(r"```python\n(.*?)```", text[start:], re.S)
    assert found, f"no python block under {section}"
    return found.group(1)


@pytest.fixture
def published_stage2(tmp_path, monkeypatch) -> Path:
    """``atst-sed:stage2`` available offline: its file put into an empty cache by hand."""
    cache = tmp_path / "cache"
    monkeypatch.setenv(hub.CACHE_ENV, str(cache))
    entry = hub.published_model("atst-sed:stage2")
    target = hub.cached_path(entry, entry.checkpoint)
    target.parent.mkdir(parents=True)
    shutil.copyfile(GOLDEN / "atstsed_stage2" / "checkpoint.ckpt", target)

    def no_network(url, handle, progress):
        raise AssertionError(f"the test tried to download {url}")

    monkeypatch.setattr(hub, "default_downloader", no_network)
    return target


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """A folder with ``recording.wav`` (golden synthetic audio, 10 s), its ground truth and duration."""
    folder = tmp_path / "work"
    folder.mkdir()
    audio, rate = sf.read(GOLDEN / "inputs" / "synth_10s.flac", dtype="float32")
    sf.write(folder / "recording.wav", audio, rate)
    (folder / "ground_truth.tsv").write_text("filename\tonset\toffset\tevent_label\n"
                                             "recording.wav\t0.500\t3.000\tSpeech\nrecording.wav\t4.000\t6.500\tDog\n")
    (folder / "durations.tsv").write_text("filename\tduration\nrecording.wav\t10.0\n")
    monkeypatch.chdir(folder)
    return folder


def test_the_readme_example_runs_as_written(published_stage2, workdir, capsys):
    namespace: dict = {}
    exec(compile(readme_python_block("### Use a published model"), "README.md", "exec"), namespace)
    events, frames, metrics = namespace["events"], namespace["frames"], namespace["metrics"]
    assert list(events.columns) == ["filename", "onset", "offset", "event_label", "score"]
    assert set(events["filename"]) <= {"recording.wav"}
    classes = namespace["model"].classes
    assert list(frames.columns) == ["onset", "offset", *classes]
    assert len(frames) == 156  # 10 s on ATST-SED's 64 ms grid
    np.testing.assert_allclose(frames["onset"], np.arange(156) * 0.064, atol=1e-9)
    assert {"event_f1", "segment_f1", "intersection_f1"} <= set(metrics) and metrics["kind"] == "events"
    printed = capsys.readouterr().out.split()
    assert [float(v) for v in printed] == [metrics["event_f1"]["macro"], metrics["segment_f1"]["macro"]]


def test_the_api_gives_what_the_command_line_writes(published_stage2, workdir, capsys):
    model = atst_sed.load_model("atst-sed:stage2", device="cpu", thresholds=0.3)
    events = model.detect("recording.wav")
    assert len(events) > 0
    assert main(["detect", "recording.wav", "--checkpoint", "atst-sed:stage2", "--device", "cpu", "--thresholds", "0.3",
                 "-o", "cli.csv", "--raw-scores-dir", "scores"]) == 0
    cli = pd.read_csv("cli.csv")
    assert cli["filename"].tolist() == events["filename"].tolist()
    assert cli["event_label"].tolist() == events["event_label"].tolist()
    for column in ("onset", "offset", "score"):
        np.testing.assert_allclose(cli[column], events[column], atol=0.0005 + 1e-9)  # the CSV has 3 decimals
    frames = model.scores(Path("recording.wav"))
    written = pd.read_csv(workdir / "scores" / "recording.tsv", sep="\t")
    pd.testing.assert_frame_equal(frames.reset_index(drop=True), written, check_exact=False, rtol=0, atol=1e-7)
    assert main(["detect", "recording.wav", "--checkpoint", "atst-sed:stage2", "--device", "cpu", "--thresholds", "0.3",
                 "-o", "cli.csv", "--scores-dir", "filtered"]) == 0
    written = pd.read_csv(workdir / "filtered" / "recording.tsv", sep="\t")
    filtered = model.scores(Path("recording.wav"), filtered=True)
    pd.testing.assert_frame_equal(filtered.reset_index(drop=True), written, check_exact=False, rtol=0, atol=1e-7)
    assert not np.allclose(filtered.to_numpy(), frames.to_numpy())  # stage 2's median filters change them
    assert main(["evaluate", "--predictions", "cli.csv", "--ground-truth", "ground_truth.tsv",
                 "--durations", "durations.tsv", "--classes", "desed", "--json", "cli.json"]) == 0
    cli_metrics = json.loads(Path("cli.json").read_text())
    api_metrics = atst_sed.evaluate("cli.csv", ground_truth="ground_truth.tsv", durations="durations.tsv",
                                    classes=model.classes)
    assert api_metrics["event_f1"] == cli_metrics["event_f1"] and api_metrics["segment_f1"] == cli_metrics["segment_f1"]


def test_one_path_is_one_file_not_a_list_of_characters(published_stage2, workdir):
    model = atst_sed.load_model("atst-sed:stage2", device="cpu", thresholds=0.3)
    one = model.detect("recording.wav")
    shutil.copyfile("recording.wav", "second.wav")
    both = model.detect(["recording.wav", Path("second.wav")])
    assert len(one) > 0 and len(both) == 2 * len(one)
    pd.testing.assert_frame_equal(both[both["filename"] == "recording.wav"].reset_index(drop=True), one)


def test_load_model_takes_a_published_file_and_its_options(workdir):
    path = GOLDEN / "atstsed_stage2" / "checkpoint.ckpt"
    teacher = atst_sed.load_model(path, device="cpu", median_filter=1)
    student = atst_sed.load_model(str(path), role="student", device="cpu", short_clips="mask")
    assert teacher.spec.meta["role"] == "teacher" and student.spec.meta["role"] == "student"
    assert teacher.detector.decoding.median_filter == (1,) * 10
    assert student.detector.short_clips == "mask" and teacher.detector.short_clips == "pad"
    short = workdir / "short.wav"
    sf.write(short, sf.read(GOLDEN / "inputs" / "synth_3p6s.flac", dtype="float32")[0], 16000)
    assert len(teacher.scores(short)) == len(student.scores(short)) == (57777 // 256 + 1) // 4
    assert "ATST-SED" in repr(teacher) and "64 ms" in repr(teacher)


def test_bad_names_files_and_settings_are_one_line_errors(tmp_path):
    with pytest.raises(AtstSedError, match="unknown model 'atst-sed:stage9'"):
        atst_sed.load_model("atst-sed:stage9")
    with pytest.raises(AtstSedError, match="no such checkpoint file"):
        atst_sed.load_model(tmp_path / "missing.ckpt")
    with pytest.raises(AtstSedError, match="short_clips must be one of"):
        atst_sed.load_model(GOLDEN / "atstsed_stage2" / "checkpoint.ckpt", short_clips="crop")


def test_importing_the_package_does_not_load_the_models():
    import subprocess
    import sys

    code = "import sys, atst_sed; assert 'torch' not in sys.modules, 'torch'; print(atst_sed.load_model.__module__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "atst_sed.api"
