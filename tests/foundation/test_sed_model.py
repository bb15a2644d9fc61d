"""A SED model owns its frontend and states its contract (grid, window, classes, decoding, frontend);
its checkpoint carries that contract and only the weights."""

from __future__ import annotations

import torch

from atst_sed.decoding import Decoding
from atst_sed.frontend import FrontendConfig, LogMelFrontend
from atst_sed.models.checkpoint import load_checkpoint, save_checkpoint
from atst_sed.models.encoder import EncoderConfig
from atst_sed.models.sed import SEDModel
from atst_sed.timegrid import ATST_GRID, FrameGrid

CLASSES = ["Dog", "Cat", "Speech"]


def test_the_atst_contract():
    spec = SEDModel(EncoderConfig.named("clip_tiny"), CLASSES).spec
    assert (spec.family, spec.grid, spec.window_samples, spec.window_frames) == ("ATST-Clip", ATST_GRID, 160000, 250)
    assert spec.min_samples == 513  # the centred STFT's reflection of n_fft / 2 samples
    assert spec.classes == tuple(CLASSES) and spec.decoding == Decoding.for_classes(CLASSES)
    assert spec.frontend == FrontendConfig() and spec.sample_rate == 16000


def test_features_are_the_frontends_and_padded_clips_are_masked():
    model = SEDModel(EncoderConfig.named("frame_tiny"), CLASSES).eval()
    waves = torch.randn(2, 32000, generator=torch.Generator().manual_seed(0)) * 0.1
    waves[1, 20000:] = 0.0
    lengths = torch.tensor([32000, 20000])
    features, frame_lengths = model.features(waves, lengths)
    torch.testing.assert_close(features, LogMelFrontend()(waves, lengths))
    assert frame_lengths.tolist() == [32000 // 160 + 1, 20000 // 160 + 1]
    with torch.no_grad():
        both = model(features, frame_lengths)
        alone = model(*model.features(waves[1:, :20000]))
    assert both.valid.sum(1).tolist() == [50, 31]  # (201 // 4, 126 // 4) frames of 40 ms
    torch.testing.assert_close(both.frame_probs[1, :31], alone.frame_probs[0], atol=1e-5, rtol=1e-5)


def test_the_checkpoint_holds_the_weights_and_carries_the_contract(tmp_path):
    frontend = FrontendConfig(hop_length=256)
    decoding = Decoding.for_classes(CLASSES, [0.3, 0.5, 0.7], 9)
    model = SEDModel(EncoderConfig.named("frame_tiny", max_tokens=156), CLASSES, frontend, decoding)
    assert {k.split(".")[0] for k in model.state_dict()} == {"encoder", "head"}  # the frontend follows from its config
    loaded = load_checkpoint(save_checkpoint(tmp_path / "m.ckpt", model))
    assert loaded.spec == model.spec and loaded.spec.grid == FrameGrid(256, 4)
    assert loaded.decoding == decoding.to_dict() and loaded.frontend == frontend
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[key], value)
