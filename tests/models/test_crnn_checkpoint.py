"""Our own ATST-SED family checkpoints describe themselves: save → load gives the same model, grid,
frontends, classes and decoding, read with weights_only=True."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from models_helpers import official, read_input

from atst_sed.errors import InputError
from atst_sed.models.crnn_checkpoint import crnn_checkpoint_dict, load_crnn_checkpoint, save_crnn_checkpoint
from atst_sed.labels import DESED_CLASSES

DECODING = {"thresholds": [0.5] * 10, "median_filter": [6, 20, 7, 4, 7, 6, 6, 6, 6, 6]}


def test_an_atst_sed_model_round_trips_with_its_contract(tmp_path):
    source = official("atstsed_stage2", "student")
    path = save_crnn_checkpoint(tmp_path / "ours.ckpt", source.model, DESED_CLASSES, decoding=DECODING,
                                meta={"origin": "test"})
    raw = torch.load(path, map_location="cpu", weights_only=True)  # plain data only
    assert raw["family"] == "atst-sed" and raw["grid"] == {"mel_hop_samples": 256, "frames_per_output": 4, "sample_rate": 16000}
    model, spec = load_crnn_checkpoint(path)
    assert model.config == source.model.config and model.encoder_config == source.model.encoder_config
    assert spec.grid == source.spec.grid and spec.frontends == source.spec.frontends
    assert spec.classes == DESED_CLASSES and spec.decoding == DECODING and spec.meta["origin"] == "test"
    wave = torch.from_numpy(read_input("synth_3p6s"))
    with torch.no_grad():
        for mode in ("mask", "pad"):
            ours = model(model.features(wave, short_clips=mode))
            theirs = source.model(source.model.features(wave, short_clips=mode))
            np.testing.assert_array_equal(ours.frame_probs, theirs.frame_probs)


def test_a_damaged_family_checkpoint_is_refused_in_one_line(tmp_path):
    model = official("atstsed_stage1", "teacher").model
    raw = crnn_checkpoint_dict(model, DESED_CLASSES)
    with pytest.raises(ValueError, match="10 classes, 2 names"):
        crnn_checkpoint_dict(model, ["a", "b"])
    broken = {**raw, "grid": {**raw["grid"], "frames_per_output": 2}}
    torch.save(broken, tmp_path / "grid.ckpt")
    with pytest.raises(InputError, match="grid .* does not follow from its configs"):
        load_crnn_checkpoint(tmp_path / "grid.ckpt")
    missing = {**raw, "state_dict": {k: v for k, v in raw["state_dict"].items() if not k.startswith("dense.")}}
    torch.save(missing, tmp_path / "missing.ckpt")
    with pytest.raises(InputError, match="missing 2 tensors"):
        load_crnn_checkpoint(tmp_path / "missing.ckpt")
    torch.save({k: v for k, v in raw.items() if k != "family"}, tmp_path / "other.ckpt")
    with pytest.raises(InputError, match="not an atst-sed checkpoint of the ATST-SED family"):
        load_crnn_checkpoint(tmp_path / "other.ckpt")
