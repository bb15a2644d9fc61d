"""``recipes/mini/demo.sh`` as a newcomer's clone runs it (nothing beside the repository): its detect
step picks a test clip without pipelines (many files, none), prints the clip's ground truth beside
the detections, and the corpus it builds by default needs nothing outside the repository."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from atst_sed.labels import DESED_CLASSES
from atst_sed.models.checkpoint import save_checkpoint
from atst_sed.models.encoder import EncoderConfig
from atst_sed.models.sed import SEDModel

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "recipes" / "mini" / "demo.sh"
AUDIO = "corpus/audio/validation/validation_16k"
LABELS = "corpus/metadata/validation/validation.tsv"


def run_demo(demo_dir: Path, *steps: str) -> subprocess.CompletedProcess:
    """``bash recipes/mini/demo.sh STEP…`` with this interpreter's atst-sed first on PATH, running the
    code of this checkout."""
    env = {**os.environ, "DEMO_DIR": str(demo_dir),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.run(["bash", str(DEMO), *steps], capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    model = SEDModel(EncoderConfig.named("frame_tiny"), DESED_CLASSES)
    path = tmp_path_factory.mktemp("ckpt") / "best.ckpt"
    return save_checkpoint(path, model, classes=list(DESED_CLASSES))


def _demo_dir(tmp_path: Path, checkpoint: Path, n_clips: int) -> Path:
    """A demo folder holding a trained model where the train step puts it and ``n_clips`` test clips
    with long names (their listing is far larger than a pipe's 64 KiB buffer)."""
    demo = tmp_path / "demo"
    target = demo / "runs/mini/distill_c2f/checkpoints/best.ckpt"
    target.parent.mkdir(parents=True)
    target.write_bytes(checkpoint.read_bytes())
    audio = demo / AUDIO
    audio.mkdir(parents=True)
    (demo / LABELS).parent.mkdir(parents=True)
    wave = np.random.default_rng(0).standard_normal(16000 * 2).astype(np.float32) * 0.05
    sf.write(audio / "template.wav", wave, 16000)
    data = (audio / "template.wav").read_bytes()
    (audio / "template.wav").unlink()
    rows = ["filename\tonset\toffset\tevent_label"]
    for i in range(n_clips):
        name = f"clip_{i:05d}_{'x' * 80}.wav"
        (audio / name).write_bytes(data)
        if i == 7:  # the first clip with two labelled events: the one the demo must show
            rows += [f"{name}\t0.250\t1.000\tDog", f"{name}\t0.500\t1.750\tSpeech"]
        elif i % 3 == 0:
            rows.append(f"{name}\t0.100\t0.900\tCat")
        else:
            rows.append(f"{name}\t\t\t")
    (demo / LABELS).write_text("\n".join(rows) + "\n")
    return demo


def test_detect_step_among_thousands_of_clips_shows_ground_truth_beside_detections(tmp_path, checkpoint):
    demo = _demo_dir(tmp_path, checkpoint, n_clips=1500)
    listing = sum(len(str(p)) + 1 for p in (demo / AUDIO).iterdir())
    assert listing > 4 * 65536  # `ls … | head -n 1` would have to die of SIGPIPE here
    done = run_demo(demo, "detect")
    assert done.returncode == 0, done.stderr
    chosen = f"clip_00007_{'x' * 80}.wav"
    assert f"atst-sed detect {demo / AUDIO / chosen}" in done.stdout
    lines = done.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if "ground truth (s)" in line)
    by_class = {line.split()[0]: line for line in lines[header + 1:] if line.startswith("   ") and line.split()}
    assert "0.25–1.00" in by_class["Dog"] and "0.50–1.75" in by_class["Speech"]
    detections = (demo / "detections.csv").read_text().splitlines()
    assert detections[0] == "filename,onset,offset,event_label,score"
    for row in detections[1:]:  # every detection is listed under its class with its score
        _, onset, offset, label, score = row.split(",")
        assert f"{float(onset):.2f}–{float(offset):.2f} ({float(score):.2f})" in by_class[label]


def test_detect_step_without_clips_says_what_to_run(tmp_path, checkpoint):
    demo = _demo_dir(tmp_path, checkpoint, n_clips=0)
    done = run_demo(demo, "detect")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"demo: {demo / AUDIO}: no test clip (*.wav); run the corpus step first (demo.sh corpus)")
    assert not (demo / "detections.csv").exists()


def test_detect_step_without_a_model_says_what_to_run(tmp_path):
    done = run_demo(tmp_path / "empty", "detect")
    assert done.returncode == 1
    assert "no trained model; run the train step first (demo.sh train)" in done.stderr


def test_an_unknown_step_is_refused_before_anything_runs(tmp_path):
    done = run_demo(tmp_path / "d", "corpus", "detekt")
    assert done.returncode == 2
    assert done.stderr.strip() == "demo: unknown step 'detekt' (steps: corpus pretrain train detect table)"
    assert not (tmp_path / "d").exists()


def test_the_demo_corpus_uses_nothing_outside_the_repository(tmp_path, monkeypatch, micro):
    """`prepare synth`'s defaults take no real speech from anywhere (not ../shared/audio, not an
    environment variable): a newcomer's clone builds the same corpus as any other checkout."""
    from atst_sed.data.synth import prepare_synth

    speech = tmp_path / "speech"
    speech.mkdir()
    sf.write(speech / "talk_en.wav", np.random.default_rng(1).standard_normal(32000) * 0.1, 16000)
    monkeypatch.setenv("ATST_SED_SPEECH_DIR", str(speech))  # honoured by earlier versions
    prepare_synth(tmp_path / "corpus", seed=3, size=micro, jobs=1)
    params = json.loads((tmp_path / "corpus" / "synth.json").read_text())
    assert params["source_files"] == {}
    assert "No real audio" in (tmp_path / "corpus" / "README.md").read_text()
    demo = DEMO.read_text()
    assert "shared" not in demo  # no branch that depends on what lies beside the checkout
