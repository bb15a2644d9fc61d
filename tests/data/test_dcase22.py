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


# ------------------------------------------------------------------ the AudioSet strong set and ATST-SED's split
STRONG_CLIPS = [f"Ystrong{i:02d}_0.000_10.000.wav" for i in range(12)]
STRONG_GONE = "Ystrong05_0.000_10.000.wav"  # listed in audioset_strong.tsv, no longer on YouTube


@pytest.fixture
def strong_remote(tmp_path):
    """A fake Zenodo audioset_strong.tsv (12 clips, two events each) and its YouTube clips (one gone)."""
    base = tmp_path / "strong_remote"
    base.mkdir()
    rows = "".join(f"{name}\t{0.5 + i % 3:.3f}\t{4.0 + i % 3:.3f}\tDog\n{name}\t6.000\t9.000\tSpeech\n" for i, name in enumerate(STRONG_CLIPS))
    (base / "audioset_strong.tsv").write_text("filename\tonset\toffset\tevent_label\n" + rows)
    (base / "audio").mkdir()
    for i, name in enumerate(STRONG_CLIPS):
        if name != STRONG_GONE:
            sf.write(base / "audio" / name, _tone(10.0, seed=40 + i), SR_REMOTE)
    return base


def _fake_strong_download(monkeypatch, strong_remote, calls):
    def download_file(url, path):
        calls.append(url)
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(strong_remote / "audioset_strong.tsv", path)

    def download_audioset_files_from_csv(tsv, folder, missing_files_tsv=None):
        calls.append("strong audio")
        names = pd.read_csv(tsv, sep="\t")["filename"].unique()
        shutil.copytree(strong_remote / "audio", folder, dirs_exist_ok=True)
        gone = [n for n in names if not (strong_remote / "audio" / n).is_file()]
        pd.DataFrame({"filename": gone, "error": "unavailable"}).to_csv(missing_files_tsv, sep="\t", index=False)

    def download_audioset_data(folder, n_jobs=3, chunk_size=10):  # the other real sets: not part of this check
        calls.append("real")

    module = types.SimpleNamespace(download_audioset_data=download_audioset_data,
                                   download=types.SimpleNamespace(download_audioset_files_from_csv=download_audioset_files_from_csv))
    monkeypatch.setattr(desed, "_import_desed", lambda: module)
    monkeypatch.setattr(desed, "_download_file", download_file)


def _write_list(path, names):
    path.write_text("filename\tonset\toffset\tevent_label\n" + "".join(f"{n}\t1.0\t2.0\tDog\n" for n in names))
    return path


def test_strong_real_is_prepared_verified_and_split_as_atst_sed(strong_remote, tmp_path, monkeypatch, capsys):
    calls: list[str] = []
    _fake_strong_download(monkeypatch, strong_remote, calls)
    root = tmp_path / "dataset"
    assert main(["prepare", "dcase22", "--root", str(root), "--download", "--strong-real", "--no-synthetic",
                 "--jobs", "1"]) == 0
    assert calls == ["real", desed.STRONG_TSV_URL, "strong audio"]
    report = json.loads(capsys.readouterr().out)
    assert report["sets"]["strong_real"] == {"listed": 12, "present": 11, "resampled": 11, "missing": 1}
    # without ATST-SED's lists: the pandas draw of 373/3373 of the listed clips (gone or not), seed 42
    drawn_train = set(pd.Series(STRONG_CLIPS).sample(frac=1 - 373 / 3373, random_state=42))
    val = [n for n in STRONG_CLIPS if n not in drawn_train]
    assert len(drawn_train) == 11 and len(val) == 1
    split = report["strong_real_split"]
    assert split["rule"] == "drawn" and (split["train"], split["val"]) == (11, 1)
    assert pd.read_csv(root / SETS["strong_real_val"].labels, sep="\t")["filename"].unique().tolist() == val
    train_present = drawn_train - {STRONG_GONE}
    assert set(read_manifest(root, "strong_real_train")["filename"]) == train_present
    assert report["sets"]["strong_real_train"]["present"] == len(train_present)
    # the gone clip is reported once, under the set the metadata lists it in
    missing = pd.read_csv(root / "missing_files.tsv", sep="\t")
    assert missing[["set", "filename"]].values.tolist() == [["strong_real", STRONG_GONE]]
    assert json.loads((root / "fingerprint.json").read_text())["missing_files"] == 1
    # labels of each part are strong_real's rows, as written
    every = pd.read_csv(root / SETS["strong_real"].labels, sep="\t")
    parts = pd.concat([pd.read_csv(root / SETS[s].labels, sep="\t") for s in ("strong_real_train", "strong_real_val")])
    assert sorted(map(tuple, parts.values.tolist())) == sorted(map(tuple, every.values.tolist()))

    # a rerun keeps the split and the fingerprint
    assert main(["prepare", "dcase22", "--root", str(root)]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["fingerprint"] == report["fingerprint"] and again["strong_real_split"] == split

    # ATST-SED's lists: their clips validate, the listed training clips train, the rest stays out
    val_list = _write_list(tmp_path / "audioset_strong_val.tsv", STRONG_CLIPS[:3] + ["Ynot_in_this_copy_0.000_10.000.wav"])
    train_list = _write_list(tmp_path / "audioset_strong_train.tsv", STRONG_CLIPS[3:10])
    assert main(["prepare", "dcase22", "--root", str(root), "--strong-val-list", str(val_list),
                 "--strong-train-list", str(train_list)]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["strong_real_split"] | {"val_list": None, "train_list": None} == {
        "rule": "lists", "atst_sed_lists": False, "train": 7, "val": 3, "val_list_unknown": 1, "left_out": 2,
        "train_list_unknown": 0, "val_list": None, "train_list": None}
    assert listed["fingerprint"] != report["fingerprint"]
    assert set(read_manifest(root, "strong_real_val")["filename"]) == set(STRONG_CLIPS[:3])
    assert set(read_manifest(root, "strong_real_train")["filename"]) == set(STRONG_CLIPS[3:10]) - {STRONG_GONE}
    durations = pd.read_csv(root / SETS["strong_real_val"].durations, sep="\t")
    assert sorted(durations["filename"]) == STRONG_CLIPS[:3] and (durations["duration"] == 10.0).all()

    # the DataModule trains on one part and validates on the other
    dm = SEDDataModule(DataConfig(root=str(root), num_workers=0, batch_size=2, proportions={"strong": 1},
                                  strong_sets=["strong_real_train"], val_set="strong_real_val", test_set="strong_real_val"),
                       ATST_GRID)
    dm.setup()
    assert set(dm.ground_truth("val")["filename"]) == set(STRONG_CLIPS[:3])
    batch = next(iter(dm.train_dataloader()))
    assert set(batch["filenames"]) <= set(STRONG_CLIPS[3:10]) and bool(batch["has_strong"].all())


def test_atst_sed_lists_are_recognised_by_their_digest(monkeypatch):
    from atst_sed.data import splits

    names = [f"Y{i}_0.000_10.000.wav" for i in range(6)]
    monkeypatch.setitem(splits.ATST_SED_LISTS_SHA256, "val", splits.names_digest(list(reversed(names[:2]))))
    assert splits.split_strong_real(names, val_list=names[:2])[2]["atst_sed_lists"] is True
    assert splits.split_strong_real(names, val_list=names[:3])[2]["atst_sed_lists"] is False
    with pytest.raises(ValueError, match="both"):
        splits.split_strong_real(names, val_list=names[:2], train_list=names[1:])


def test_split_lists_without_strong_labels_are_one_clear_error(remote, tmp_path, monkeypatch, capsys):
    calls: list[str] = []
    monkeypatch.setattr(desed, "_import_desed", lambda: _fake_desed(remote, calls))
    root = tmp_path / "dataset"
    lst = _write_list(tmp_path / "val.tsv", STRONG_CLIPS[:2])
    assert main(["prepare", "dcase22", "--root", str(root), "--download", "--no-synthetic", "--strong-val-list", str(lst)]) == 2
    err = capsys.readouterr().err
    assert "audioset_strong.tsv" in err and len(err.strip().splitlines()) == 1
