"""One transformer for ATST-Frame (frame tokens) and ATST-Clip (frame tokens + CLS).

Parameter names follow audiossl (``blocks.i.attn.qkv`` …) so official weights map one to one;
the final norm is called ``norm`` for both variants and the patch projection ``patch_embed``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from atst_sed.errors import AtstSedError
from atst_sed.frontend import FrontendConfig
from atst_sed.timegrid import ATST_GRID, FrameGrid

HEAD_DIM = 64
#: The model names of the two variants.
FAMILY = {"frame": "ATST-Frame", "clip": "ATST-Clip"}


@dataclass(frozen=True)
class EncoderConfig:
    """Architecture of an ATST encoder. ``variant`` is ``frame`` (ATST-Frame) or ``clip`` (ATST-Clip)."""

    variant: str = "frame"
    width: int = 768
    depth: int = 12
    heads: int = 12
    n_mels: int = 64
    patch_frames: int = ATST_GRID.frames_per_output
    max_tokens: int = 250
    mlp_ratio: float = 4.0
    drop_path: float = 0.1

    def __post_init__(self) -> None:
        if self.variant not in ("frame", "clip"):
            raise ValueError(f"variant must be 'frame' or 'clip', not {self.variant!r}")
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")

    @classmethod
    def named(cls, name: str, **overrides) -> "EncoderConfig":
        """``frame_small``, ``frame_base``, ``clip_small``, ``clip_base`` (and ``*_tiny`` for tests)."""
        variant, _, size = name.partition("_")
        sizes = {"tiny": (64, 2, 1), "small": (384, 12, 6), "base": (768, 12, 12)}
        if variant not in ("frame", "clip") or size not in sizes:
            raise ValueError(f"unknown encoder {name!r}; use frame|clip _ small|base|tiny")
        width, depth, heads = sizes[size]
        return cls(**{"variant": variant, "width": width, "depth": depth, "heads": heads, **overrides})

    def to_dict(self) -> dict:
        return asdict(self)


class EncoderOutput(NamedTuple):
    frames: Tensor  # (B, N, D) frame tokens after the final norm
    cls: Tensor | None  # (B, D) CLS token after the final norm (ATST-Clip only)
    valid: Tensor  # (B, N) bool, True for tokens inside each clip


class DropPath(nn.Module):
    """Per-sample stochastic depth, scaled by 1 / keep probability."""

    def __init__(self, rate: float):
        super().__init__()
        self.rate = rate

    def forward(self, x: Tensor) -> Tensor:
        if self.rate == 0.0 or not self.training:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"rate={self.rate:.3f}"


class Attention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.proj = nn.Linear(width, width)

    def forward(self, x: Tensor, key_mask: Tensor | None) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        attn_mask = None if key_mask is None else key_mask[:, None, None, :]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.proj(y.transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block (LayerNorm eps 1e-6, no qkv bias)."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, drop_path: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=1e-6)
        self.attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width, eps=1e-6)
        self.mlp = Mlp(width, int(width * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor, key_mask: Tensor | None) -> Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x), key_mask))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class ATSTEncoder(nn.Module):
    """ATST transformer over 64-mel × 4-frame tokens (40 ms each behind the ATST frontend).

    Input: normalised log-mel ``features`` (B, 64, T) and optional ``frame_lengths`` (B,) in mel
    frames; keys past each clip's ``frame_lengths // 4`` tokens are masked out of attention, so a
    padded clip gives the same valid outputs as the clip alone.
    """

    def __init__(self, config: EncoderConfig | None = None):
        super().__init__()
        self.config = c = config or EncoderConfig()
        patch_dim = c.n_mels * c.patch_frames
        self.mask_embed = nn.Parameter(torch.zeros(1, 1, c.width))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.width)) if c.variant == "clip" else None
        self.pos_embed = nn.Parameter(torch.zeros(1, c.max_tokens + 1, c.width))
        self.patch_embed = nn.Linear(patch_dim, c.width)
        rates = torch.linspace(0, c.drop_path, c.depth, device="cpu").tolist()  # also under torch.device("meta")
        self.blocks = nn.ModuleList(Block(c.width, c.heads, c.mlp_ratio, r) for r in rates)
        self.norm = nn.LayerNorm(c.width, eps=1e-6)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Pretraining init: truncated normal (std 0.02) for weights and embeddings, zero biases."""
        if self.pos_embed.is_meta:  # built only to receive a checkpoint's tensors
            return
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02, a=-2.0, b=2.0)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for p in (self.mask_embed, self.pos_embed, self.cls_token):
            if p is not None:
                nn.init.trunc_normal_(p, std=0.02, a=-2.0, b=2.0)

    @property
    def width(self) -> int:
        return self.config.width

    @property
    def family(self) -> str:
        """``ATST-Frame`` or ``ATST-Clip``."""
        return FAMILY[self.config.variant]

    def grid(self, frontend: FrontendConfig) -> FrameGrid:
        """The output frames of this encoder behind ``frontend``: ``patch_frames`` mel frames each."""
        return FrameGrid(frontend.hop_length, self.config.patch_frames, frontend.sample_rate)

    def tokenize(self, features: Tensor) -> Tensor:
        """(B, 64, T) → (B, T // 4, 256) with element ``m * 4 + k`` = mel bin m of frame 4t + k."""
        b, m, t = features.shape
        if m != self.config.n_mels:
            raise AtstSedError(f"encoder expects {self.config.n_mels} mel bins, got {m}")
        n = t // self.config.patch_frames
        x = features[:, :, : n * self.config.patch_frames].reshape(b, m, n, self.config.patch_frames)
        return x.permute(0, 2, 1, 3).reshape(b, n, m * self.config.patch_frames)

    def freeze_all_but_last(self, n_blocks: int) -> None:
        """Only the last ``n_blocks`` blocks and the final norm train (0: nothing of the encoder)."""
        for p in self.parameters():
            p.requires_grad_(False)
        if n_blocks > 0:
            for module in [self.norm, *list(self.blocks)[len(self.blocks) - n_blocks :]]:
                for p in module.parameters():
                    p.requires_grad_(True)

    def _first_trainable_stage(self) -> int:
        """Index of the first stage (0 = embeddings, i + 1 = block i) with a trainable parameter."""
        embeds = [self.mask_embed, self.pos_embed, self.patch_embed.weight, self.patch_embed.bias]
        if self.cls_token is not None:
            embeds.append(self.cls_token)
        if any(p.requires_grad for p in embeds):
            return 0
        for i, block in enumerate(self.blocks):
            if any(p.requires_grad for p in block.parameters()):
                return i + 1
        return len(self.blocks) + 1

    def forward(
        self,
        features: Tensor,
        frame_lengths: Tensor | None = None,
        token_mask: Tensor | None = None,
        layers: Sequence[int] | None = None,
    ) -> EncoderOutput | list[EncoderOutput]:
        """Encode ``features`` (B, 64, T).

        ``token_mask`` (B, N) bool replaces those tokens with the learned mask token (pretraining).
        ``layers``: None → the last block's output; otherwise a list of outputs of the given block
        indices (negative indices allowed), each passed through the final norm.
        Frozen leading stages run without autograd (no stored activations).
        """
        c = self.config
        x = self.tokenize(features)
        b, n, _ = x.shape
        if n > c.max_tokens:
            raise AtstSedError(
                f"input of {n} tokens ({features.shape[-1]} frames) is longer than the encoder's "
                f"{c.max_tokens}-token positional table ({c.max_tokens * c.patch_frames} mel frames); "
                "split long audio into windows (atst-sed detect does this)"
            )
        if n == 0:
            raise AtstSedError(f"input of {features.shape[-1]} mel frames is shorter than one token ({c.patch_frames} frames)")
        if frame_lengths is None:
            n_valid = torch.full((b,), n, device=x.device, dtype=torch.long)
        else:
            n_valid = torch.clamp(frame_lengths.to(x.device) // c.patch_frames, min=1, max=n)
        valid = torch.arange(n, device=x.device)[None, :] < n_valid[:, None]
        wanted = {len(self.blocks) - 1} if layers is None else {i % len(self.blocks) for i in layers}
        first_trainable = self._first_trainable_stage()

        with torch.set_grad_enabled(torch.is_grad_enabled() and first_trainable == 0):
            x = self.patch_embed(x)
            if token_mask is not None:
                x = torch.where(token_mask[..., None], self.mask_embed.to(x.dtype), x)
            x = x + self.pos_embed[:, 1 : n + 1]
            key_mask = None if bool(valid.all()) else valid
            if self.cls_token is not None:
                cls = (self.cls_token + self.pos_embed[:, :1]).expand(b, -1, -1)
                x = torch.cat([cls, x], dim=1)
                if key_mask is not None:
                    key_mask = torch.cat([key_mask.new_ones(b, 1), key_mask], dim=1)

        outputs: dict[int, Tensor] = {}
        for i, block in enumerate(self.blocks):
            with torch.set_grad_enabled(torch.is_grad_enabled() and first_trainable <= i + 1):
                x = block(x, key_mask)
            if i in wanted:
                outputs[i] = x
            if len(outputs) == len(wanted):
                break

        def finish(h: Tensor) -> EncoderOutput:
            h = self.norm(h)
            if self.cls_token is not None:
                return EncoderOutput(h[:, 1:], h[:, 0], valid)
            return EncoderOutput(h, None, valid)

        if layers is None:
            return finish(outputs[len(self.blocks) - 1])
        return [finish(outputs[i % len(self.blocks)]) for i in layers]
