"""`atst-sed embed` on the real recordings with a checkpoint in the official (Lightning) layout."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from foundation_helpers import pretraining_checkpoint, reference_encoder, reference_logmel

from atst_sed.audio import load_audio
from atst_sed.cli.main import main
from atst_sed.frontend import LogMelFrontend
from atst_sed.models.checkpoint import load_checkpoint

WIDTH = 384  # ATST-Frame small


@pytest.fixture(scope="module")
def frame_small_ckpt(tmp_path_factory):
    """A Lightning pretraining file of ATST-Frame small (random weights, full published key set)."""
    raw, teacher = pretraining_checkpoint(WIDTH, 12, "frame")
    path = tmp_path_factory.mktemp("ckpt") / "atstframe_small.ckpt"
    torch.save(raw, path)
    return path, teacher


def _embed(tmp_path, audio, ckpt, *extra):
    out = tmp_path / "out.npz"
    rc = main(["embed", str(audio), "--checkpoint", str(ckpt), "-o", str(out), "--device", "cpu", *extra])
    return rc, out


def test_embed_10s_speech_matches_frontend_encoder_and_reference(frame_small_ckpt, shared_audio, tmp_path):
    ckpt, teacher = frame_small_ckpt
    audio = shared_audio / "speech_en_10s.wav"
    rc, out = _embed(tmp_path, audio, ckpt)
    assert rc == 0
    with np.load(out, allow_pickle=False) as npz:
        got = {k: npz[k] for k in npz.files}
    assert got["features"].shape == (64, 1001) and got["features"].dtype == np.float32
    assert got["embeddings"].shape == (250, WIDTH) and got["embeddings"].dtype == np.float32
    assert "cls" not in got
    np.testing.assert_array_equal(got["blocks"], [11])
    np.testing.assert_allclose(got["timestamps"], 0.04 * np.arange(250), atol=1e-12)
    np.testing.assert_array_equal(got["token_frames"], 4 * np.arange(250))
    assert float(got["duration"]) == 10.0 and int(got["sample_rate"]) == 16000

    wave = load_audio(audio)
    features = LogMelFrontend()(wave)
    np.testing.assert_array_equal(got["features"], features.numpy())
    np.testing.assert_allclose(got["features"], reference_logmel(sf.read(audio, dtype="float32")[0]), atol=1e-4)
    encoder = load_checkpoint(ckpt).encoder
    with torch.no_grad():
        direct = encoder(features[None]).frames[0]
    np.testing.assert_allclose(got["embeddings"], direct.numpy(), atol=1e-5, rtol=0)


def test_embed_all_blocks_on_4s_speech(frame_small_ckpt, shared_audio, tmp_path):
    ckpt, teacher = frame_small_ckpt
    audio = shared_audio / "speech_zh_4s.wav"
    rc, out = _embed(tmp_path, audio, ckpt, "--blocks", "all")
    assert rc == 0
    n_samples = sf.info(audio).frames
    frames, tokens = n_samples // 160 + 1, (n_samples // 160 + 1) // 4
    with np.load(out) as npz:
        features, emb, blocks = npz["features"], npz["embeddings"], npz["blocks"]
    assert features.shape == (64, frames) and emb.shape == (12, tokens, WIDTH)
    np.testing.assert_array_equal(blocks, np.arange(12))
    encoder = load_checkpoint(ckpt).encoder
    with torch.no_grad():
        direct = encoder(torch.from_numpy(features)[None], layers=[0, 5, 11])
    for i, block in enumerate((0, 5, 11)):
        np.testing.assert_allclose(emb[block], direct[i].frames[0].numpy(), atol=1e-5, rtol=0)
    # the independent reference forward (float64) on the file's own features, first and last block
    ref = reference_encoder({k: v.double() for k, v in teacher.items()}, torch.from_numpy(features)[None].double(),
                            blocks=(0, -1))
    np.testing.assert_allclose(emb[0], ref[0][0][0].numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(emb[11], ref[1][0][0].numpy(), atol=1e-4, rtol=0)
    wave, _ = sf.read(audio, dtype="float32")
    np.testing.assert_allclose(features, reference_logmel(wave), atol=1e-4)


def test_embed_long_audio_in_consecutive_1001_frame_chunks(frame_small_ckpt, shared_audio, tmp_path):
    ckpt, _ = frame_small_ckpt
    en, _ = sf.read(shared_audio / "speech_en_10s.wav", dtype="float32")
    zh, _ = sf.read(shared_audio / "speech_zh_4s.wav", dtype="float32")
    long = tmp_path / "long.wav"
    sf.write(long, np.concatenate([en, zh]), 16000, subtype="FLOAT")
    rc, out = _embed(tmp_path, long, ckpt)
    assert rc == 0
    n_frames = (en.size + zh.size) // 160 + 1
    with np.load(out) as npz:
        features, emb, ts, chunks = npz["features"], npz["embeddings"], npz["timestamps"], npz["chunk_frames"]
    assert features.shape == (64, n_frames)
    np.testing.assert_array_equal(chunks, [[0, 1001], [1001, n_frames]])
    second = (n_frames - 1001) // 4
    assert emb.shape == (250 + second, WIDTH)
    encoder = load_checkpoint(ckpt).encoder
    with torch.no_grad():
        first_chunk = encoder(torch.from_numpy(features[None, :, :1001])).frames[0]
        last_chunk = encoder(torch.from_numpy(features[None, :, 1001:])).frames[0]
    np.testing.assert_allclose(emb[:250], first_chunk.numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(emb[250:], last_chunk.numpy(), atol=1e-5, rtol=0)
    assert ts[249] == pytest.approx(9.96) and ts[250] == pytest.approx(10.01)  # exact chunk start, no drift


def test_bad_audio_exits_2_with_one_line(frame_small_ckpt, tmp_path, capsys):
    ckpt, _ = frame_small_ckpt
    bad = tmp_path / "noise.wav"
    bad.write_bytes(b"definitely not a RIFF file" * 20)
    rc, out = _embed(tmp_path, bad, ckpt)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and not out.exists()
    assert len(err.splitlines()) == 1 and str(bad) in err and "Traceback" not in err


@pytest.mark.parametrize("content", ["text", "payload"])
def test_bad_checkpoint_exits_2_with_one_line(content, shared_audio, tmp_path, capsys):
    ckpt = tmp_path / "bad.ckpt"
    if content == "text":
        ckpt.write_text("not a checkpoint\n")
    else:
        torch.save({"state_dict": {}, "hook": print}, ckpt)
    rc, out = _embed(tmp_path, shared_audio / "speech_zh_4s.wav", ckpt)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and not out.exists()
    assert len(err.splitlines()) == 1 and str(ckpt) in err


def test_console_script_lists_embed():
    exe = Path(sys.executable).with_name("atst-sed")
    result = subprocess.run([str(exe), "embed", "--help"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "--blocks" in result.stdout and "embeddings" in result.stdout
    top = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=300)
    assert top.returncode == 0 and "embed" in top.stdout, top.stderr


def test_too_short_audio_exits_2(frame_small_ckpt, tmp_path, capsys):
    ckpt, _ = frame_small_ckpt
    short = tmp_path / "click.wav"
    sf.write(short, np.full(300, 0.5, dtype=np.float32), 16000)
    rc, out = _embed(tmp_path, short, ckpt)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and not out.exists() and str(short) in err and "too short" in err


def test_cuda_request_without_cuda_is_a_clear_error(frame_small_ckpt, shared_audio, tmp_path, capsys):
    ckpt, _ = frame_small_ckpt
    out = tmp_path / "cuda.npz"
    rc = main(["embed", str(shared_audio / "speech_zh_4s.wav"), "--checkpoint", str(ckpt), "-o", str(out),
               "--device", "cuda"])
    if torch.cuda.is_available():  # bf16 autocast on the GPU: close to the fp32 CPU result
        assert rc == 0
        with np.load(out) as npz:
            features, emb = npz["features"], npz["embeddings"]
        with torch.no_grad():
            direct = load_checkpoint(ckpt).encoder(torch.from_numpy(features)[None]).frames[0].numpy()
        assert np.abs(emb - direct).max() < 0.1
    else:
        err = capsys.readouterr().err.strip()
        assert rc == 2 and "CUDA" in err and len(err.splitlines()) == 1 and not out.exists()


# ------------------------------------------------------------------ several inputs (files, folders, globs)
@pytest.fixture
def tiny_ckpt(tmp_path):
    from atst_sed.models.checkpoint import save_checkpoint
    from atst_sed.models.encoder import ATSTEncoder, EncoderConfig

    return save_checkpoint(tmp_path / "frame_tiny.ckpt", ATSTEncoder(EncoderConfig.named("frame_tiny")))


def _noise(seconds: float, sr: int = 16000, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(seconds * sr)) * 0.1).astype(np.float32)


def test_embed_takes_files_folders_and_globs_one_npz_each(tiny_ckpt, tmp_path, capsys):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    sf.write(folder / "a.wav", _noise(3.0), 16000)
    sf.write(folder / "sub" / "b.flac", _noise(2.0, 44100, seed=1), 44100)
    (folder / "broken.wav").write_text("not audio")
    more = tmp_path / "more"
    more.mkdir()
    sf.write(more / "c.ogg", _noise(1.5, 22050, seed=2), 22050)
    out = tmp_path / "emb"
    rc = main(["embed", str(folder), str(more / "*.ogg"), "-c", str(tiny_ckpt), "-o", str(out), "--device", "cpu"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1  # one file could not be used; the others were written
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.npz")) == ["a.npz", "c.npz", "sub/b.npz"]
    assert len(err) == 2 and "broken.wav" in err[0] and err[0].startswith("atst-sed embed: ")
    assert re.match(rf"^atst-sed embed: 3 files \(last block\) → {re.escape(str(out))} \(\d+\.\d s\); 1 problem \(above\)$",
                    err[1]), err[1]
    # each .npz is what embedding the file on its own writes
    single = tmp_path / "b.npz"
    assert main(["embed", str(folder / "sub" / "b.flac"), "-c", str(tiny_ckpt), "-o", str(single), "--device", "cpu"]) == 0
    with np.load(out / "sub" / "b.npz") as many, np.load(single) as one:
        assert sorted(many.files) == sorted(one.files)
        for key in one.files:
            np.testing.assert_array_equal(many[key], one[key])
    assert float(np.load(out / "c.npz")["duration"]) == pytest.approx(1.5)


def test_one_file_into_an_existing_folder_is_named_after_the_file(tiny_ckpt, tmp_path, capsys):
    sf.write(tmp_path / "rec.wav", _noise(1.0), 16000)
    (tmp_path / "out").mkdir()
    assert main(["embed", str(tmp_path / "rec.wav"), "-c", str(tiny_ckpt), "-o", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "rec.npz").is_file()
    assert re.match(rf"^atst-sed embed: 1 file \(last block\) → {re.escape(str(tmp_path / 'out'))} \(\d+\.\d s\)$",
                    capsys.readouterr().err.strip())


@pytest.mark.parametrize("case", ["same name twice", "several inputs to stdout"])
def test_outputs_that_cannot_take_the_inputs_are_refused_before_any_work(case, tiny_ckpt, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    sf.write(folder / "x.wav", _noise(1.0), 16000)
    sf.write(folder / "x.flac", _noise(1.0), 16000)
    out = tmp_path / "emb" if case == "same name twice" else "-"
    rc = main(["embed", str(folder), "-c", str(tiny_ckpt), "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    if case == "same name twice":
        assert "x.npz" in err and "x.flac" in err and "x.wav" in err and not list(tmp_path.rglob("*.npz"))
    else:
        assert "-o with several inputs needs a folder, not standard output" in err


def test_the_readme_embedding_examples_run_as_written(tiny_ckpt, tmp_path, monkeypatch):
    from readme import commands

    examples = commands("Embeddings")
    assert [args[0] for args in examples] == ["embed", "embed"]
    # the files the examples name, in a fresh folder
    monkeypatch.chdir(tmp_path)
    Path("atstframe_base.ckpt").write_bytes(tiny_ckpt.read_bytes())
    sf.write("recording.wav", _noise(2.0), 16000)
    Path("recordings/sub").mkdir(parents=True)
    sf.write("recordings/a.wav", _noise(1.0), 16000)
    sf.write("recordings/sub/b.wav", _noise(1.0, seed=1), 16000)
    Path("more").mkdir()
    sf.write("more/c.flac", _noise(1.0, 44100, seed=2), 44100)
    for args in examples:
        assert main(args) == 0, args
    assert np.load("recording.npz")["embeddings"].shape == (50, 64)
    written = sorted(p.as_posix() for p in Path("embeddings").rglob("*.npz"))
    assert written == ["embeddings/a.npz", "embeddings/c.npz", "embeddings/sub/b.npz"]
    assert np.load("embeddings/sub/b.npz")["embeddings"].shape == (2, 25, 64)  # --blocks all: both blocks
