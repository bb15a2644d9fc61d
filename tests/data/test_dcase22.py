"""`atst-sed prepare dcase22` against a fake DESED remote: download, resampling, missing and corrupt
clips, fingerprint, idempotent reruns."""

from __future__ import annotations

import json
import shutil
import sys
import types
import zipfile

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from atst_sed.cli.main import main
from atst_sed.data import DataConfig, SEDDataModule, desed
from atst_sed.data.corpus import SETS, read_manifest
from atst_sed.errors import AtstSedError
from atst_sed.timegrid import ATST_GRID

SHARED_VALIDATION = "validation"
SR_REMOTE = 44100


def _tone(seconds, channels=2, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR_REMOTE)) / SR_REMOTE
    x = 0.3 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t) + 0.01 * rng.standard_normal(t.size)
    return np.stack([x] * channels, axis=1)


@pytest.fixture
def remote(tmp_path):
    """A fake remote: DESED metadata, 44.1 kHz stereo clips (some never uploaded, one corrupt), and
    a dcase_synth.zip."""
    base = tmp_path / "remote"
    val_rows = [
        ("Yval_a_0.000_10.000.wav", "0.500", "3.000", "Dog"),
        ("Yval_a_0.000_10.000.wav", "2.000", "9.500", "Speech"),
        ("Yval_b_0.000_10.000.wav", "", "", ""),
        ("Yval_c_5.000_15.000.wav", "1.000", "7.100", "Blender"),  # clip shorter than 10 s
        ("Yval_gone_0.000_10.000.wav", "1.000", "2.000", "Cat"),  # never downloadable
    ]
    durations = {"Yval_a_0.000_10.000.wav": 10.0, "Yval_b_0.000_10.000.wav": 10.0,
                 "Yval_c_5.000_15.000.wav": 7.2, "Yval_gone_0.000_10.000.wav": 10.0}
    meta = base / "metadata"
    (meta / "validation").mkdir(parents=True)
    (meta / "train").mkdir(parents=True)
    (meta / "validation" / "validation.tsv").write_text(
        "filename\tonset\toffset\tevent_label\n" + "".join("\t".join(r) + "\n" for r in val_rows))
    (meta / "validation" / "validation_durations.tsv").write_text(
        "filename\tduration\n" + "".join(f"{k}\t{v}\n" for k, v in durations.items()))
    weak = {"Yweak_1_0.000_10.000.wav": "Dog,Speech", "Yweak_2_0.000_10.000.wav": "Frying",
            "Yweak_bad_0.000_10.000.wav": "Cat"}
    (meta / "train" / "weak.tsv").write_text("filename\tevent_labels\n" + "".join(f"{k}\t{v}\n" for k, v in weak.items()))
    unlabeled = ["Yun_1_0.000_10.000.wav", "Yun_2_0.000_10.000.wav", "Yun_gone_0.000_10.000.wav"]
    (meta / "train" / "unlabel_in_domain.tsv").write_text("filename\n" + "".join(f"{k}\n" for k in unlabeled))
    audio = base / "audio"
    for i, (folder, name, seconds) in enumerate([
        ("validation/validation", "Yval_a_0.000_10.000.wav", 10.0),
        ("validation/validation", "Yval_b_0.000_10.000.wav", 10.0),
        ("validation/validation", "Yval_c_5.000_15.000.wav", 7.2),
        ("train/weak", "Yweak_1_0.000_10.000.wav", 10.0),
        ("train/weak", "Yweak_2_0.000_10.000.wav", 10.0),
        ("train/unlabel_in_domain", "Yun_1_0.000_10.000.wav", 10.0),
        ("train/unlabel_in_domain", "Yun_2_0.000_10.000.wav", 10.0),
    ]):
        (audio / folder).mkdir(parents=True, exist_ok=True)
        sf.write(audio / folder / name, _tone(seconds, seed=i), SR_REMOTE)
    (audio / "train/weak/Yweak_bad_0.000_10.000.wav").write_bytes(b"RIFF\x00\x00garbage" * 10)  # corrupt
    synth = tmp_path / "synth_src" / "dcase_synth"
    for split, n in (("train", 3), ("validation", 2)):
        folder = synth / "audio" / split / f"synthetic21_{split}" / "soundscapes"
        folder.mkdir(parents=True)
        rows, durs = [], []
        for i in range(n):
            sf.write(folder / f"{i}.wav", _tone(10.0, channels=1, seed=10 + i), SR_REMOTE)
            rows.append(f"{i}.wav\t{i + 0.5:.3f}\t{i + 2.25:.3f}\tAlarm_bell_ringing\n")
            durs.append(f"{i}.wav\t10.0\n")
        mfolder = synth / "metadata" / split / f"synthetic21_{split}"
        mfolder.mkdir(parents=True)
        (mfolder / "soundscapes.tsv").write_text("filename\tonset\toffset\tevent_label\n" + "".join(rows))
        if split == "validation":
            (mfolder / "durations.tsv").write_text("filename\tduration\n" + "".join(durs))
    with zipfile.ZipFile(base / "dcase_synth.zip", "w") as z:
        for p in sorted(synth.rglob("*")):
            z.write(p, p.relative_to(synth.parent))
    return base


def _fake_desed(remote, calls):
    def download_audioset_data(folder, n_jobs=3, chunk_size=10):
        calls.append("real")
        shutil.copytree(remote / "metadata", f"{folder}/metadata", dirs_exist_ok=True)
        shutil.copytree(remote / "audio", f"{folder}/audio", dirs_exist_ok=True)

    def download_and_unpack_archive(url, folder, archive_format="zip"):
        calls.append(url)
        assert url == desed.SYNTH_URL and archive_format == "zip"
        with zipfile.ZipFile(remote / "dcase_synth.zip") as z:
            z.extractall(folder)

    module = types.SimpleNamespace(download_audioset_data=download_audioset_data)
    module.download = types.SimpleNamespace(download_and_unpack_archive=download_and_unpack_archive)
    return module


def _mtimes(root):
    return {p: p.stat().st_mtime_ns for p in sorted(root.rglob("*_16k/*.wav"))}


def test_prepare_dcase22_against_a_fake_remote(remote, tmp_path, monkeypatch, capsys):
    calls: list[str] = []
    monkeypatch.setattr(desed, "_import_desed", lambda: _fake_desed(remote, calls))
    root = tmp_path / "dataset"
    assert main(["prepare", "dcase22", "--root", str(root), "--download", "--jobs", "2"]) == 0
    assert calls == ["real", desed.SYNTH_URL]
    report = json.loads(capsys.readouterr().out)
    assert report["sets"]["test"] == {"listed": 4, "present": 3, "resampled": 3, "missing": 1}
    assert report["sets"]["weak"] == {"listed": 3, "present": 2, "resampled": 2, "missing": 1}
    assert report["sets"]["unlabeled"]["missing"] == 1 and report["sets"]["synth_train"]["present"] == 3
    assert "strong_real" not in report["sets"]

    missing = pd.read_csv(root / "missing_files.tsv", sep="\t")
    assert list(missing.columns) == ["set", "filename", "reason"]
    assert missing[["set", "filename"]].values.tolist() == [
        ["test", "Yval_gone_0.000_10.000.wav"],
        ["unlabeled", "Yun_gone_0.000_10.000.wav"],
        ["weak", "Yweak_bad_0.000_10.000.wav"],
    ]
    assert missing["reason"].tolist()[0] == "no audio file" and "readable" in missing["reason"].tolist()[2]

    clip = root / SETS["test"].audio / "Yval_c_5.000_15.000.wav"
    info = sf.info(str(clip))
    assert (info.samplerate, info.channels, info.frames) == (16000, 1, 7.2 * 16000)
    fingerprint = json.loads((root / "fingerprint.json").read_text())
    assert fingerprint["missing_files"] == 3 and fingerprint["fingerprint"] == report["fingerprint"]
    assert set(read_manifest(root, "weak")["filename"]) == {"Yweak_1_0.000_10.000.wav", "Yweak_2_0.000_10.000.wav"}
    assert (root / SETS["synth_val"].durations).is_file()

    # second run: nothing resampled, nothing rewritten, same fingerprint
    before = _mtimes(root)
    assert main(["prepare", "dcase22", "--root", str(root)]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["fingerprint"] == report["fingerprint"]
    assert all(s["resampled"] == 0 for s in again["sets"].values())
    assert _mtimes(root) == before
    assert main(["prepare", "dcase22", "--root", str(root), "--only-verify"]) == 0
    assert json.loads(capsys.readouterr().out)["fingerprint"] == report["fingerprint"]

    # the DataModule sees the usable clips only and carries the fingerprint
    dm = SEDDataModule(DataConfig(root=str(root), num_workers=0, batch_size=4, proportions={"strong": 1, "weak": 1, "unlabeled": 2}), ATST_GRID)
    dm.setup()
    assert dm.fingerprint == report["fingerprint"] and dm.missing_files == 3
    assert set(dm.ground_truth("test")["filename"]) == {"Yval_a_0.000_10.000.wav", "Yval_b_0.000_10.000.wav", "Yval_c_5.000_15.000.wav"}
    assert dm.durations("test")["Yval_c_5.000_15.000.wav"] == 7.2
    batch = next(iter(dm.train_dataloader()))
    assert batch["waveforms"].shape == (4, 160000)

    # a 16 kHz clip lost later: verify reports it and the fingerprint changes
    (root / SETS["weak"].audio / "Yweak_2_0.000_10.000.wav").unlink()
    assert main(["prepare", "dcase22", "--root", str(root), "--only-verify"]) == 0
    verified = json.loads(capsys.readouterr().out)
    assert verified["missing_files"] == 4 and verified["fingerprint"] != report["fingerprint"]
    # ... and a normal rerun restores it from the original-rate copy
    assert main(["prepare", "dcase22", "--root", str(root)]) == 0
    restored = json.loads(capsys.readouterr().out)
    assert restored["fingerprint"] == report["fingerprint"] and restored["sets"]["weak"]["resampled"] == 1


def test_download_without_desed_is_one_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "desed", None)  # import desed → ImportError
    with pytest.raises(AtstSedError, match="pip install"):
        desed.download_dcase22(tmp_path)
    assert main(["prepare", "dcase22", "--root", str(tmp_path), "--download"]) == 2
    err = capsys.readouterr().err
    assert "desed" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["prepare", "dcase22", "--root", str(tmp_path / "none")]) == 2
