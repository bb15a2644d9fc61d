"""The ATST-SED model family's contract: 64 ms grid, official parameter names, each clip scored alone
inside a padded batch, per-clip normalisation, clear errors for unusable input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from models_helpers import official, read_input

from atst_sed.errors import AtstSedError
from atst_sed.inference.detector import Detector
from atst_sed.models.crnn import ATSTSEDModel, CRNNConfig
from atst_sed.models.encoder import EncoderConfig

TINY = (CRNNConfig(nb_filters=(4, 8, 8, 16, 16, 16, 16), n_rnn_cell=16, embedding_size=64),
        EncoderConfig(width=64, depth=1, heads=1, drop_path=0.0))


@pytest.fixture(scope="module")
def clips() -> tuple[torch.Tensor, torch.Tensor]:
    """A 10-s and a 3.6-s clip in one batch padded with non-zero samples, and their lengths."""
    long, short = read_input("synth_10s"), read_input("synth_3p6s")
    batch = torch.full((2, len(long)), 0.5)  # what lies past a clip's end must not matter
    batch[0] = torch.from_numpy(long)
    batch[1, : len(short)] = torch.from_numpy(short)
    return batch, torch.tensor([len(long), len(short)])


def test_output_grid_is_64_ms_with_156_frames_per_10_s():
    model = ATSTSEDModel(*TINY).eval()
    assert model.grid.frame_seconds == 0.064 and model.grid.hop_samples == 1024
    with torch.no_grad():
        for n, frames in ((160000, 156), (67263, 65), (1025, 1)):  # 4.2 s → 65 frames, as the official eval mode
            out = model(*model.features(torch.zeros(n).uniform_(-0.1, 0.1)))
            assert out.frame_probs.shape == (1, frames, 10) == out.frame_logits.shape
            assert model.grid.n_frames(n) == frames
    assert model.grid.frame_to_seconds(155) + model.grid.frame_seconds == pytest.approx(9.984)


@pytest.mark.parametrize("folder,role", [("atstsed_stage2", "teacher"), ("atstsed_stage1", "student"),
                                         ("audiossl_desed_frame", None), ("audiossl_as_strong_frame", None)])
def test_a_short_clip_in_a_padded_batch_scores_as_the_clip_alone(folder, role, clips):
    model = official(folder, role).model
    batch, lengths = clips
    with torch.no_grad():
        together = model(*model.features(batch, lengths, short_clips="mask"))
        valid = together.valid.sum(dim=1)
        for i in range(2):
            alone = model(*model.features(batch[i, : int(lengths[i])], short_clips="mask"))
            assert int(valid[i]) == alone.frame_probs.shape[1] == model.grid.n_frames(int(lengths[i]))
            np.testing.assert_allclose(together.frame_probs[i, : int(valid[i])], alone.frame_probs[0], atol=1e-5)
            np.testing.assert_allclose(together.clip_probs[i], alone.clip_probs[0], atol=1e-5)


def test_padded_scoring_does_not_depend_on_the_other_clips_of_the_batch(clips):
    """The official test path takes the transformer's dB floor over the whole batch; ours per clip."""
    model = official("atstsed_stage2", "teacher").model
    batch, lengths = clips
    loud = batch.clone()
    loud[0] = loud[0] * 30  # a much louder batch-mate moves a batch-wide dB peak by ~30 dB
    with torch.no_grad():
        alone = model(*model.features(batch[1, : int(lengths[1])], short_clips="pad"))
        for mates in (batch, loud):
            together = model(*model.features(mates, lengths, short_clips="pad"))
            assert together.frame_probs.shape[1] == 156
            np.testing.assert_allclose(together.frame_probs[1], alone.frame_probs[0], atol=1e-5)


def test_parameter_names_are_the_official_crnn_names_and_frontends_are_not_saved():
    keys = set(ATSTSEDModel(*TINY).state_dict())
    for key in ("cnn.cnn.conv0.weight", "cnn.cnn.batchnorm6.running_var", "cnn.cnn.cg3.linear.weight",
                "rnn.rnn.weight_ih_l1_reverse", "cat_tf.weight", "dense.bias", "dense_softmax.weight",
                "atst.blocks.0.attn.qkv.weight", "atst.norm.weight"):
        assert key in keys, key
    assert not any("frontend" in k for k in keys)
    norms = [m for m in ATSTSEDModel(*TINY).modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 7 and all(m.eps == 1e-3 for m in norms)
    assert all(isinstance(m, torch.nn.AvgPool2d) for n, m in ATSTSEDModel(*TINY).cnn.cnn.named_children() if n.startswith("pooling"))


def test_unusable_input_is_a_one_line_error():
    model = ATSTSEDModel(*TINY).eval()
    with pytest.raises(AtstSedError, match="too short"):
        model.features(torch.zeros(1000))
    with pytest.raises(AtstSedError, match="longer than the model's 160000-sample window"):
        model.features(torch.zeros(170000), short_clips="pad")
    with pytest.raises(AtstSedError, match="short_clips must be one of mask, pad"):
        model.features(torch.zeros(16000), short_clips="crop")


def test_net_config_follows_the_official_crnn_arguments():
    net = {"nclass": 3, "n_RNN_cell": 32, "rnn_layers": 5, "activation": "cg", "nb_filters": [8] * 7,
           "pooling": [[4, 2]] + [[1, 2]] * 6, "embedding_size": 128}
    config = CRNNConfig.from_net(net)
    assert (config.n_classes, config.n_rnn_cell, config.rnn_layers, config.time_pooling) == (3, 32, 2, 4)
    assert CRNNConfig.from_net({**net, "n_layers_RNN": 3}).rnn_layers == 3
    with pytest.raises(ValueError, match="activation 'glu'"):
        CRNNConfig.from_net({k: v for k, v in net.items() if k != "activation"})  # the official default
    with pytest.raises(ValueError, match="stride 1"):
        CRNNConfig(stride=(2,) + (1,) * 6)
    with pytest.raises(ValueError, match="reduces 128 mels to 2"):
        ATSTSEDModel(CRNNConfig(pooling=((2, 2), (2, 2)) + ((1, 2),) * 4 + ((1, 1),), embedding_size=64), TINY[1])


def test_a_padded_batch_trains_through_every_part(clips):
    torch.manual_seed(0)
    model = ATSTSEDModel(*TINY).train()
    batch, lengths = clips
    out = model(*model.features(batch, lengths))
    (out.frame_probs.mean() + out.clip_probs.mean()).backward()
    trained = {n: p for n, p in model.named_parameters() if n != "atst.mask_embed"}  # used by pretraining only
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in trained.values())


def test_under_bf16_autocast_only_the_cnn_and_the_transformer_run_in_bf16(clips):
    """The fusion layer, the BiGRU and the heads stay float32 (rounding would ride the recurrence
    from frame to frame); the convolutions and the transformer's matrix products take bf16."""
    model = ATSTSEDModel(*TINY).eval()
    layers = {"cnn": model.cnn.cnn.conv0, "transformer": model.atst.blocks[0].mlp.fc1, "fusion": model.cat_tf,
              "recurrence": model.rnn.rnn, "frame head": model.dense, "clip head": model.dense_softmax}
    dtypes = {}

    def note(name):
        def hook(module, inputs, output):
            first = output[0] if isinstance(output, tuple) else output  # the GRU's: (PackedSequence, h)
            dtypes[name] = getattr(first, "data", first).dtype
        return hook

    hooks = [layer.register_forward_hook(note(name)) for name, layer in layers.items()]
    batch, lengths = clips
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(*model.features(batch, lengths))
    for hook in hooks:
        hook.remove()
    assert dtypes == {"cnn": torch.bfloat16, "transformer": torch.bfloat16, "fusion": torch.float32,
                      "recurrence": torch.float32, "frame head": torch.float32, "clip head": torch.float32}
    assert out.frame_probs.dtype == out.clip_probs.dtype == torch.float32


def test_the_detector_casts_only_the_cnn_and_transformer_weights_of_a_published_file_to_bf16():
    """The detector's bf16 path on an official-format ATST-SED file: the weights it casts once are the
    CNN's and the transformer's (fusion, BiGRU and heads stay float32), and its scores stay within the
    0.03 that `detect --help` states of float32 over 20 s (three overlapping windows)."""
    model = official("atstsed_stage2", "teacher").model
    wave = np.concatenate([read_input("synth_10s"), read_input("synth_10s")[::-1]])
    reference = Detector(model, device="cpu", precision="fp32").scores_audio(wave, "x").probs
    detector = Detector(model, device="cpu", precision="bf16")
    scores = detector.scores_audio(wave, "x").probs
    assert {name.split(".")[0] for name in detector._bf16_cache} == {"cnn", "atst"}
    assert scores.shape == reference.shape == (model.grid.n_frames(len(wave)), 10)
    assert 0 < np.abs(scores - reference).max() <= 0.03  # 0.0101 here
