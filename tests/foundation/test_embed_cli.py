"""`atst-sed embed` on the real recordings with a checkpoint in the official (Lightning) layout."""

from __future__ import annotations

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
