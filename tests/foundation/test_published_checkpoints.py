"""Every published ATST checkpoint layout (atst.md §3) loads into our encoder; our own format round-trips;
pickled payloads and non-checkpoints are refused with one line naming the file."""

from __future__ import annotations

import pytest
import torch
from foundation_helpers import (
    atst_sed_stage_checkpoint,
    c2f_checkpoint,
    clip_level_c2f_checkpoint,
    dino_clip_checkpoint,
    finetuned_clip_checkpoint,
    finetuned_frame_checkpoint,
    official_to_ours,
    pretraining_checkpoint,
)

from atst_sed.errors import InputError
from atst_sed.models.checkpoint import checkpoint_dict, load_checkpoint, save_checkpoint
from atst_sed.models.weights import encoder_prefixes, published_state_dict
from atst_sed.models.encoder import ATSTEncoder, EncoderConfig
from atst_sed.models.sed import SEDModel

WIDTH, DEPTH = 128, 12  # full depth: key counts are the published 138 / 139


def _assert_mapped(loaded, source: dict, variant: str):
    enc = loaded.encoder
    c = enc.config
    assert (c.variant, c.width, c.depth, c.heads, c.max_tokens) == (variant, WIDTH, DEPTH, WIDTH // 64, 250)
    expected = {official_to_ours(k): v for k, v in source.items()}
    if variant == "frame":
        expected.pop("cls_token", None)  # the older FrameAST variant carries an unused CLS token
    ours = enc.state_dict()
    assert len(ours) == (139 if variant == "clip" else 138)
    assert set(ours) == set(expected)
    for k, v in ours.items():
        assert torch.equal(v, expected[k]), k
    assert not enc.training


LAYOUTS = {
    "frame_pretraining_lightning": (lambda: pretraining_checkpoint(WIDTH, DEPTH, "frame"), "frame"),
    "clip_pretraining_lightning": (lambda: pretraining_checkpoint(WIDTH, DEPTH, "clip"), "clip"),
    "old_frame_variant_lightning": (lambda: pretraining_checkpoint(WIDTH, DEPTH, "frame", old_frame=True), "frame"),
    "clip_dino_teacher": (lambda: dino_clip_checkpoint(WIDTH, DEPTH), "clip"),
    "frame_finetuned_desed": (lambda: finetuned_frame_checkpoint(WIDTH, DEPTH), "frame"),
    "clip_finetuned": (lambda: finetuned_clip_checkpoint(WIDTH, DEPTH), "clip"),
    "c2f_desed": (lambda: c2f_checkpoint(WIDTH, DEPTH), "frame"),
    "c2f_clip_level": (lambda: clip_level_c2f_checkpoint(WIDTH, DEPTH), "frame"),
    "atst_sed_stage": (lambda: atst_sed_stage_checkpoint(WIDTH, DEPTH), "frame"),
}


SED_LAYOUTS = {"frame_finetuned_desed", "c2f_desed"}  # a frame head on the tokens: the file is a SED model
STUB_SED_LAYOUTS = {"atst_sed_stage"}  # its CRNN here is a stub: only its encoder can load (tests/models: the full file)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_published_layout_maps_every_tensor(layout, tmp_path):
    build, variant = LAYOUTS[layout]
    raw, source = build()
    path = tmp_path / f"{layout}.ckpt"
    torch.save(raw, path)
    if layout in STUB_SED_LAYOUTS:
        prefix = encoder_prefixes(published_state_dict(raw, path))[0]
        assert prefix == "sed_teacher.atst_frame.atst."  # the EMA teacher's transformer is preferred
        loaded = load_checkpoint(path, encoder_prefix=prefix)
    else:
        loaded = load_checkpoint(path)
    if layout in SED_LAYOUTS:
        assert loaded.kind == "sed" and loaded.model.encoder is loaded.encoder
    else:
        assert loaded.kind == "encoder" and loaded.model is None
    _assert_mapped(loaded, source, variant)


def test_pretraining_file_has_the_published_key_counts():
    raw, _ = pretraining_checkpoint(WIDTH, DEPTH, "frame")
    keys = list(raw["state_dict"])
    assert sum(k.startswith("model.teacher.encoder.") for k in keys) == 138
    assert sum(k.startswith("model.student.encoder.") for k in keys) == 138
    assert sum(k.startswith(("model.student.projector.", "model.student.predictor.", "model.teacher.projector.")) for k in keys) == 21
    raw, _ = pretraining_checkpoint(WIDTH, DEPTH, "clip")
    assert sum(k.startswith("model.teacher.encoder.") for k in raw["state_dict"]) == 139


def test_student_encoder_can_be_chosen(tmp_path):
    raw, _ = pretraining_checkpoint(WIDTH, DEPTH, "frame")
    torch.save(raw, tmp_path / "p.ckpt")
    loaded = load_checkpoint(tmp_path / "p.ckpt", encoder_prefix="model.student.encoder.")
    student = {k[len("model.student.encoder."):]: v for k, v in raw["state_dict"].items() if k.startswith("model.student.encoder.")}
    _assert_mapped(loaded, student, "frame")


def test_loaded_official_encoder_runs(tmp_path):
    raw, _ = pretraining_checkpoint(WIDTH, 2, "clip")
    torch.save(raw, tmp_path / "c.ckpt")
    enc = load_checkpoint(tmp_path / "c.ckpt").encoder
    with torch.no_grad():
        out = enc(torch.randn(1, 64, 1001))
    assert out.frames.shape == (1, 250, WIDTH) and out.cls.shape == (1, WIDTH)


def test_own_encoder_checkpoint_round_trip(tmp_path):
    enc = ATSTEncoder(EncoderConfig.named("clip_tiny"))
    path = save_checkpoint(tmp_path / "enc.ckpt", enc, meta={"note": "test"})
    assert not (tmp_path / "enc.ckpt.tmp").exists()
    raw = torch.load(path, weights_only=True)  # plain data only
    assert raw["format"] == "atst-sed" and raw["kind"] == "encoder" and raw["encoder"]["variant"] == "clip"
    loaded = load_checkpoint(path)
    assert loaded.kind == "encoder" and loaded.layout == "atst-sed" and loaded.meta["note"] == "test"
    assert loaded.encoder.config == enc.config
    for k, v in enc.state_dict().items():
        assert torch.equal(loaded.encoder.state_dict()[k], v)


def test_own_sed_checkpoint_round_trip(tmp_path):
    model = SEDModel(EncoderConfig.named("frame_tiny"), ["a", "b", "c"])
    classes = ["Dog", "Cat", "Speech"]
    decoding = {"thresholds": [0.4, 0.5, 0.6], "median_filter": [7, 5, 3]}
    path = save_checkpoint(tmp_path / "sed.ckpt", model, classes=classes, decoding=decoding)
    raw = torch.load(path, weights_only=True)
    assert raw["kind"] == "sed" and raw["classes"] == classes
    assert raw == {**checkpoint_dict(model, classes=classes, decoding=decoding), "state_dict": raw["state_dict"]}
    loaded = load_checkpoint(path)
    assert loaded.kind == "sed" and loaded.classes == classes and loaded.decoding == decoding
    assert loaded.encoder is loaded.model.encoder
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[k], v)
    feats = torch.randn(2, 64, 401)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(feats).frame_probs, model(feats).frame_probs)


class Payload:  # a pickled instance of an arbitrary class must never be unpickled
    def __reduce__(self):
        return (print, ("pwned",))


@pytest.mark.parametrize("payload", [Payload(), print, {"nested": [Payload()]}], ids=["reduce", "function", "nested"])
def test_pickled_payload_is_refused(payload, tmp_path, capsys):
    path = tmp_path / "evil.ckpt"
    raw, _ = finetuned_frame_checkpoint(64, 1)
    raw["extra"] = payload
    torch.save(raw, path)
    with pytest.raises(InputError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message and "pickled" in message
    assert "pwned" not in capsys.readouterr().out


def _half_of_a_real_checkpoint(tmp_path, legacy: bool) -> bytes:
    torch.save({"state_dict": {"w": torch.zeros(2000)}}, tmp_path / "real.ckpt", _use_new_zipfile_serialization=not legacy)
    data = (tmp_path / "real.ckpt").read_bytes()
    return data[: len(data) // 2]


@pytest.mark.parametrize(("content", "problem"), [
    (lambda _: b"", "empty file"),
    (lambda _: b"hello, this is not a checkpoint\n" * 4, "not a PyTorch checkpoint (a text file)"),
    (lambda _: b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 12\n", "a Git LFS pointer"),
    (lambda _: b"<!DOCTYPE html><html><body>Quota exceeded</body></html>", "an HTML page"),
    (lambda _: bytes(range(7, 256)) * 3, "not a PyTorch checkpoint (neither a zip archive nor a pickle)"),
    (lambda _: b"PK\x03\x04garbage", "not a readable PyTorch checkpoint: truncated or corrupt zip archive"),
    (lambda tmp: _half_of_a_real_checkpoint(tmp, legacy=False), "truncated or corrupt zip archive"),
    (lambda tmp: _half_of_a_real_checkpoint(tmp, legacy=True), "not a readable PyTorch checkpoint ("),
], ids=["empty", "text", "git-lfs", "html", "binary", "bad-zip", "truncated", "truncated-legacy"])
def test_non_checkpoint_is_refused_in_plain_words(content, problem, tmp_path):
    path = tmp_path / "not.ckpt"
    path.write_bytes(content(tmp_path))
    with pytest.raises(InputError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and problem in message and "\n" not in message
    assert "KeyError" not in message and "EOFError" not in message and "pickled Python object" not in message


def test_checkpoint_without_encoder_is_refused(tmp_path):
    path = tmp_path / "head_only.ckpt"
    torch.save({"state_dict": {"head.linear.weight": torch.zeros(10, 8)}}, path)
    with pytest.raises(InputError, match="no ATST encoder"):
        load_checkpoint(path)
    with pytest.raises(InputError, match="no such"):
        load_checkpoint(tmp_path / "missing.ckpt")
