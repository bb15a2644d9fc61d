"""`atst-sed prepare custom`: your own classes, label TSVs and audio (any rate, channels, format,
sub-folders) become a corpus that `atst-sed train recipes/custom` trains on and `detect` uses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from atst_sed.audio import load_audio
from atst_sed.cli.main import main
from atst_sed.data import DataConfig, SEDDataModule
from atst_sed.data.corpus import SETS, read_manifest
from atst_sed.data.custom import prepare_custom, read_classes
from atst_sed.errors import InputError
from atst_sed.models.checkpoint import load_checkpoint
from atst_sed.timegrid import ATST_GRID

REPO = Path(__file__).resolve().parents[2]
# four DESED classes under our own names; events of the other classes are left out
RENAME = {"Speech": "talk", "Dog": "bark", "Blender": "whirr", "Running_water": "tap"}
CLASSES = list(RENAME.values())


def _user_strong(src: Path, out: Path) -> Path:
    full = pd.read_csv(src, sep="\t")
    df = full[full["event_label"].isin(RENAME)].copy()
    df["event_label"] = df["event_label"].map(RENAME)
    quiet = sorted(set(full["filename"]) - set(df["filename"]))  # clips left without events: one empty row
    df = pd.concat([df, pd.DataFrame({"filename": quiet})], ignore_index=True)
    df["filename"] = df["filename"].str.replace(".wav", ".flac", regex=False).map(lambda f: f"rec/{f}")
    df.to_csv(out, sep="\t", index=False)
    return out


def _user_weak(src: Path, out: Path) -> Path:
    df = pd.read_csv(src, sep="\t", keep_default_na=False)
    df["event_labels"] = df["event_labels"].map(lambda s: ",".join(RENAME[c] for c in s.split(",") if c in RENAME))
    df["filename"] = df["filename"].str.replace(".wav", ".flac", regex=False).map(lambda f: f"rec/{f}")
    df.to_csv(out, sep="\t", index=False)
    return out


def _user_audio(corpus: Path, set_name: str, out: Path) -> Path:
    """The set's clips as 44.1 kHz stereo FLAC in a sub-folder `rec/` (a user's recorder layout)."""
    folder = out / "rec"
    folder.mkdir(parents=True)
    for path in sorted((corpus / SETS[set_name].audio).glob("*.wav")):
        wave, sr = sf.read(path)
        t = np.linspace(0, len(wave), int(len(wave) * 44100 / sr), endpoint=False)
        up = np.interp(t, np.arange(len(wave)), wave)
        sf.write(folder / path.with_suffix(".flac").name, np.stack([up, 0.5 * up], axis=1), 44100)
    return out


@pytest.fixture(scope="module")
def user_data(tiny_corpus, tmp_path_factory):
    base = tmp_path_factory.mktemp("user_data")
    parts = {}
    for part, set_name in (("strong", "synth_train"), ("validation", "synth_val"), ("test", "test")):
        parts[part] = (_user_strong(tiny_corpus / SETS[set_name].labels, base / f"{part}.tsv"),
                       _user_audio(tiny_corpus, set_name, base / part))
    parts["weak"] = (_user_weak(tiny_corpus / SETS["weak"].labels, base / "weak.tsv"), _user_audio(tiny_corpus, "weak", base / "weak"))
    parts["unlabeled"] = (None, _user_audio(tiny_corpus, "unlabeled", base / "unlabeled"))
    return base, parts


@pytest.fixture(scope="module")
def custom_corpus(user_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("custom") / "corpus"
    prepare_custom(root, CLASSES, user_data[1], jobs=1)
    return root


def test_parts_fill_the_dcase_slots_at_16_khz_with_the_users_classes(custom_corpus, user_data):
    index = json.loads((custom_corpus / "manifests" / "index.json").read_text())
    assert index["classes"] == CLASSES and index["corpus"] == "custom"
    assert sorted(index["sets"]) == ["strong_real", "synth_val", "test", "unlabeled", "weak"]
    counts = {name: len(read_manifest(custom_corpus, name)) for name in index["sets"]}
    assert counts == {"strong_real": 24, "weak": 12, "unlabeled": 24, "synth_val": 12, "test": 12}
    manifest = read_manifest(custom_corpus, "strong_real")
    first = custom_corpus / manifest["path"][0]
    info = sf.info(str(first))
    assert (info.samplerate, info.channels) == (16000, 1) and manifest["filename"][0].startswith("rec/")
    source = user_data[1]["strong"][1] / Path(manifest["filename"][0]).with_suffix(".flac")
    np.testing.assert_allclose(load_audio(first).numpy(), load_audio(source).numpy(), atol=2e-4)  # PCM-16 copy
    labels = pd.read_csv(custom_corpus / SETS["strong_real"].labels, sep="\t")
    assert labels["filename"].str.endswith(".wav").all() and set(labels["event_label"].dropna()) <= set(CLASSES)
    durations = pd.read_csv(custom_corpus / SETS["test"].durations, sep="\t")
    assert len(durations) == 12 and (durations["duration"] > 0).all()
    dm = SEDDataModule(DataConfig(root=str(custom_corpus), strong_sets=["strong_real"], num_workers=0), ATST_GRID)
    assert dm.classes == tuple(CLASSES)  # from the corpus index
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["strong"].shape[-1] == batch["weak"].shape[-1] == 4


def test_rerun_keeps_the_corpus_and_problems_name_file_and_line(custom_corpus, user_data, tmp_path, capsys):
    before = json.loads((custom_corpus / "fingerprint.json").read_text())
    again = prepare_custom(custom_corpus, CLASSES, user_data[1], jobs=1)
    assert again["fingerprint"] == before["fingerprint"] and again["missing_files"] == 0
    bad = tmp_path / "bad.tsv"
    bad.write_text("filename\tonset\toffset\tevent_label\nrec/a.flac\t0.1\t0.5\ttalk\nrec/b.flac\t0.1\t0.5\tmeow\n")
    with pytest.raises(InputError, match="meow") as info:
        prepare_custom(tmp_path / "c1", CLASSES, {"strong": (bad, user_data[1]["strong"][1])})
    assert info.value.path == str(bad) and info.value.line == 3
    # a listed clip without audio is reported, the others are prepared
    gone = tmp_path / "gone.tsv"
    gone.write_text(user_data[1]["test"][0].read_text() + "rec/not_recorded.flac\t0.1\t0.2\ttalk\n")
    report = prepare_custom(tmp_path / "c2", CLASSES, {"test": (gone, user_data[1]["test"][1])}, jobs=1)
    assert report["missing_files"] == 1 and report["sets"]["test"] == {"listed": 13, "present": 12, "missing": 1}
    assert "rec/not_recorded.wav\tno audio file" in (tmp_path / "c2" / "missing_files.tsv").read_text()
    assert main(["prepare", "custom", "--root", str(tmp_path / "c3"), "--classes", "talk,bark",
                 "--test", str(tmp_path / "nothing.tsv"), str(tmp_path)]) == 2
    assert "nothing.tsv" in capsys.readouterr().err
    (tmp_path / "classes.txt").write_text("# mine\ntalk\nbark\n\n")
    assert read_classes(str(tmp_path / "classes.txt")) == ["talk", "bark"] and read_classes("a, b") == ["a", "b"]
    with pytest.raises(InputError, match="duplicate"):
        read_classes("a,a")


def test_train_recipes_custom_and_detect_with_the_users_classes(custom_corpus, tmp_path, capsys):
    fast = ["data.batch_size=8", "data.num_workers=0", "data.epoch_length=2", "trainer.max_epochs=1",
            "trainer.log_every_n_steps=1", "validation.evaluator=sed_scores_eval", "models.frame.encoder=frame_tiny",
            "models.frame.variant=null"]
    assert main(["train", str(REPO / "recipes" / "custom"), f"data.root={custom_corpus}", "--root-dir", str(tmp_path), *fast]) == 0
    ckpt = load_checkpoint(tmp_path / "custom" / "finetune_frame" / "checkpoints" / "best.ckpt")
    assert ckpt.classes == CLASSES and ckpt.model.head.linear.out_features == 4
    tested = json.loads((tmp_path / "custom" / "test" / "student" / "metrics.json").read_text())
    assert set(tested["event_f1"]["class_wise"]) == set(CLASSES)
    clip = next((custom_corpus / SETS["test"].audio).rglob("*.wav"))
    assert main(["detect", str(clip), "--checkpoint", str(tmp_path / "custom" / "finetune_frame" / "checkpoints" / "best.ckpt"),
                 "--thresholds", "0.0", "-o", str(tmp_path / "events.csv")]) == 0
    events = pd.read_csv(tmp_path / "events.csv")
    assert len(events) and set(events["event_label"]) <= set(CLASSES)
    assert torch.load(tmp_path / "custom" / "finetune_frame" / "checkpoints" / "best.ckpt", weights_only=True)["classes"] == CLASSES


def test_the_data_prep_script_is_the_cli(tmp_path, user_data):
    script = REPO / "data_prep" / "prepare_custom.py"
    done = subprocess.run([sys.executable, str(script), "--root", str(tmp_path / "c"), "--classes", ",".join(CLASSES),
                           "--test", str(user_data[1]["test"][0]), str(user_data[1]["test"][1]), "--jobs", "1"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["sets"]["test"]["present"] == 12
