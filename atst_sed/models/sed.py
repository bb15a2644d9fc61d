"""SED model = its frontend + ATST encoder + attention-pooled frame classifier, and its contract.

A SED model computes its own features (:meth:`SEDModel.features`: waveforms → the model's input)
and maps them to frame and clip probabilities (:meth:`SEDModel.forward`). Code around it — label
encoding, training, sliding-window detection, decoding, score files, pictures — reads what it needs
from :attr:`SEDModel.spec` (a :class:`~atst_sed.models.spec.ModelSpec`), never from module
constants, so another model family with another frame grid or frontends fits without changes there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from atst_sed.decoding import Decoding
from atst_sed.frontend import FrontendConfig, LogMelFrontend
from atst_sed.models.encoder import ATSTEncoder, EncoderConfig
from atst_sed.models.head import AttentionPoolingHead, SEDOutput
from atst_sed.models.spec import ModelSpec, ParameterPart
from atst_sed.timegrid import FrameGrid


class ModelInput(NamedTuple):
    """What :meth:`SEDModel.features` gives and :meth:`SEDModel.forward` takes (``model(*inputs)``)."""

    features: Tensor  # (B, 64, T) normalised log-mel, float32
    frame_lengths: Tensor | None  # (B,) valid mel frames per clip; None: all valid


class SEDModel(nn.Module):
    """Waveforms → normalised log-mel (B, 64, T) → frame probabilities (B, T // 4, C), clip
    probabilities (B, C).

    ``classes``: the output classes in order; ``frontend``: the log-mel settings (default: ATST's);
    ``decoding``: the default post-processing (default 0.5 / 7 frames per class). Only the encoder
    and the head hold weights (``state_dict`` keys ``encoder.*``, ``head.*``).
    """

    def __init__(
        self,
        encoder: ATSTEncoder | EncoderConfig,
        classes: Sequence[str],
        frontend: FrontendConfig | None = None,
        decoding: Decoding | None = None,
    ):
        super().__init__()
        if isinstance(classes, (str, int)):
            raise TypeError(f"classes must be the class names in output order, not {classes!r}")
        self.classes: tuple[str, ...] = tuple(str(c) for c in classes)
        self.encoder = encoder if isinstance(encoder, ATSTEncoder) else ATSTEncoder(encoder)
        self.head = AttentionPoolingHead(self.encoder.width, len(self.classes))
        self.frontend = LogMelFrontend(frontend)
        self.decoding = decoding or Decoding.for_classes(self.classes)
        if self.decoding.classes != self.classes:
            raise ValueError(f"decoding settings are for {list(self.decoding.classes)}, the model's classes are {list(self.classes)}")

    # ------------------------------------------------------------------------------ contract
    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def grid(self) -> FrameGrid:
        """The output frame grid: 40 ms (4 × 10 ms mel frames) for ATST."""
        return self.encoder.grid(self.frontend.config)

    @property
    def window_samples(self) -> int:
        """The longest input in one pass: the encoder's positional table (250 tokens = 10 s)."""
        return self.encoder.config.max_tokens * self.grid.hop_samples

    @property
    def min_samples(self) -> int:
        """The shortest input: enough for the frontend's STFT and for one output frame."""
        grid = self.grid
        return max(self.frontend.min_samples, (grid.frames_per_output - 1) * grid.mel_hop_samples)

    @property
    def spec(self) -> ModelSpec:
        return ModelSpec(
            family=self.encoder.family, grid=self.grid, window_samples=self.window_samples,
            min_samples=self.min_samples, classes=self.classes, decoding=self.decoding,
            frontend=self.frontend.config,
        )

    # ------------------------------------------------------------------------------ compute
    def features(self, waves: Tensor, lengths: Tensor | None = None) -> ModelInput:
        """Waveforms (B, N) at the frontend's rate and valid samples per clip (B,) (None: all) →
        this model's input. Computed in float32 without autograd, on the waveforms' device (the
        model's)."""
        with torch.no_grad():
            features = self.frontend(waves, lengths)
        frame_lengths = None if lengths is None else self.frontend.n_frames(lengths.to(features.device)).long()
        return ModelInput(features, frame_lengths)

    def forward(self, features: Tensor, frame_lengths: Tensor | None = None) -> SEDOutput:
        """``features`` (B, 64, T), ``frame_lengths`` (B,) valid mel frames → :class:`SEDOutput`
        (frame tensors (B, T // 4, C); ``valid`` marks each clip's frames)."""
        out = self.encoder(features, frame_lengths)
        return self.head(out.frames, out.valid)

    def parameter_parts(self) -> list[ParameterPart]:
        """Parts for learning rates: the head (``head``), then the encoder (``encoder``) by depth from
        the top: final norm and last block 0, block k from the top k, embeddings ``depth``."""
        enc = self.encoder
        depth = len(enc.blocks)
        parts = [ParameterPart("head", "head", None, list(self.head.parameters())),
                 ParameterPart("norm", "encoder", 0, list(enc.norm.parameters()))]
        parts += [ParameterPart(f"blocks.{i}", "encoder", depth - 1 - i, list(block.parameters())) for i, block in enumerate(enc.blocks)]
        embeds = [enc.mask_embed, enc.pos_embed, *enc.patch_embed.parameters()]
        if enc.cls_token is not None:
            embeds.append(enc.cls_token)
        return [*parts, ParameterPart("embeddings", "encoder", depth, embeds)]

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
