"""Published SED checkpoints load as SED models with the right layout, role, architecture and contract;
anything the file does not hold is refused in one line naming the file."""

from __future__ import annotations

import pickle
import zipfile

import numpy as np
import pytest
import torch
from models_helpers import GOLDEN, LAYOUTS, golden_checkpoint, official

from atst_sed.errors import InputError
from atst_sed.labels import DESED_CLASSES
from atst_sed.models.checkpoint import load_checkpoint
from atst_sed.models.crnn import ATSTSEDModel, CRNNConfig
from atst_sed.models.encoder import EncoderConfig
from atst_sed.models.weights import read_checkpoint_file
from atst_sed.timegrid import ATST_GRID


def _one_line_error(path, **kwargs) -> str:
    with pytest.raises(InputError) as err:
        load_checkpoint(path, **kwargs)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    return message


def _plain(folder: str) -> dict:
    return torch.load(golden_checkpoint(folder), map_location="cpu", weights_only=True)


@pytest.mark.parametrize("folder,role", list(LAYOUTS))
def test_layout_role_and_grid_are_read_from_the_file(folder, role):
    loaded = official(folder, role)
    assert loaded.kind == "sed" and loaded.layout == LAYOUTS[(folder, role)]
    assert loaded.role == ("student" if folder == "audiossl_desed_c2f" else role)  # C2F: the frame student
    assert not loaded.model.training
    spec = loaded.spec
    if folder.startswith("atstsed"):
        assert spec.family == "ATST-SED" and loaded.encoder is loaded.model.atst
        assert (spec.grid.frame_seconds, spec.grid.n_frames(160000), spec.grid.frame_to_seconds(155)) == (0.064, 156, 9.92)
        assert set(spec.frontends) == {"cnn", "atst"} and spec.frontend.clamp_db_min == -50.0
    else:
        assert spec.grid == ATST_GRID and spec.grid.n_frames(160000) == 250
        assert spec.family == ("ATST-Clip" if folder == "audiossl_desed_clip" else "ATST-Frame")
        assert loaded.encoder is loaded.model.encoder and spec.frontend.clamp_db_min is None
    assert spec.window_samples == 160000 and spec.short_clips == "pad"  # as every official test path


def test_atst_sed_teacher_is_the_default_role():
    default = load_checkpoint(golden_checkpoint("atstsed_stage2"))
    assert default.role == "teacher"
    teacher = official("atstsed_stage2", "teacher").model.state_dict()
    for key, value in default.model.state_dict().items():
        assert torch.equal(value, teacher[key]), key
    student = official("atstsed_stage2", "student").model.state_dict()
    assert not torch.equal(student["dense.weight"], teacher["dense.weight"])


def test_a_role_the_file_does_not_hold_is_refused(tmp_path):
    raw = _plain("atstsed_stage1")
    raw["state_dict"] = {k: v for k, v in raw["state_dict"].items() if not k.startswith("sed_student.")}
    del raw["sed_student"]
    path = tmp_path / "teacher_only.ckpt"
    torch.save(raw, path)
    assert load_checkpoint(path).role == "teacher"
    assert "no student model" in _one_line_error(path, role="student")


def test_roles_and_variants_that_do_not_fit_the_file_are_refused():
    frame = golden_checkpoint("audiossl_desed_frame")
    assert "holds one model" in _one_line_error(frame, role="teacher")
    assert "variant asked for is clip" in _one_line_error(frame, variant="clip")
    assert "variant asked for is clip" in _one_line_error(golden_checkpoint("atstsed_stage2"), variant="clip")
    assert "unknown role" in _one_line_error(golden_checkpoint("atstsed_stage2"), role="ema")
    assert "frozen ATST-Clip teacher_module" in _one_line_error(golden_checkpoint("audiossl_desed_c2f"), role="teacher")
    assert load_checkpoint(golden_checkpoint("audiossl_desed_c2f"), role="student").layout == "audiossl-c2f"


def test_an_encoder_only_file_loads_as_its_encoder(tmp_path):
    raw = _plain("audiossl_desed_clip")
    raw["state_dict"] = {k: v for k, v in raw["state_dict"].items() if not k.startswith("head.")}
    path = tmp_path / "encoder_only.ckpt"
    torch.save(raw, path)
    loaded = load_checkpoint(path)
    assert loaded.kind == "encoder" and loaded.model is None and loaded.encoder.config.variant == "clip"
    assert "encoder only, no teacher" in _one_line_error(path, role="teacher")


def test_c2f_uses_the_frame_student_and_its_head_not_the_frozen_clip_teacher():
    sd = _plain("audiossl_desed_c2f")["state_dict"]
    assert any(k.startswith("encoder.encoder.teacher_module.") for k in sd)  # the file holds both
    ours = official("audiossl_desed_c2f", None).model.state_dict()
    assert torch.equal(ours["encoder.pos_embed"], sd["encoder.encoder.frame_encoder.pos_embed"])
    assert torch.equal(ours["head.linear.weight"], sd["head.linear.weight"])
    assert official("audiossl_desed_c2f", None).model.encoder.cls_token is None


def test_audiossl_trainer_files_with_numpy_learning_rates_load_with_weights_only():
    path = golden_checkpoint("audiossl_desed_frame")  # the byte-exact ModelCheckpoint output
    with pytest.raises(pickle.UnpicklingError, match="numpy"):
        torch.load(path, map_location="cpu", weights_only=True)
    raw = read_checkpoint_file(path)
    assert isinstance(raw["optimizer_states"][0]["param_groups"][0]["lr"], np.float64)
    assert load_checkpoint(path).layout == "audiossl-frame"


def test_files_pickled_under_numpy_1_load_too(tmp_path):
    """numpy 1 pickles the same scalar as ``numpy.core.multiarray.scalar`` (numpy 2: ``numpy._core``)."""
    source = zipfile.ZipFile(golden_checkpoint("audiossl_desed_frame"))
    path = tmp_path / "numpy1.ckpt"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as target:
        for name in source.namelist():
            data = source.read(name)
            if name.endswith("data.pkl"):  # protocol 2: GLOBAL opcodes are newline-terminated text
                assert b"numpy._core.multiarray\nscalar" in data
                data = data.replace(b"numpy._core.multiarray\nscalar", b"numpy.core.multiarray\nscalar")
            target.writestr(name, data)
    assert "numpy.core.multiarray.scalar" in torch.serialization.get_unsafe_globals_in_checkpoint(path)
    assert isinstance(read_checkpoint_file(path)["optimizer_states"][0]["param_groups"][0]["lr"], np.float64)


def test_the_numpy_allow_list_admits_no_other_objects(tmp_path, bad_checkpoints):
    pickled = tmp_path / "pickled.ckpt"
    pickled.write_bytes(bad_checkpoints["pickle"])
    assert "refusing to load" in _one_line_error(pickled)
    assert not bad_checkpoints["marker"].exists()
    with_array = tmp_path / "numpy_array.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"stats": np.zeros(3)}}, with_array)
    assert "refusing to load" in _one_line_error(with_array)


def test_atst_sed_architecture_comes_from_the_files_net_config():
    raw = _plain("atstsed_stage2")
    net = raw["hyper_parameters"]["net"]
    config = official("atstsed_stage2", "teacher").model.config
    assert config.pooling == tuple(tuple(p) for p in net["pooling"]) != CRNNConfig().pooling
    assert config.nb_filters == tuple(net["nb_filters"]) and config.n_rnn_cell == net["n_RNN_cell"]
    # the official CRNN takes its GRU depth from n_layers_RNN; the YAML's rnn_layers never reaches it
    assert (net["rnn_layers"], net["n_layers_RNN"], config.rnn_layers) == (2, 1, 1)
    assert official("atstsed_stage1", "teacher").model.config.rnn_layers == 2


def _ours_to_official(key: str) -> str:
    if key.startswith("atst.patch_embed."):
        return "atst_frame.atst.patch_embed.patch_embed." + key[len("atst.patch_embed."):]
    if key.startswith("atst.norm."):
        return "atst_frame.atst.norm_frame." + key[len("atst.norm."):]
    return "atst_frame." + key if key.startswith("atst.") else key


def test_atst_sed_without_net_config_uses_the_published_structure(tmp_path):
    torch.manual_seed(3)
    model = ATSTSEDModel(CRNNConfig(embedding_size=64), EncoderConfig(width=64, depth=1, heads=1, drop_path=0.0))
    sd = {f"sed_teacher.{_ours_to_official(k)}": v for k, v in model.state_dict().items()}
    sd["sed_teacher.atst_frame.atst.blocks.0.attn.total_ops"] = torch.zeros(1)  # thop profiling counters
    path = tmp_path / "bare.ckpt"
    torch.save({"state_dict": sd}, path)
    loaded = load_checkpoint(path)
    assert loaded.model.config == CRNNConfig(embedding_size=64)
    assert loaded.spec.decoding.median_filter == (7,) * 10
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value), key


def test_an_unsupported_net_config_is_refused(tmp_path):
    raw = _plain("atstsed_stage1")
    raw["hyper_parameters"]["net"]["activation"] = "glu"
    path = tmp_path / "glu.ckpt"
    torch.save(raw, path)
    assert "activation 'glu'" in _one_line_error(path)


def test_decoding_defaults_follow_each_family():
    assert official("atstsed_stage2", "teacher").spec.decoding.median_filter == (6, 20, 7, 4, 7, 6, 6, 6, 6, 6)
    assert official("atstsed_stage1", "teacher").spec.decoding.median_filter == (7,) * 10
    for folder in ("audiossl_desed_frame", "audiossl_as_strong_frame"):
        spec = official(folder, None).spec
        assert spec.decoding.median_filter == (7,) * len(spec.classes)  # 7 frames of 40 ms
        assert spec.decoding.thresholds == (0.5,) * len(spec.classes)


def test_desed_models_name_their_classes_and_audioset_strong_takes_given_names():
    assert official("audiossl_desed_c2f", None).spec.classes == DESED_CLASSES
    assert official("atstsed_stage1", "student").spec.classes == DESED_CLASSES
    path = golden_checkpoint("audiossl_as_strong_frame")
    mids = [f"/m/{i:05d}" for i in range(407)]
    loaded = load_checkpoint(path, classes=mids)
    assert loaded.spec.classes == tuple(mids) and loaded.spec.clip_pooling == "max"
    assert loaded.spec.meta["dataset"] == "as_strong"
    assert "407 classes but 10 class names" in _one_line_error(path, classes=list(DESED_CLASSES))


def test_golden_folder_holds_only_small_files():
    total = sum(p.stat().st_size for p in GOLDEN.rglob("*") if p.is_file())
    assert total < 8.5e6
    assert all(p.stat().st_size <= 1.5e6 for p in GOLDEN.rglob("*.ckpt"))
