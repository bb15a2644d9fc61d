"""SED model = its frontend + ATST encoder + frame classifier, and its contract.

A SED model computes its own features (:meth:`SEDModel.features`: waveforms → the model's input)
and maps them to frame and clip probabilities (``model(*inputs)``, :meth:`SEDModel.forward`). Code
around it — label encoding, training, sliding-window detection, decoding, score files, pictures —
reads what it needs from :attr:`SEDModel.spec` (a :class:`~atst_sed.models.spec.ModelSpec`), never
from module constants; :class:`~atst_sed.models.crnn.ATSTSEDModel` (64 ms) fits the same contract.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from atst_sed.decoding import Decoding
from atst_sed.frontend import FrontendConfig, LogMelFrontend
from atst_sed.models.encoder import ATSTEncoder, EncoderConfig
from atst_sed.models.head import HEADS, SEDOutput
from atst_sed.models.spec import CLIP_POOLINGS, ModelSpec, ParameterPart, check_short_clips, pad_to_window
from atst_sed.timegrid import FrameGrid


class ModelInput(NamedTuple):
    """What :meth:`SEDModel.features` gives and :meth:`SEDModel.forward` takes (``model(*inputs)``)."""

    features: Tensor  # (B, 64, T) normalised log-mel, float32
    frame_lengths: Tensor | None  # (B,) valid mel frames per clip; None: all valid


class SEDModel(nn.Module):
    """Waveforms → normalised log-mel (B, 64, T) → frame probabilities (B, T // 4, C), clip
    probabilities (B, C).

    ``classes``: the output classes in order; ``frontend``: the log-mel settings (default: ATST's);
    ``decoding``: the default post-processing (default 0.5 / 7 frames per class); ``clip_pooling``:
    ``attention`` (the DESED heads: ``linear`` + ``linear_softmax``) or ``max`` (a frame-only head
    such as the AudioSet-strong release: the clip probability is the maximum over frames);
    ``short_clips``: how clips shorter than the window are scored by default (``mask``: alone;
    ``pad``: zero-padded to 10 s as the official test paths do); ``meta``: provenance.
    Only the encoder and the head hold weights (``state_dict`` keys ``encoder.*``, ``head.*``).
    """

    def __init__(
        self,
        encoder: ATSTEncoder | EncoderConfig,
        classes: Sequence[str],
        frontend: FrontendConfig | None = None,
        decoding: Decoding | None = None,
        clip_pooling: str = "attention",
        short_clips: str = "mask",
        meta: dict[str, Any] | None = None,
    ):
        super().__init__()
        if isinstance(classes, (str, int)):
            raise TypeError(f"classes must be the class names in output order, not {classes!r}")
        if clip_pooling not in CLIP_POOLINGS:
            raise ValueError(f"clip_pooling must be one of {', '.join(CLIP_POOLINGS)}, not {clip_pooling!r}")
        self.classes: tuple[str, ...] = tuple(str(c) for c in classes)
        self.encoder = encoder if isinstance(encoder, ATSTEncoder) else ATSTEncoder(encoder)
        self.clip_pooling = clip_pooling
        self.head = HEADS[clip_pooling](self.encoder.width, len(self.classes))
        with torch.device("cpu"):  # real filters even when the networks are built on the meta device
            self.frontend = LogMelFrontend(frontend)
        self.decoding = decoding or Decoding.for_classes(self.classes)
        if self.decoding.classes != self.classes:
            raise ValueError(f"decoding settings are for {list(self.decoding.classes)}, the model's classes are {list(self.classes)}")
        self.short_clips = check_short_clips(short_clips)
        self.meta: dict[str, Any] = dict(meta or {})

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
            frontends={"atst": self.frontend.config}, clip_pooling=self.clip_pooling,
            short_clips=self.short_clips, meta=dict(self.meta),
        )

    # ------------------------------------------------------------------------------ compute
    def features(self, waves: Tensor, lengths: Tensor | None = None, short_clips: str | None = None) -> ModelInput:
        """Waveforms (B, N) or (N,) at the frontend's rate and valid samples per clip (B,) (None: all)
        → this model's input. ``short_clips`` (default the model's): ``mask`` scores each clip alone;
        ``pad`` zero-pads every clip to the window and scores the padding as audio. Computed in
        float32 without autograd, on the waveforms' device (the model's)."""
        if waves.dim() == 1:
            waves = waves[None]
        if check_short_clips(short_clips or self.short_clips) == "pad":
            waves, lengths = pad_to_window(waves, lengths, self.window_samples), None
        with torch.no_grad():
            features = self.frontend(waves, lengths)
        frame_lengths = None if lengths is None else self.frontend.n_frames(lengths.to(features.device)).long()
        return ModelInput(features, frame_lengths)

    def forward(self, features: Tensor, frame_lengths: Tensor | None = None) -> SEDOutput:
        """``features`` (B, 64, T), ``frame_lengths`` (B,) valid mel frames → :class:`SEDOutput`
        (frame tensors (B, T // 4, C); ``valid`` marks each clip's frames)."""
        out = self.encoder(features, frame_lengths)
        # The head runs in float32 even under bf16 autocast: a bf16 sigmoid keeps 8 significant bits,
        # so probabilities would come in steps of 0.004 near 1 (0.9999 would read 1.0), which moves
        # threshold crossings, score files and PSDS sweeps. It is 0.01 % of the model's work.
        with torch.autocast(features.device.type, enabled=False):
            return self.head(out.frames.float(), out.valid)

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
        self.encoder.freeze_all_but_last(n_blocks)
        for p in self.head.parameters():
            p.requires_grad_(True)
