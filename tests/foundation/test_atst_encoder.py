"""The ATST encoder against a reference forward written from the facts (atst.md §2)."""

from __future__ import annotations

import pytest
import torch
from foundation_helpers import official_encoder_sd, reference_encoder

from atst_sed.errors import AtstSedError
from atst_sed.models.checkpoint import convert_official_state_dict
from atst_sed.models.encoder import ATSTEncoder, EncoderConfig

WIDTH, DEPTH = 128, 3  # 2 heads of 64: exercises the head split of the qkv rows


def _pair(variant: str):
    sd = official_encoder_sd(WIDTH, DEPTH, variant, seed=5)
    ours, config = convert_official_state_dict(sd, "")
    assert (config.variant, config.width, config.depth, config.heads) == (variant, WIDTH, DEPTH, 2)
    enc = ATSTEncoder(config).eval()
    enc.load_state_dict(ours)
    return sd, enc


def _features(b: int, t: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 64, t, generator=g) * 0.5


def _double(sd):
    return {k: v.double() for k, v in sd.items()}


@pytest.mark.parametrize("variant", ["frame", "clip"])
def test_matches_reference_forward(variant):
    """Exact in float64 (same maths); in float32 within rounding (outputs are O(5) here)."""
    sd, enc = _pair(variant)
    feats = _features(1, 1001)
    ref64 = reference_encoder(_double(sd), feats.double(), variant=variant, blocks=(0, 1, -1))
    with torch.no_grad():
        out = enc(feats)
        enc64 = enc.double()
        many = enc64(feats.double(), layers=[0, 1, -1])
    assert out.frames.shape == (1, 250, WIDTH) and out.frames.dtype == torch.float32 and bool(out.valid.all())
    torch.testing.assert_close(out.frames.double(), ref64[-1][0], atol=1e-4, rtol=0)
    for got, (frames, cls) in zip(many, ref64):
        torch.testing.assert_close(got.frames, frames, atol=1e-10, rtol=0)
        if variant == "clip":
            torch.testing.assert_close(got.cls, cls, atol=1e-10, rtol=0)
        else:
            assert got.cls is None
    # the comparison is sensitive: frame-major instead of mel-major patches change the output
    ref_wrong = reference_encoder(_double(sd), feats.double()[:, :, :1000]
                                  .reshape(1, 64, 250, 4).transpose(1, 3).reshape(1, 64, 1000), variant=variant)
    assert (ref_wrong[0][0] - ref64[-1][0]).abs().max() > 1e-2


@pytest.mark.parametrize("variant", ["frame", "clip"])
def test_padded_batch_equals_clips_alone(variant):
    sd, enc = _pair(variant)
    lengths = [1001, 601, 203, 7]
    clips = [_features(1, n, seed=i + 1)[0] for i, n in enumerate(lengths)]
    batch = torch.randn(len(lengths), 64, 1001) * 3.0  # garbage padding must not matter
    for i, c in enumerate(clips):
        batch[i, :, : c.shape[-1]] = c
    with torch.no_grad():
        out = enc(batch, torch.tensor(lengths))
    for i, c in enumerate(clips):
        n = c.shape[-1] // 4
        assert int(out.valid[i].sum()) == n
        with torch.no_grad():
            alone = enc(c[None])
        torch.testing.assert_close(out.frames[i, :n], alone.frames[0], atol=1e-5, rtol=0)
        ref = reference_encoder(sd, batch[i : i + 1], [lengths[i]], variant=variant)[0]
        torch.testing.assert_close(out.frames[i, :n], ref[0][0, :n], atol=1e-4, rtol=0)
        if variant == "clip":
            torch.testing.assert_close(out.cls[i], alone.cls[0], atol=1e-5, rtol=0)


def test_token_mask_replaces_tokens_before_position():
    sd, enc = _pair("frame")
    feats = _features(2, 401)
    mask = torch.zeros(2, 100, dtype=torch.bool)
    mask[0, 10:15] = True
    mask[1, 50:80] = True
    with torch.no_grad():
        out = enc(feats, token_mask=mask)
    ref = reference_encoder(_double(sd), feats.double(), token_mask=mask)[0][0]
    torch.testing.assert_close(out.frames.double(), ref, atol=1e-4, rtol=0)
    # a masked token's input no longer matters
    changed = feats.clone()
    changed[0, :, 40:60] += 5.0
    with torch.no_grad():
        again = enc(changed, token_mask=mask)
    torch.testing.assert_close(again.frames[0], out.frames[0], atol=1e-5, rtol=0)


def test_longer_than_positional_table_points_to_detect():
    enc = ATSTEncoder(EncoderConfig.named("frame_tiny")).eval()
    with torch.no_grad():
        assert enc(_features(1, 1003)).frames.shape[1] == 250  # 1003 frames still fit (250 tokens)
        with pytest.raises(AtstSedError, match="detect"):
            enc(_features(1, 1004))


@pytest.mark.parametrize(
    "name,count",
    [("frame_small", 21_475_968), ("clip_small", 21_476_352), ("frame_base", 85_419_264), ("clip_base", 85_420_032)],
)
def test_parameter_counts_match_audiossl(name, count, monkeypatch):
    # shapes only: skip the (slow, irrelevant here) random initialisation of up to 85 M parameters
    monkeypatch.setattr(ATSTEncoder, "reset_parameters", lambda self: None)
    monkeypatch.setattr(torch.nn.Linear, "reset_parameters", lambda self: None)
    enc = ATSTEncoder(EncoderConfig.named(name))
    assert sum(p.numel() for p in enc.parameters()) == count
    heads = {"small": 6, "base": 12}[name.split("_")[1]]
    assert enc.config.heads == heads and enc.blocks[0].attn.heads == heads
    assert enc.blocks[0].attn.qkv.bias is None
    assert enc.blocks[0].norm1.eps == 1e-6 and enc.norm.eps == 1e-6
