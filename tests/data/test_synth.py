"""The synthetic corpus: layout, DESED formats, coverage, durations, determinism, distinct classes."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import soundfile as sf

from atst_sed.data import sources as src
from atst_sed.data.corpus import SETS, read_manifest
from atst_sed.data.synth import SIZES, SYNTH_SETS, prepare_synth, render_clip
from atst_sed.errors import AtstSedError
from atst_sed.events import read_durations_tsv, read_strong_tsv, read_weak_tsv
from atst_sed.labels import DESED_CLASSES


def _hashes(root):
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_layout_formats_and_durations(tiny_corpus):
    root = tiny_corpus
    sizes = SIZES["tiny"]
    for name in SYNTH_SETS:
        manifest = read_manifest(root, name)
        assert len(manifest) == getattr(sizes, name)
        for path, n in zip(manifest["path"], manifest["num_samples"]):
            info = sf.info(str(root / path))
            assert (info.samplerate, info.channels, info.frames) == (16000, 1, n)
            assert path.startswith(SETS[name].audio)
    for name in ("synth_train", "synth_val", "test"):
        spec = SETS[name]
        lengths = dict(zip(read_manifest(root, name)["filename"], read_manifest(root, name)["duration"]))
        durations = read_durations_tsv(root / spec.durations) if spec.durations else lengths
        assert durations == pytest.approx(lengths)
        events = read_strong_tsv(root / spec.labels, DESED_CLASSES, durations, merge_overlaps=False)
        assert set(events["filename"]) == set(lengths)  # every clip listed (empty clips as one row)
        ev = events.dropna()
        assert (ev["offset"] <= ev["filename"].map(lengths) + 1e-9).all()
        dur = ev["offset"] - ev["onset"]
        assert dur.min() >= 0.3 - 1e-9 and dur.max() <= 10.0 + 1e-9
        assert set(ev["event_label"]) == set(DESED_CLASSES), name  # every class in every strong set
        header = (root / spec.labels).read_text().splitlines()[0]
        assert header == "filename\tonset\toffset\tevent_label"
    test_durations = read_durations_tsv(root / SETS["test"].durations)
    assert min(test_durations.values()) < 10.0  # some test clips are shorter, as in DESED
    test_events = read_strong_tsv(root / SETS["test"].labels, DESED_CLASSES)
    assert test_events["event_label"].isna().any()  # and some have no event
    weak = read_weak_tsv(root / SETS["weak"].labels, DESED_CLASSES)
    assert len(weak) == sizes.weak and all(len(labels) >= 1 for labels in weak["event_labels"])
    assert (root / SETS["weak"].labels).read_text().splitlines()[0] == "filename\tevent_labels"
    body = json.loads((root / "fingerprint.json").read_text())
    assert body["fingerprint"].startswith("sha256:") and body["missing_files"] == 0
    assert "Speech" in (root / "README.md").read_text()


def test_same_seed_identical_any_jobs_and_rerun_is_idempotent(micro, tmp_path):
    first = prepare_synth(tmp_path / "a", seed=0, size=micro, jobs=1)
    again = prepare_synth(tmp_path / "b", seed=0, size=micro, jobs=2)
    assert first == again
    assert _hashes(tmp_path / "a") == _hashes(tmp_path / "b")
    wav = tmp_path / "b" / SETS["weak"].audio / "weak_00000.wav"
    wav.unlink()  # an interrupted build: the rerun writes what is missing, identically
    assert prepare_synth(tmp_path / "b", seed=0, size=micro) == first
    assert _hashes(tmp_path / "a") == _hashes(tmp_path / "b")
    with pytest.raises(AtstSedError, match="seed"):
        prepare_synth(tmp_path / "b", seed=1, size=micro)
    other = prepare_synth(tmp_path / "c", seed=1, size=micro)
    assert other["fingerprint"] != first["fingerprint"]
    a, c = _hashes(tmp_path / "a"), _hashes(tmp_path / "c")
    assert a.keys() == c.keys()
    assert all(a[k] != c[k] for k in a if k.endswith(".wav"))
    assert a["metadata/train/synthetic21_train/soundscapes.tsv"] != c["metadata/train/synthetic21_train/soundscapes.tsv"]


def test_different_seed_gives_different_clips():
    for index in range(3):
        wave0, clip0 = render_clip(0, "synth_train", index, "Dog", None, {})
        wave1, clip1 = render_clip(1, "synth_train", index, "Dog", None, {})
        again, clip_again = render_clip(0, "synth_train", index, "Dog", None, {})
        np.testing.assert_array_equal(wave0, again)
        assert clip0.events == clip_again.events
        assert clip0.events != clip1.events
        assert not np.array_equal(wave0[:1000], wave1[:1000])


def _profile(x):
    """Crude hand-made signature: band levels and their variation over time, spectral flatness
    (tonal vs noisy), energy modulation and spectral centroid."""
    frames = x[: len(x) // 512 * 512].reshape(-1, 512) * np.hanning(512)
    power = np.abs(np.fft.rfft(frames, axis=1))[:, 1:257] ** 2 + 1e-9
    bands = np.log(power.reshape(len(power), 32, 8).mean(-1))
    flatness = np.exp(np.log(power).mean(1)) / power.mean(1)
    energy = np.log(power.sum(1))
    centroid = (power * np.arange(256)).sum(1) / power.sum(1) / 256
    extra = [4 * flatness.mean(), 4 * flatness.std(), energy.std() / 2, 4 * centroid.mean(), 4 * centroid.std()]
    return np.concatenate([bands.mean(0) / 5, bands.std(0) / 5, extra])


def test_classes_have_distinct_signatures():
    """1-nearest-neighbour on crude spectral profiles recognises fresh events of every class well
    above chance (10 %) but not perfectly: distinct yet not trivial (measured: 0.88)."""
    rng = np.random.default_rng(0)
    n = 16000 * 2

    def draw(label):
        return _profile(src.render_event(label, n, rng))

    train = np.stack([draw(c) for c in DESED_CLASSES for _ in range(10)])
    labels = np.repeat(np.arange(len(DESED_CLASSES)), 10)
    scale = train.std(0) + 1e-6
    hits = np.zeros(len(DESED_CLASSES))
    for k, c in enumerate(DESED_CLASSES):
        for _ in range(5):
            nearest = labels[np.argmin((((draw(c) - train) / scale) ** 2).sum(1))]
            hits[k] += nearest == k
    assert hits.sum() / hits.size / 5 >= 0.75
    assert (hits >= 2).all()  # no class is lost among the others


def test_every_generator_gives_finite_unit_rms_audio_of_the_asked_length():
    rng = np.random.default_rng(3)
    for label in DESED_CLASSES:
        for n in (4800, 16000 * 10):
            x = src.render_event(label, n, rng)
            assert x.shape == (n,) and np.isfinite(x).all()
            assert np.sqrt(np.mean(x**2)) == pytest.approx(1.0, rel=1e-6)


def test_cli_prepare_synth(micro, monkeypatch, tmp_path, capsys):
    from atst_sed.cli.main import main
    from atst_sed.data import synth

    monkeypatch.setitem(synth.SIZES, "tiny", synth.SIZES[micro])
    assert main(["prepare", "synth", "--root", str(tmp_path / "c"), "--size", "tiny", "--seed", "4"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert body["seed"] == 4 and body["sets"]["test"] == 2
    assert body == json.loads((tmp_path / "c" / "fingerprint.json").read_text())
    assert main(["prepare", "synth", "--root", str(tmp_path / "c"), "--size", "tiny", "--seed", "5"]) == 2
    err = capsys.readouterr().err
    assert "seed 4" in err and "Traceback" not in err


def _background_level(path) -> float:
    """10th percentile of the 50-ms frame RMS: the room, between the events."""
    wave, _ = sf.read(path)
    frames = wave[: len(wave) // 800 * 800].reshape(-1, 800)
    return float(np.percentile(np.sqrt((frames**2).mean(axis=1)), 10))


def test_real_strong_stand_in_and_its_atst_sed_split(tiny_corpus):
    import pandas as pd

    root = tiny_corpus
    clips = read_manifest(root, "strong_real")
    assert len(clips) == SIZES["tiny"].strong_real == 16
    train = read_manifest(root, "strong_real_train")
    val = read_manifest(root, "strong_real_val")
    # a seeded draw of 373/3373 of the clips for validation (pandas, seed 42), the rest trains
    drawn = set(pd.Series(sorted(clips["filename"])).sample(frac=1 - 373 / 3373, random_state=42))
    assert set(train["filename"]) == drawn and set(val["filename"]) == set(clips["filename"]) - drawn
    assert len(val) == 2 and set(train["path"]) | set(val["path"]) == set(clips["path"])
    assert read_durations_tsv(root / SETS["strong_real_val"].durations) == pytest.approx(dict(zip(val["filename"], val["duration"])))
    every = pd.read_csv(root / SETS["strong_real"].labels, sep="\t")
    parts = pd.concat([pd.read_csv(root / SETS[s].labels, sep="\t") for s in ("strong_real_train", "strong_real_val")])
    assert len(parts) == len(every) and set(every["event_label"].dropna()) == set(DESED_CLASSES)
    # louder rooms than the synthetic soundscapes
    level = {name: np.median([_background_level(root / p) for p in read_manifest(root, name)["path"]])
             for name in ("strong_real", "synth_train")}
    assert level["strong_real"] > 1.2 * level["synth_train"]
    index = json.loads((root / "manifests" / "index.json").read_text())
    assert {"strong_real", "strong_real_train", "strong_real_val"} <= set(index["sets"])
    assert index["strong_real_split"]["rule"] == "drawn"


def test_a_corpus_built_before_strong_real_gains_it_unchanged_otherwise(micro, tmp_path, monkeypatch):
    from atst_sed.data import synth

    root = tmp_path / "old"
    prepare_synth(root, seed=0, size=micro)
    params = json.loads((root / "synth.json").read_text())
    del params["sizes"]["strong_real"]  # what a corpus built before the set existed recorded
    (root / "synth.json").write_text(json.dumps(params))
    before = {k: v for k, v in _hashes(root).items() if k.endswith(".wav")}
    monkeypatch.setitem(synth.SIZES, micro, synth.SynthSizes(synth_train=2, weak=1, unlabeled=1, synth_val=1, test=2, strong_real=3))
    body = prepare_synth(root, seed=0, size=micro)
    after = _hashes(root)
    assert all(after[k] == v for k, v in before.items())
    assert body["sets"]["strong_real"] == 3 and body["sets"]["strong_real_train"] + body["sets"]["strong_real_val"] == 3
