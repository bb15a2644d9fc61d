"""Published SED files in ``embed`` and ``train``: the ATST branch of a file embeds with the features it
reads (ATST-SED: dB clamped to [-50, 80]; teacher or student), a fine-tuned file initialises a run with
its encoder and head (an ATST-SED file: the whole CRNN), and a published fine-tuned ATST-Clip is a C2F
distillation teacher."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from models_helpers import GOLDEN, golden_arrays, golden_checkpoint, max_abs, read_input

from atst_sed.cli.main import main
from atst_sed.errors import AtstSedError
from atst_sed.labels import DESED_CLASSES
from atst_sed.models.checkpoint import load_checkpoint
from atst_sed.models.factory import ModelConfig, build_model
from atst_sed.training.run import Run
from atst_sed.training.run_config import load_recipe
from mini_settings import MINI_FAST

REPO = Path(__file__).resolve().parents[2]
AUDIO = GOLDEN / "inputs" / "synth_10s.flac"


def _embed(tmp_path: Path, checkpoint: Path, *extra: str) -> dict[str, np.ndarray]:
    out = tmp_path / f"emb{len(list(tmp_path.glob('*.npz')))}.npz"
    assert main(["embed", str(AUDIO), "--checkpoint", str(checkpoint), "-o", str(out), "--device", "cpu", *extra]) == 0
    with np.load(out) as npz:
        return dict(npz)


@pytest.mark.parametrize("folder,features", [("audiossl_desed_frame", "audiossl_atst"), ("atstsed_stage2", "atstsed_atst")])
def test_embed_reads_a_published_sed_file_with_the_features_its_transformer_reads(folder, features, tmp_path):
    got = _embed(tmp_path, golden_checkpoint(folder))
    golden = golden_arrays("features", "synth_10s")
    assert max_abs(got["features"], golden[features]) <= 1e-5  # the official frontend of that model's transformer
    assert got["embeddings"].shape == (250, 64)
    np.testing.assert_allclose(got["timestamps"], 0.04 * np.arange(250), atol=1e-12)  # ATST tokens, 40 ms


def test_embed_takes_the_teacher_or_the_student_of_an_atst_sed_file(tmp_path):
    path = golden_checkpoint("atstsed_stage2")
    default, teacher, student = _embed(tmp_path, path), _embed(tmp_path, path, "--role", "teacher"), _embed(tmp_path, path, "--role", "student")
    np.testing.assert_array_equal(default["embeddings"], teacher["embeddings"])
    assert np.abs(teacher["embeddings"] - student["embeddings"]).max() > 1e-3  # different weights
    model = load_checkpoint(path, role="student").model
    with torch.no_grad():
        tokens = model.encoder(torch.from_numpy(student["features"])[None]).frames[0]
    np.testing.assert_allclose(student["embeddings"], tokens.numpy(), atol=1e-5)


@pytest.mark.parametrize("folder", ["audiossl_desed_frame", "audiossl_desed_c2f", "audiossl_desed_clip"])
def test_a_published_fine_tuned_file_initialises_training_with_its_encoder_and_head(folder):
    path = golden_checkpoint(folder)
    official = load_checkpoint(path).model
    model = build_model(ModelConfig(str(path)), DESED_CLASSES)
    for name, tensor in official.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], tensor, rtol=0, atol=0)
    other = build_model(ModelConfig(str(path)), ["knock", "kettle"])  # other classes: its encoder, a new head
    torch.testing.assert_close(other.encoder.state_dict(), official.encoder.state_dict(), rtol=0, atol=0)
    assert other.head.linear.weight.shape[0] == 2


def test_an_atst_sed_file_initialises_a_token_model_with_its_atst_frame_branch():
    path = golden_checkpoint("atstsed_stage2")
    model = build_model(ModelConfig(str(path)), DESED_CLASSES)
    branch = load_checkpoint(path).model.encoder
    torch.testing.assert_close(model.encoder.state_dict(), branch.state_dict(), rtol=0, atol=0)
    assert model.spec.family == "ATST-Frame" and model.grid.frame_seconds == 0.04


@pytest.mark.parametrize("folder", ["atstsed_stage1", "atstsed_stage2"])
def test_the_factory_continues_a_published_atst_sed_file_whole(folder):
    # the official files, written by the official trainers (tests/golden): stage 2's has its own pooling and one GRU layer
    published = load_checkpoint(golden_checkpoint(folder), role="teacher").model
    model = build_model(ModelConfig(str(golden_checkpoint(folder)), architecture="atst_sed"), DESED_CLASSES)
    assert model.config == published.config and model.spec.frontends == published.spec.frontends
    wave = torch.from_numpy(read_input("synth_10s"))
    with torch.no_grad():
        want, got = published(*published.features(wave, short_clips="pad")), model.eval()(*model.features(wave, short_clips="pad"))
    torch.testing.assert_close(got.frame_probs, want.frame_probs, rtol=0, atol=0)
    torch.testing.assert_close(got.clip_probs, want.clip_probs, rtol=0, atol=0)
    # other classes: everything but the two heads is kept
    other = build_model(ModelConfig(str(golden_checkpoint(folder)), architecture="atst_sed"), ["knock", "kettle"])
    assert other.dense.out_features == 2 and other.classes == ("knock", "kettle")
    kept = {k: v for k, v in published.state_dict().items() if not k.startswith(("dense.", "dense_softmax."))}
    for name, value in kept.items():
        torch.testing.assert_close(other.state_dict()[name], value, rtol=0, atol=0)


def _c2f_recipe(tiny_corpus: Path, teacher: Path, *extra: str):
    over = [*MINI_FAST, f"data.root={tiny_corpus}", f"models.frame.encoder={golden_checkpoint('audiossl_desed_frame')}",
            f"models.published_clip.encoder={teacher}", "models.published_clip.variant=clip",
            "stages.distill_c2f.teacher=published_clip", *extra]
    cfg = load_recipe(REPO / "recipes" / "mini", over)
    distill = cfg.stages["distill_c2f"]
    distill.init, distill.model = None, "frame"
    cfg.stages = {"distill_c2f": distill, "test": cfg.stages["test"]}
    return cfg


def test_a_published_fine_tuned_atst_clip_is_a_c2f_teacher(tiny_corpus, tmp_path):
    teacher_path = golden_checkpoint("audiossl_desed_clip")
    run = Run(_c2f_recipe(tiny_corpus, teacher_path), tmp_path / "run")
    teacher = run.distillation_teacher(run.config.stages["distill_c2f"])
    official = load_checkpoint(teacher_path).model
    for name, tensor in official.state_dict().items():
        torch.testing.assert_close(teacher.state_dict()[name], tensor, rtol=0, atol=0)
    run.run()
    results = (tmp_path / "run" / "test")
    assert (results / "student" / "metrics.json").is_file() and (results / "teacher" / "metrics.json").is_file()
    titles = {role: json.loads((results / role / "metrics.json").read_text()).get("model") for role in ("student", "teacher")}
    assert titles == {"student": "ATST-C2F (student)", "teacher": "ATST-Clip (fine-tuned teacher)"}


def test_a_teacher_without_a_head_for_the_runs_classes_is_refused_in_one_line(tiny_corpus, tmp_path):
    encoder_only = golden_checkpoint("audiossl_as_strong_frame")  # 407 AudioSet classes, not DESED's
    run = Run(_c2f_recipe(tiny_corpus, encoder_only, "models.published_clip.variant=null"), tmp_path / "run")
    with pytest.raises(AtstSedError, match=r"models\.published_clip: .* a distillation teacher must be a SED model"):
        run.distillation_teacher(run.config.stages["distill_c2f"])
