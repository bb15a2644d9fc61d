"""Span masking: fairseq static-mask semantics and statistics."""

from __future__ import annotations

from math import comb

import numpy as np
import torch

from atst_sed.training.masking import span_mask


def exact_expected_fraction(n: int = 250, p: float = 0.65, span: int = 5) -> float:
    """E[masked fraction] of fairseq static masking, from combinatorics (no sampling)."""
    base = p * n / span  # 32.5 → 32 or 33 spans with probability ½ each
    lo = int(np.floor(base))
    frac = base - lo
    starts = n - span  # starts 0 … n − span − 1
    total = 0.0
    for k, w in ((lo, 1 - frac), (lo + 1, frac)):
        for t in range(n):
            window = len(range(max(0, t - span + 1), min(t, starts - 1) + 1))  # starts that cover t
            total += w * (1 - comb(starts - window, k) / comb(starts, k))
    return total / n


def runs(row: torch.Tensor) -> list[int]:
    """Lengths of maximal runs of True."""
    padded = torch.cat([torch.zeros(1, dtype=torch.int8), row.to(torch.int8), torch.zeros(1, dtype=torch.int8)])
    d = torch.diff(padded)
    return (torch.nonzero(d == -1).flatten() - torch.nonzero(d == 1).flatten()).tolist()


def test_masked_fraction_is_about_half_and_matches_the_exact_expectation():
    mask = span_mask(4000, 250, 0.65, 5, generator=torch.Generator().manual_seed(1))
    assert mask.shape == (4000, 250) and mask.dtype == torch.bool
    expected = exact_expected_fraction()
    assert 0.49 < expected < 0.52  # the released code masks ~50 %, not 65 %
    assert abs(mask.float().mean().item() - expected) < 0.004
    per_row = mask.sum(1)
    assert per_row.min() >= 5 * 2 and per_row.max() <= 33 * 5


def test_spans_have_length_five_and_never_start_after_n_minus_span():
    mask = span_mask(500, 250, 0.65, 5, generator=torch.Generator().manual_seed(2))
    lengths = [r for row in mask for r in runs(row)]
    assert min(lengths) >= 5  # unions of 5-token spans
    assert not mask[:, 249].any()  # last start is 244 → covers 244…248
    assert mask[:, 248].any()
    # a single span: exactly 5 adjacent tokens
    one = span_mask(200, 250, mask_prob=0.0, span=5, min_spans=1, generator=torch.Generator().manual_seed(3))
    assert all(runs(row) == [5] for row in one)


def test_number_of_spans_is_32_or_33():
    """Without overlaps (spans only counted by starts) the count is int(32.5 + u)."""
    g = torch.Generator().manual_seed(4)
    # With span 1 every span is one token and the union size equals the number of spans.
    mask = span_mask(2000, 250, mask_prob=0.65 / 5, span=1, generator=g)
    counts = mask.sum(1)
    # 0.13 · 250 / 1 = 32.5 → 32 or 33, each about half of the time
    assert set(counts.unique().tolist()) == {32, 33}
    assert abs((counts == 33).float().mean().item() - 0.5) < 0.05


def test_reproducible_with_a_generator():
    a = span_mask(8, 250, generator=torch.Generator().manual_seed(7))
    b = span_mask(8, 250, generator=torch.Generator().manual_seed(7))
    c = span_mask(8, 250, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_short_sequences_use_the_widened_start_range():
    # N = 12, L = 5: 0.65·12/5 + u → 1 or 2 spans, min_spans 2 → 2 spans; N − L = 7 > 2 starts.
    mask = span_mask(300, 12, generator=torch.Generator().manual_seed(5))
    assert mask.sum(1).min() >= 5 and mask.sum(1).max() <= 10
    # N = 6, L = 5: only one start (0) would fit; fairseq widens to num_spans + 1 = 3 starts.
    tiny = span_mask(300, 6, generator=torch.Generator().manual_seed(6))
    assert tiny.any(1).all() and tiny.shape == (300, 6)
