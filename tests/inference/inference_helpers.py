"""Test helpers for the inference tests: hand-wired tiny SED models and synthetic recordings."""

from __future__ import annotations

import numpy as np
import torch

from atst_sed.frontend import FrontendConfig
from atst_sed.labels import DESED_CLASSES
from atst_sed.models.encoder import EncoderConfig
from atst_sed.models.sed import SEDModel

CLASSES = list(DESED_CLASSES)
LOUD = CLASSES[0]  # fires on loud frames
ALWAYS = CLASSES[1]  # constant 0.731 (logit +1)


def loud_model(frontend: FrontendConfig | None = None, **encoder) -> SEDModel:
    """A frame_tiny SED model wired by hand: its blocks are identities (zeroed residual branches)
    and no positional embedding, so each output frame depends only on its own token's mean log-mel.
    Class 0 fires on loud frames, class 1 is constant 0.731, the others constant 0.269.
    ``frontend`` / ``encoder`` (EncoderConfig fields) change its frame grid and window."""
    torch.manual_seed(0)
    model = SEDModel(EncoderConfig.named("frame_tiny", **encoder), CLASSES, frontend)
    enc = model.encoder
    with torch.no_grad():
        enc.pos_embed.zero_()
        for block in enc.blocks:
            for layer in (block.attn.proj, block.mlp.fc2):
                layer.weight.zero_()
                layer.bias.zero_()
        enc.patch_embed.weight.zero_()
        enc.patch_embed.bias.zero_()
        enc.patch_embed.weight[0, :] = 1.0 / enc.patch_embed.weight.shape[1]  # dim 0: mean log-mel
        enc.patch_embed.bias[1] = -1.0  # dim 1: a constant reference for the layer norm
        enc.norm.weight.fill_(1.0)
        enc.norm.bias.zero_()
        model.head.linear.weight.zero_()
        model.head.linear.bias.fill_(-1.0)
        model.head.linear.bias[1] = 1.0
        model.head.linear.weight[0, 0] = 2.0
    return model.eval()


def random_model(seed: int = 0) -> SEDModel:
    """A frame_tiny SED model with random weights and a head strong enough to vary over time."""
    torch.manual_seed(seed)
    model = SEDModel(EncoderConfig.named("frame_tiny"), CLASSES)
    with torch.no_grad():
        model.head.linear.weight.normal_(0.0, 1.0)
    return model.eval()


def noise_with_bursts(seconds: float, bursts: list[tuple[float, float]], sr: int = 16000, seed: int = 0) -> np.ndarray:
    """Quiet noise (-60 dBFS) with loud noise bursts at the given (start, stop) seconds; (N,) float32."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    x = rng.standard_normal(n).astype(np.float32) * 1e-3
    for a, b in bursts:
        i, j = int(round(a * sr)), int(round(b * sr))
        x[i:j] += rng.standard_normal(j - i).astype(np.float32) * 0.3
    return x
