"""Group (span) masking of encoder tokens for ATST-Frame pretraining.

Same semantics as fairseq's ``compute_mask_indices`` with ``mask_type="static"`` (what audiossl
calls ``block``), applied independently to every row:

- ``num_spans = max(min_spans, int(p * N / L + u))`` with ``u ~ U[0, 1)``;
- span starts are drawn *without replacement* from ``0 … N − L − 1`` (fairseq draws from
  ``range(N − L)``; when that range is too small for ``num_spans`` it is widened to
  ``num_spans + 1`` starts);
- every span masks ``L`` consecutive tokens (clipped at ``N``); spans may overlap and the mask is
  their union.

Because spans overlap, ``p = 0.65`` masks ≈ 50 % of the tokens (N = 250, L = 5: 32 or 33 spans,
mean masked fraction ≈ 0.50), not 65 % — the published models were trained with this.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def span_mask(
    batch: int,
    n_tokens: int,
    mask_prob: float = 0.65,
    span: int = 5,
    min_spans: int = 2,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Random span mask (B, N) bool, True = masked token (fairseq static semantics, one draw per row).

    ``generator`` (a CPU ``torch.Generator``) makes the draw reproducible; the result is moved to
    ``device``. Vectorised: no Python loop over rows or tokens.
    """
    if batch <= 0 or n_tokens <= 0:
        raise ValueError("batch and n_tokens must be positive")
    if span <= 0:
        raise ValueError("span must be positive")
    u = torch.rand(batch, generator=generator)
    n_spans = torch.clamp((mask_prob * n_tokens / span + u).floor().long(), min=min_spans)
    # fairseq: starts come from range(N - L); if that cannot hold num_spans distinct starts it
    # uses range(num_spans + 1) instead (min_len = N - num_spans - 1).
    n_choices = torch.full((batch,), max(n_tokens - span, 0), dtype=torch.long)
    n_choices = torch.where(n_choices <= n_spans, n_spans + 1, n_choices).clamp(max=n_tokens)
    n_spans = torch.minimum(n_spans, n_choices)
    width = int(n_choices.max())
    # Sampling without replacement: rank uniform keys, keep the n_spans smallest among the allowed starts.
    keys = torch.rand(batch, width, generator=generator)
    keys = keys.masked_fill(torch.arange(width)[None, :] >= n_choices[:, None], 2.0)
    ranks = keys.argsort(dim=1).argsort(dim=1)
    starts = ranks < n_spans[:, None]  # (B, width)
    starts = F.pad(starts, (0, n_tokens - width)).float()  # (B, N) start indicators
    # Dilate every start over the following span - 1 tokens (union of spans, clipped at N).
    covered = F.max_pool1d(F.pad(starts[:, None, :], (span - 1, 0)), kernel_size=span, stride=1)[:, 0]
    mask = covered > 0
    return mask if device is None else mask.to(device)
