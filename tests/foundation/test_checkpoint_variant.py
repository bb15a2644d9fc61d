"""ATST-Frame or ATST-Clip when a checkpoint does not say: follow the official loader, log the choice
and its reason, and let every command override it.

The ambiguous file: ``model.teacher.encoder.*`` with a ``cls_token`` and a final norm named ``norm``,
saved without hyper-parameters (an ``atst_as2M.ckpt``-style file once re-saved). ATST-SED's loader
(``desed_task/nnet/atst/atst_model.py``) reads that layout as ATST-Frame: ``norm`` becomes the frame
norm and the CLS token is dropped.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import soundfile as sf
import torch
from foundation_helpers import official_encoder_sd, reference_encoder

from atst_sed.cli.main import main
from atst_sed.errors import InputError
from atst_sed.models.checkpoint import load_checkpoint, save_checkpoint
from atst_sed.models.encoder import EncoderConfig
from atst_sed.models.factory import ModelConfig, build_model
from atst_sed.models.sed import SEDModel

WIDTH, DEPTH = 64, 2


@pytest.fixture
def resaved(tmp_path):
    """The ambiguous file and its encoder weights (official names)."""
    enc = official_encoder_sd(WIDTH, DEPTH, "frame", old_frame=True, seed=11)
    sd = {f"model.teacher.encoder.{k}": v for k, v in enc.items()}
    sd.update({f"model.student.encoder.{k}": -v for k, v in enc.items()})
    path = tmp_path / "atst_as2M_resaved.ckpt"
    torch.save({"state_dict": sd}, path)  # no hyper_parameters: the file does not say
    return path, enc


def _as_atst_sed_loader_reads_it(enc: dict) -> dict:
    """The official ATST-SED rule for this layout: final ``norm`` → ``norm_frame``, no CLS token."""
    out = {("norm_frame." + k[len("norm."):] if k.startswith("norm.") else k): v for k, v in enc.items()}
    out.pop("cls_token")
    return out


def test_without_hyper_parameters_the_layout_is_read_as_atst_sed_reads_it(resaved, caplog):
    path, enc = resaved
    with caplog.at_level(logging.INFO):
        loaded = load_checkpoint(path)
    assert loaded.encoder.config.variant == "frame" and loaded.encoder.cls_token is None
    said = [r.getMessage() for r in caplog.records if "ATST-Frame" in r.getMessage()]
    assert len(said) == 1 and "does not say" in said[0] and "ATST-SED's official loader" in said[0]
    features = torch.randn(1, 64, 1001, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = loaded.encoder(features).frames
    expected = reference_encoder(_as_atst_sed_loader_reads_it(enc), features, variant="frame")[0][0]
    torch.testing.assert_close(ours, expected, atol=2e-4, rtol=1e-4)


def test_the_variant_can_be_forced_to_clip(resaved, caplog):
    path, enc = resaved
    with caplog.at_level(logging.INFO):
        loaded = load_checkpoint(path, variant="clip")
    assert loaded.encoder.config.variant == "clip" and loaded.encoder.cls_token is not None
    assert any("ATST-Clip" in r.getMessage() and "variant given" in r.getMessage() for r in caplog.records)
    features = torch.randn(1, 64, 1001, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = loaded.encoder(features)
    frames, cls = reference_encoder(enc, features, variant="clip")[0]
    torch.testing.assert_close(out.frames, frames, atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(out.cls, cls, atol=2e-4, rtol=1e-4)


def test_hyper_parameters_still_decide_when_present(tmp_path):
    enc = official_encoder_sd(WIDTH, DEPTH, "clip", seed=3)
    for hp, variant in (({"train_len": 6.0}, "clip"), ({"anchor_len": 10.0, "mask_ratio": 0.65}, "frame")):
        path = tmp_path / f"{variant}.ckpt"
        torch.save({"state_dict": {f"model.teacher.encoder.{k}": v for k, v in enc.items()},
                    "hyper_parameters": hp}, path)
        assert load_checkpoint(path).encoder.config.variant == variant


def test_a_frame_file_cannot_be_forced_to_clip_and_own_files_say_it_themselves(tmp_path):
    frame_only = tmp_path / "frame.ckpt"
    torch.save({"state_dict": {f"encoder.encoder.{k}": v
                               for k, v in official_encoder_sd(WIDTH, DEPTH, "frame").items()}}, frame_only)
    with pytest.raises(InputError, match="no cls_token: it cannot be read as ATST-Clip"):
        load_checkpoint(frame_only, variant="clip")
    own = save_checkpoint(tmp_path / "own.ckpt", SEDModel(EncoderConfig.named("frame_tiny"), ["a", "b", "c"]))
    assert load_checkpoint(own, variant="frame").kind == "sed"
    with pytest.raises(InputError, match="holds an ATST-Frame encoder .* the variant asked for is clip"):
        load_checkpoint(own, variant="clip")


def test_embed_reads_the_ambiguous_file_as_frame_and_variant_clip_overrides(resaved, tmp_path):
    path, enc = resaved
    audio = tmp_path / "a.wav"
    sf.write(audio, (np.random.default_rng(0).standard_normal(16000 * 2) * 0.1).astype(np.float32), 16000)
    assert main(["embed", str(audio), "--checkpoint", str(path), "-o", str(tmp_path / "f.npz")]) == 0
    assert main(["embed", str(audio), "--checkpoint", str(path), "-o", str(tmp_path / "c.npz"), "--variant", "clip"]) == 0
    frame, clip = np.load(tmp_path / "f.npz"), np.load(tmp_path / "c.npz")
    assert "cls" not in frame and "cls" in clip
    features = torch.from_numpy(frame["features"])[None]
    expected = reference_encoder(_as_atst_sed_loader_reads_it(enc), features, variant="frame")[0][0][0]
    np.testing.assert_allclose(frame["embeddings"], expected.numpy(), atol=2e-4, rtol=1e-4)
    assert np.abs(frame["embeddings"] - clip["embeddings"]).max() > 1e-2  # the choice matters


def test_detect_checks_the_variant_against_the_checkpoint(tmp_path, capsys):
    ckpt = save_checkpoint(tmp_path / "sed.ckpt", SEDModel(EncoderConfig.named("frame_tiny"), ["a", "b"]))
    audio = tmp_path / "a.wav"
    sf.write(audio, (np.random.default_rng(0).standard_normal(16000) * 0.1).astype(np.float32), 16000)
    assert main(["detect", str(audio), "-c", str(ckpt), "--variant", "frame", "-o", str(tmp_path / "e.csv")]) == 0
    capsys.readouterr()
    assert main(["detect", str(audio), "-c", str(ckpt), "--variant", "clip", "-o", str(tmp_path / "e.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds an ATST-Frame encoder" in err[-1]


@pytest.mark.parametrize("variant", [None, "frame", "clip"])
def test_train_models_variant_overrides(resaved, variant):
    path, _ = resaved
    model = build_model(ModelConfig(encoder=str(path), variant=variant), ["a", "b"])
    assert model.encoder.config.variant == (variant or "frame")


@pytest.mark.parametrize("method", ["frame", "clip"])
def test_pretrain_init_reads_the_file_as_the_runs_method(resaved, method):
    from atst_sed.training.pretrain import PretrainModule
    from atst_sed.training.pretrain_run import init_from_checkpoint

    path, enc = resaved
    module = PretrainModule(model={"method": method, "encoder": f"{method}_tiny", "projector_hidden": 32,
                                   "projector_out": 16, "encoder_overrides": {"width": WIDTH, "depth": DEPTH, "heads": 1}})
    init_from_checkpoint(module, path)
    teacher = module.model.teacher.encoder
    assert teacher.config.variant == method
    if method == "clip":
        assert torch.equal(teacher.cls_token, enc["cls_token"])
    else:
        assert teacher.cls_token is None and torch.equal(teacher.norm.weight, enc["norm.weight"])
