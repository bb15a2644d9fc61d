"""SED model = ATST encoder + attention-pooled frame classifier (features in, probabilities out)."""

from __future__ import annotations

from torch import Tensor, nn

from atst_sed.models.encoder import ATSTEncoder, EncoderConfig
from atst_sed.models.head import HEADS, SEDOutput


class SEDModel(nn.Module):
    """Normalised log-mel (B, 64, T) → frame probabilities (B, T // 4, C) and clip probabilities (B, C).

    ``clip_pooling``: ``attention`` (the DESED heads) or ``max`` (a frame-only head such as the
    AudioSet-strong release; the clip probability is then the maximum over frames).
    """

    def __init__(self, encoder: ATSTEncoder | EncoderConfig, n_classes: int, clip_pooling: str = "attention"):
        super().__init__()
        if clip_pooling not in HEADS:
            raise ValueError(f"clip_pooling must be one of {sorted(HEADS)}, not {clip_pooling!r}")
        self.encoder = encoder if isinstance(encoder, ATSTEncoder) else ATSTEncoder(encoder)
        self.clip_pooling = clip_pooling
        self.head = HEADS[clip_pooling](self.encoder.width, n_classes)

    @property
    def n_classes(self) -> int:
        return self.head.linear.out_features

    def forward(self, features: Tensor, frame_lengths: Tensor | None = None) -> SEDOutput:
        out = self.encoder(features, frame_lengths)
        return self.head(out.frames, out.valid)

    def freeze_all_but_last(self, n_blocks: int = 1) -> None:
        """Paper default: train only the last ``n_blocks`` blocks, the final norm and the head."""
        enc = self.encoder
        for p in enc.parameters():
            p.requires_grad_(False)
        trainable = [enc.norm, *list(enc.blocks)[len(enc.blocks) - n_blocks :]] if n_blocks > 0 else []
        for module in trainable:
            for p in module.parameters():
                p.requires_grad_(True)
        for p in self.head.parameters():
            p.requires_grad_(True)
