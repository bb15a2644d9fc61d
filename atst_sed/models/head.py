"""Frame classifiers on encoder tokens: attention-pooled (the DESED heads released with ATST-Frame)
and linear-only (the AudioSet-strong head, which has no clip output)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn


class SEDOutput(NamedTuple):
    """What a SED model gives: frame scores on its grid, clip scores, and which frames are valid."""

    frame_logits: Tensor  # (B, N, C) pre-sigmoid frame scores
    frame_probs: Tensor  # (B, N, C) sigmoid(frame_logits)
    clip_probs: Tensor | None  # (B, C) clip probabilities (None for a model without a clip head)
    valid: Tensor | None = None  # (B, N) bool: frames inside each clip (None: all)

    @property
    def frame_mask(self) -> Tensor:
        """(B, N) bool: the frames inside each clip (:attr:`valid`, all True when it is None)."""
        if self.valid is not None:
            return self.valid
        b, n = self.frame_probs.shape[:2]
        return torch.ones(b, n, dtype=torch.bool, device=self.frame_probs.device)


def attention_pooling(probs: Tensor, attention_logits: Tensor, valid: Tensor | None = None) -> Tensor:
    """Clip probabilities Σ_t p·a / Σ_t a over the valid frames, a = clamp(softmax over classes, 1e-7, 1).

    ``probs``, ``attention_logits`` (B, N, C); ``valid`` (B, N) bool (None: all valid) → (B, C).
    """
    attention = torch.softmax(attention_logits, dim=-1).clamp(1e-7, 1.0)
    if valid is not None:
        attention = attention * valid[..., None].to(attention.dtype)
    return (probs * attention).sum(dim=1) / attention.sum(dim=1)


class AttentionPoolingHead(nn.Module):
    """Frame probabilities p = sigmoid(W_s x); attention a = clamp(softmax_over_classes(W_a x), 1e-7, 1);
    clip probability = Σ_t p·a / Σ_t a over each clip's valid frames.

    Parameter names (``linear``, ``linear_softmax``) match the released DESED heads.
    """

    def __init__(self, width: int, n_classes: int):
        super().__init__()
        self.linear = nn.Linear(width, n_classes)
        self.linear_softmax = nn.Linear(width, n_classes)
        for layer in (self.linear, self.linear_softmax):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, frames: Tensor, valid: Tensor | None = None) -> SEDOutput:
        """``frames`` (B, N, D) token embeddings; ``valid`` (B, N) bool (None: all valid)."""
        logits = self.linear(frames)
        probs = torch.sigmoid(logits)
        return SEDOutput(logits, probs, attention_pooling(probs, self.linear_softmax(frames), valid), valid)


class MaxPoolingHead(nn.Module):
    """Frame probabilities p = sigmoid(W_s x) only (the released AudioSet-strong head: ``linear``).

    The file has no clip head; the clip probability here is derived, not trained: the maximum of p
    over each clip's valid frames ("does the class occur anywhere in the clip").
    """

    def __init__(self, width: int, n_classes: int):
        super().__init__()
        self.linear = nn.Linear(width, n_classes)
        nn.init.normal_(self.linear.weight, std=0.01)
        nn.init.zeros_(self.linear.bias)

    def forward(self, frames: Tensor, valid: Tensor | None = None) -> SEDOutput:
        """``frames`` (B, N, D) token embeddings; ``valid`` (B, N) bool (None: all valid)."""
        logits = self.linear(frames)
        probs = torch.sigmoid(logits)
        inside = probs if valid is None else probs.masked_fill(~valid[..., None], 0.0)
        return SEDOutput(logits, probs, inside.amax(dim=1), valid)


#: ``clip_pooling`` name → head class
HEADS: dict[str, type[nn.Module]] = {"attention": AttentionPoolingHead, "max": MaxPoolingHead}
