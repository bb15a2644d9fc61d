"""Mixup bank and random resized crop / frequency warp."""

from __future__ import annotations

import math

import pytest
import torch

from atst_sed.data.augment import MixupBank, RandomResizeCrop


def test_frequency_warp_shape_band_and_identity_rate():
    g = torch.Generator().manual_seed(0)
    warp = RandomResizeCrop.frequency_warp(generator=g)
    ramp = torch.arange(64, dtype=torch.float32)[:, None].expand(64, 40).contiguous()
    assert warp(torch.randn(64, 1001)).shape == (64, 1001)
    identity, heights = 0, []
    for _ in range(1000):
        out = warp(ramp)
        assert out.shape == (64, 40)
        # time is untouched: every column is the same
        assert torch.equal(out, out[:, :1].expand_as(out))
        if torch.equal(out, ramp):
            identity += 1
            continue
        # align_corners=True: the first and last rows are exactly the band's edge bins
        lo, hi = out[0, 0].item(), out[-1, 0].item()
        assert lo == int(lo) and hi == int(hi)
        h = int(hi - lo) + 1
        heights.append(h)
        assert 0 <= lo and hi <= 63
        assert bool((torch.diff(out[:, 0]) > 0).all())  # monotone stretch of a band
    # h = clip(int(U(0.6, 1.5) · 64), 1, 64): P(h = 64) = 0.5 / 0.9
    assert abs(identity / 1000 - 0.5 / 0.9) < 0.05
    assert min(heights) >= 38 and max(heights) <= 63
    assert min(heights) <= 40 and max(heights) >= 62


def test_frequency_warp_keeps_time_structure():
    warp = RandomResizeCrop.frequency_warp(generator=torch.Generator().manual_seed(1))
    x = torch.arange(300, dtype=torch.float32)[None, :].expand(64, 300).contiguous()  # constant over frequency
    for _ in range(20):
        assert torch.allclose(warp(x), x, atol=1e-3)


def test_clip_crop_parameters_and_shape():
    g = torch.Generator().manual_seed(2)
    rrc = RandomResizeCrop.clip(generator=g)
    for _ in range(200):
        i, j, h, w = rrc.params((64, int(601 * 1.5)), (64, 601))
        assert 38 <= h <= 64 and 0 <= i <= 64 - h
        assert int(0.6 * 601) <= w <= 901 and 0 <= j <= 901 - w
    x = torch.randn(64, 601)
    out = rrc(x)
    assert out.shape == (64, 601) and torch.isfinite(out).all()


def test_clip_crop_identity_when_scales_are_one():
    rrc = RandomResizeCrop((1.0, 1.0), (1.0, 1.0), (1.0, 1.0))
    x = torch.randn(2, 64, 601)
    assert torch.equal(rrc(x), x)


def test_mixup_bank_first_sample_unmixed_and_bank_stores_unmixed():
    bank = MixupBank(ratio=0.4, n_memory=3, generator=torch.Generator().manual_seed(0))
    xs = [torch.randn(64, 50) for _ in range(5)]
    out0 = bank(xs[0])
    assert torch.equal(out0, xs[0])
    out1 = bank(xs[1])
    # only xs[0] is in the bank: exp(out) = (1 − a) exp(x1) + a exp(x0) + eps with one a ∈ [0, 0.4]
    eps = torch.finfo(torch.float32).eps
    num = out1.double().exp() - xs[1].double().exp() - eps
    den = xs[0].double().exp() - xs[1].double().exp()
    a = num / den
    keep = den.abs() > 0.5
    assert 0.0 <= a[keep].median().item() <= 0.4
    assert torch.allclose(a[keep], a[keep].median(), atol=1e-3)
    assert torch.equal(bank.bank[1], xs[1])  # stored unmixed
    for x in xs[2:]:
        bank(x)
    assert len(bank.bank) == 3 and all(torch.equal(b, x) for b, x in zip(bank.bank, xs[2:]))  # FIFO


def test_mixup_is_log_mixup_exp_in_the_normalised_domain():
    bank = MixupBank(ratio=1.0, generator=torch.Generator().manual_seed(3))
    z = torch.full((64, 10), 0.5)
    x = torch.full((64, 10), -1.0)
    bank(z)
    out = bank(x)
    a = (out.exp() - math.exp(-1.0)) / (math.exp(0.5) - math.exp(-1.0))
    assert torch.allclose(a, a[0, 0], atol=1e-5) and 0 <= a[0, 0] <= 1


def test_mixup_ratio_validation():
    with pytest.raises(ValueError):
        MixupBank(ratio=1.5)
