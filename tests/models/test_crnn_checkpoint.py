"""Our own checkpoints of both families share one self-describing format (models/checkpoint.py): save →
load gives the same model, grid, frontends, classes, decoding, clip pooling and short-clip scoring,
read with weights_only=True; version-1 files (ATST token models) still load."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from models_helpers import official, read_input

from atst_sed.decoding import Decoding
from atst_sed.errors import InputError
from atst_sed.labels import DESED_CLASSES
from atst_sed.models.checkpoint import FORMAT_VERSION, checkpoint_dict, load_checkpoint, save_checkpoint
from atst_sed.models.crnn import ATSTSEDModel
from atst_sed.models.encoder import EncoderConfig
from atst_sed.models.sed import SEDModel
from atst_sed.frontend import FrontendConfig

DECODING = {"thresholds": [0.5] * 10, "median_filter": [6, 20, 7, 4, 7, 6, 6, 6, 6, 6]}


def test_an_atst_sed_model_round_trips_with_its_contract(tmp_path):
    source = official("atstsed_stage2", "student")
    path = save_checkpoint(tmp_path / "ours.ckpt", source.model, decoding=DECODING, meta={"origin": "test"})
    raw = torch.load(path, map_location="cpu", weights_only=True)  # plain data only
    assert (raw["format_version"], raw["family"], raw["kind"]) == (FORMAT_VERSION, "ATST-SED", "sed")
    assert raw["grid"] == {"mel_hop_samples": 256, "frames_per_output": 4, "sample_rate": 16000}
    assert set(raw["frontends"]) == {"atst", "cnn"} and raw["short_clips"] == "pad"
    loaded = load_checkpoint(path)
    model, spec = loaded.model, loaded.spec
    assert isinstance(model, ATSTSEDModel) and loaded.kind == "sed" and loaded.layout == "atst-sed"
    assert model.config == source.model.config and model.encoder_config == source.model.encoder_config
    assert spec.grid == source.spec.grid and spec.frontends == source.spec.frontends
    assert spec.classes == DESED_CLASSES and spec.decoding.to_dict() == DECODING
    assert spec.meta["origin"] == "test" and spec.meta["role"] == "student" and spec.short_clips == "pad"
    wave = torch.from_numpy(read_input("synth_3p6s"))
    with torch.no_grad():
        for mode in ("mask", "pad"):
            ours = model(*model.features(wave, short_clips=mode))
            theirs = source.model(*source.model.features(wave, short_clips=mode))
            np.testing.assert_array_equal(ours.frame_probs, theirs.frame_probs)


def test_a_frame_only_head_round_trips_with_max_clip_pooling(tmp_path):
    source = official("audiossl_as_strong_frame", None).model
    loaded = load_checkpoint(save_checkpoint(tmp_path / "strong.ckpt", source))
    assert loaded.spec.clip_pooling == "max" and loaded.spec == source.spec
    assert set(loaded.model.state_dict()) == {k for k in source.state_dict()}


def test_version_1_files_load_as_masked_attention_pooled_token_models(tmp_path):
    classes = ["Dog", "Speech"]
    model = SEDModel(EncoderConfig.named("frame_tiny"), classes)
    v1 = {"format": "atst-sed", "format_version": 1, "kind": "sed", "encoder": model.encoder.config.to_dict(),
          "frontend": FrontendConfig().to_dict(), "classes": classes,
          "decoding": {"thresholds": [0.4, 0.6], "median_filter": [5, 9]}, "meta": {"run": "old"},
          "state_dict": model.state_dict()}
    torch.save(v1, tmp_path / "v1.ckpt")
    loaded = load_checkpoint(tmp_path / "v1.ckpt")
    assert (loaded.spec.family, loaded.spec.clip_pooling, loaded.spec.short_clips) == ("ATST-Frame", "attention", "mask")
    assert loaded.spec.decoding == Decoding.for_classes(classes, [0.4, 0.6], [5, 9]) and loaded.meta["run"] == "old"
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key


def test_a_damaged_checkpoint_of_either_family_is_refused_in_one_line(tmp_path):
    model = official("atstsed_stage1", "teacher").model
    raw = checkpoint_dict(model)
    with pytest.raises(ValueError, match="needs its 10 class names in output order, got 2"):
        checkpoint_dict(model, classes=["a", "b"])
    cases = {
        "grid": ({**raw, "grid": {**raw["grid"], "frames_per_output": 2}}, "grid .* does not follow from its configs"),
        "missing": ({**raw, "state_dict": {k: v for k, v in raw["state_dict"].items() if not k.startswith("dense.")}},
                    "missing 2 tensors"),
        "nocrnn": ({k: v for k, v in raw.items() if k != "crnn"}, "malformed atst-sed checkpoint"),
        "future": ({**raw, "format_version": FORMAT_VERSION + 1}, f"format version {FORMAT_VERSION + 1} is not supported"),
    }
    for name, (content, message) in cases.items():
        torch.save(content, tmp_path / f"{name}.ckpt")
        with pytest.raises(InputError, match=message) as err:
            load_checkpoint(tmp_path / f"{name}.ckpt")
        assert "\n" not in str(err.value) and str(tmp_path / f"{name}.ckpt") in str(err.value)
