"""The ATST-SED model family: CNN + ATST-Frame → fusion → BiGRU → frame and clip heads (64 ms grid).

The model owns its two frontends: :meth:`ATSTSEDModel.features` turns 16 kHz waveforms into a
:class:`CRNNInput` batch (a 128-mel per-clip min-max spectrogram for the CNN, the ATST log-mel
with dB clamped to [-50, 80] for the transformer), and :meth:`ATSTSEDModel.forward` turns that batch
into a :class:`~atst_sed.models.head.SEDOutput` on the model's grid (64 ms:
frame ``i`` at ``i · 0.064`` s, 156 frames per 10-s window).

Parameter names follow the official ``CRNN`` (``cnn.cnn.conv0``, ``rnn.rnn.weight_ih_l0``, ``cat_tf``,
``dense``, ``dense_softmax``), so a released ``sed_teacher.*`` / ``sed_student.*`` state dict loads
once its prefix is stripped; only the transformer (``atst_frame.atst.*`` there, ``atst.*`` here) is
renamed, by :func:`atst_sed.models.checkpoint.convert_official_state_dict`.

Short clips: by default (``short_clips="mask"``) each clip is scored as the clip alone, also inside
a zero-padded batch — the CNN re-zeroes the frames past each clip's end before every convolution,
the transformer masks the keys past its tokens, the tokens of each clip are pooled onto its own CNN
frames and the BiGRU runs on packed sequences. ``short_clips="pad"`` reproduces the official devtest
path instead: every clip is zero-padded to 10 s and the padding is scored as audio (156 frames).

Per-clip dB floor: the transformer's ``top_db`` floor is taken per clip. The official trainer's
test path computes it over the whole batch (torchaudio's ``AmplitudeToDB`` on a 3-D tensor), so
its outputs depend on the other clips of the batch; per clip (as its ``inference.py`` does, one clip
at a time) is the only batch-independent choice.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from atst_sed.audio import SAMPLE_RATE
from atst_sed.decoding import Decoding
from atst_sed.errors import AtstSedError
from atst_sed.frontend import (
    ATST_SED_BRANCH,
    ClipMinMaxMelConfig,
    ClipMinMaxMelFrontend,
    FrontendConfig,
    LogMelFrontend,
)
from atst_sed.labels import DESED_CLASSES
from atst_sed.models.encoder import HEAD_DIM, ATSTEncoder, EncoderConfig
from atst_sed.models.head import SEDOutput, attention_pooling
from atst_sed.models.spec import ModelSpec, ParameterPart, check_short_clips, pad_to_window
from atst_sed.timegrid import FrameGrid

#: Family name, as result tables and checkpoints name it.
FAMILY = "ATST-SED"
#: Every published ATST-SED model was trained and tested on 10-s clips (156 frames of 64 ms).
WINDOW_SAMPLES = 10 * SAMPLE_RATE
N_BLOCKS = 7
_BLOCK_LAYERS = ("conv", "batchnorm", "cg", "dropout", "pooling")  # official names, in order, per block


def _tuple(value: Any) -> tuple:
    return tuple(_tuple(v) for v in value) if isinstance(value, (list, tuple)) else value


@dataclass(frozen=True)
class CRNNConfig:
    """Architecture of the CNN / BiGRU / heads (the official YAML's ``net`` section).

    ``pooling``: (time, frequency) average pooling per conv block; the product of the time factors
    is the model's output hop in mel frames. ``rnn_layers`` is the official ``n_layers_RNN``.
    """

    n_classes: int = 10
    nb_filters: tuple[int, ...] = (16, 32, 64, 128, 128, 128, 128)
    kernel_size: tuple[int, ...] = (3,) * N_BLOCKS
    padding: tuple[int, ...] = (1,) * N_BLOCKS
    stride: tuple[int, ...] = (1,) * N_BLOCKS
    pooling: tuple[tuple[int, int], ...] = ((2, 2), (2, 2)) + ((1, 2),) * 5
    dropout: float = 0.5
    n_rnn_cell: int = 128
    rnn_layers: int = 2
    dropout_recurrent: float = 0.0
    embedding_size: int = 768
    activation: str = "cg"
    n_in_channel: int = 1

    def __post_init__(self) -> None:
        for name in ("nb_filters", "kernel_size", "padding", "stride", "pooling"):
            object.__setattr__(self, name, _tuple(getattr(self, name)))
        n = len(self.nb_filters)
        if any(len(getattr(self, k)) != n for k in ("kernel_size", "padding", "stride", "pooling")):
            raise ValueError("nb_filters, kernel_size, padding, stride and pooling need one entry per conv block")
        if self.activation != "cg":
            raise ValueError(f"activation {self.activation!r} is not supported (ATST-SED uses context gating, 'cg')")
        if self.n_in_channel != 1:
            raise ValueError("only single-channel (n_in_channel 1) input is supported")
        if any(s != 1 for s in self.stride) or any(p != k // 2 for k, p in zip(self.kernel_size, self.padding)):
            raise ValueError("conv blocks must keep the time axis (stride 1, padding kernel // 2): only pooling "
                             "may change the frame rate")

    @property
    def time_pooling(self) -> int:
        """Mel frames per output frame (4 for every published model)."""
        return math.prod(p[0] for p in self.pooling)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CRNNConfig":
        return cls(**data)

    @classmethod
    def from_net(cls, net: dict[str, Any]) -> "CRNNConfig":
        """From an official ``hyper_parameters['net']`` dict; missing keys take the official defaults.

        As in the official ``CRNN``, the number of GRU layers is ``n_layers_RNN`` (default 2): the
        YAML's ``rnn_layers`` key never reaches the GRU and is ignored here as well.
        """
        if net.get("rnn_type", "BGRU") != "BGRU":
            raise ValueError(f"rnn_type {net['rnn_type']!r} is not supported (ATST-SED uses BGRU)")
        d = cls()
        return cls(
            n_classes=int(net.get("nclass", d.n_classes)),
            nb_filters=net.get("nb_filters", d.nb_filters),
            kernel_size=net.get("kernel_size", d.kernel_size),
            padding=net.get("padding", d.padding),
            stride=net.get("stride", d.stride),
            pooling=net.get("pooling", d.pooling),
            dropout=float(net.get("dropout", d.dropout)),
            n_rnn_cell=int(net.get("n_RNN_cell", d.n_rnn_cell)),
            rnn_layers=int(net.get("n_layers_RNN", d.rnn_layers)),
            dropout_recurrent=float(net.get("dropout_recurrent", d.dropout_recurrent)),
            embedding_size=int(net.get("embedding_size", d.embedding_size)),
            activation=str(net.get("activation", "glu")),  # the official CRNN's default
            n_in_channel=int(net.get("n_in_channel", d.n_in_channel)),
        )


class ContextGating(nn.Module):
    """``x · sigmoid(W x)`` over the channels of (B, C, T, F)."""

    def __init__(self, channels: int):
        super().__init__()
        self.linear = nn.Linear(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        gate = torch.sigmoid(self.linear(x.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
        return x * gate


class ConvStack(nn.Module):
    """Conv2d → BatchNorm (eps 1e-3) → context gating → dropout → average pooling, per block.

    Input (B, 1, T, F) → (B, C, T // time_pooling, F // freq_pooling). With ``valid_frames`` (B,)
    the frames past each clip's end are zeroed before every convolution, so a clip in a padded
    batch sees the same zero border as the clip alone.
    """

    def __init__(self, config: CRNNConfig):
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        channels = config.n_in_channel
        for i, (n_out, k, p, s, pool) in enumerate(
            zip(config.nb_filters, config.kernel_size, config.padding, config.stride, config.pooling)
        ):
            block = (
                nn.Conv2d(channels, n_out, k, s, p),
                # momentum 0.99 in PyTorch's convention (weight of the new batch) is the official setting
                nn.BatchNorm2d(n_out, eps=1e-3, momentum=0.99),
                ContextGating(n_out),
                nn.Dropout(config.dropout),
                nn.AvgPool2d(tuple(pool)),
            )
            layers.update((f"{name}{i}", layer) for name, layer in zip(_BLOCK_LAYERS, block))
            channels = n_out
        self.cnn = nn.Sequential(layers)
        self.time_pooling = [int(pool[0]) for pool in config.pooling]

    def forward(self, x: Tensor, valid_frames: Tensor | None = None) -> Tensor:
        for i, t_pool in enumerate(self.time_pooling):
            if valid_frames is not None:
                inside = torch.arange(x.shape[2], device=x.device)[None, :] < valid_frames[:, None]
                x = x * inside[:, None, :, None].to(x.dtype)
                valid_frames = valid_frames // t_pool
            for name in _BLOCK_LAYERS:
                x = getattr(self.cnn, f"{name}{i}")(x)
        return x


class BiGRU(nn.Module):
    """Bidirectional GRU (batch first); packed over ``lengths`` so padding never enters a clip's state."""

    def __init__(self, n_in: int, n_hidden: int, n_layers: int, dropout: float):
        super().__init__()
        self.rnn = nn.GRU(n_in, n_hidden, num_layers=n_layers, bidirectional=True, batch_first=True,
                          dropout=dropout)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        if lengths is None:
            return self.rnn(x)[0]
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.rnn(packed)
        return nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])[0]


class CRNNInput(NamedTuple):
    """What :meth:`ATSTSEDModel.features` gives and :meth:`ATSTSEDModel.forward` takes (``model(*inputs)``)."""

    cnn: Tensor  # (B, 128, T_cnn) per-clip min-max dB mel, hop 256
    atst: Tensor  # (B, 64, T_atst) ATST log-mel (dB clamped to [-50, 80]), hop 160
    lengths: Tensor | None  # (B,) valid samples per clip; None: every frame is valid


class ATSTSEDModel(nn.Module):
    """ATST-SED: waveform → (CNN branch ‖ ATST-Frame branch) → ``cat_tf`` → BiGRU → heads.

    Outputs on :attr:`grid` (64 ms for the published configs): frame probabilities
    ``sigmoid(dense(h))`` (B, T, C) and clip probabilities ``Σ_t p·a / Σ_t a`` with
    ``a = clamp(softmax_over_classes(dense_softmax(h)), 1e-7, 1)`` over each clip's valid frames.

    The same contract as :class:`~atst_sed.models.sed.SEDModel`: ``features()`` then ``model(*inputs)``,
    :attr:`spec`, :attr:`classes`, :attr:`decoding`. ``classes`` default to DESED's ten (the only
    classes the family was published with) when the config has ten outputs; ``short_clips`` and
    ``meta`` as for :class:`~atst_sed.models.sed.SEDModel`. :attr:`encoder` is the ATST branch.
    """

    def __init__(
        self,
        crnn: CRNNConfig | None = None,
        encoder: EncoderConfig | None = None,
        cnn_frontend: ClipMinMaxMelConfig | None = None,
        atst_frontend: FrontendConfig | None = None,
        window_samples: int = WINDOW_SAMPLES,
        *,
        classes: Sequence[str] | None = None,
        decoding: Decoding | None = None,
        short_clips: str = "mask",
        meta: dict[str, Any] | None = None,
    ):
        super().__init__()
        self.config = c = crnn or CRNNConfig()
        self.encoder_config = e = encoder or EncoderConfig(
            variant="frame", width=c.embedding_size, heads=c.embedding_size // HEAD_DIM, drop_path=0.0
        )
        if e.variant != "frame" or e.width != c.embedding_size:
            raise ValueError(f"the ATST branch must be an ATST-Frame of width embedding_size={c.embedding_size}, "
                             f"got ATST-{e.variant} of width {e.width}")
        if classes is None:
            if c.n_classes != len(DESED_CLASSES):
                raise ValueError(f"a {c.n_classes}-class ATST-SED model needs its class names")
            classes = DESED_CLASSES
        if isinstance(classes, (str, int)) or len(classes) != c.n_classes:
            raise ValueError(f"the model has {c.n_classes} classes; class names given: {classes!r}")
        self.classes: tuple[str, ...] = tuple(str(x) for x in classes)
        self.decoding = decoding or Decoding.for_classes(self.classes)
        if self.decoding.classes != self.classes:
            raise ValueError(f"decoding settings are for {list(self.decoding.classes)}, the model's classes are {list(self.classes)}")
        self.short_clips = check_short_clips(short_clips)
        self.meta: dict[str, Any] = dict(meta or {})
        self.clip_pooling = "attention"
        cnn_cfg = cnn_frontend or ClipMinMaxMelConfig()
        freq = cnn_cfg.n_mels
        for pool in c.pooling:
            freq //= pool[1]
        if freq != 1:
            raise ValueError(f"frequency pooling {[p[1] for p in c.pooling]} reduces {cnn_cfg.n_mels} mels to {freq}, not 1")
        self.window_samples = window_samples
        with torch.device("cpu"):  # real filters even when the networks are built on the meta device
            self.cnn_frontend = ClipMinMaxMelFrontend(cnn_cfg)
            self.atst_frontend = LogMelFrontend(atst_frontend or ATST_SED_BRANCH)
        self.cnn = ConvStack(c)
        self.atst = ATSTEncoder(e)
        n_cnn = c.nb_filters[-1]
        self.cat_tf = nn.Linear(n_cnn + c.embedding_size, n_cnn)
        self.rnn = BiGRU(n_cnn, c.n_rnn_cell, c.rnn_layers, c.dropout_recurrent)
        self.dropout = nn.Dropout(c.dropout)
        self.dense = nn.Linear(2 * c.n_rnn_cell, c.n_classes)
        self.dense_softmax = nn.Linear(2 * c.n_rnn_cell, c.n_classes)

    @classmethod
    def empty(cls, *args: Any, **kwargs: Any) -> "ATSTSEDModel":
        """The model with uninitialised (meta-device) weights, to receive a checkpoint's tensors through
        ``load_state_dict(..., assign=True)`` without a random initialisation; frontends are ready."""
        with torch.device("meta"):
            return cls(*args, **kwargs)

    # ------------------------------------------------------------------------------ contract
    @property
    def n_classes(self) -> int:
        return self.config.n_classes

    @property
    def encoder(self) -> ATSTEncoder:
        """The ATST-Frame branch (what ``embed`` reads, and what a token model can start from)."""
        return self.atst

    @property
    def grid(self) -> FrameGrid:
        """The output grid: CNN mel hop × time pooling (256 × 4 = 64 ms for the published models)."""
        return FrameGrid(self.cnn_frontend.config.hop_length, self.config.time_pooling,
                         self.cnn_frontend.config.sample_rate)

    @property
    def min_samples(self) -> int:
        """The shortest input: both frontends' STFTs, one output frame and one ATST token."""
        grid, atst = self.grid, self.atst_frontend.config
        return max(self.cnn_frontend.min_samples, self.atst_frontend.min_samples,
                   (grid.frames_per_output - 1) * grid.mel_hop_samples,
                   (self.atst.config.patch_frames - 1) * atst.hop_length)

    @property
    def spec(self) -> ModelSpec:
        return ModelSpec(
            family=FAMILY, grid=self.grid, window_samples=self.window_samples, min_samples=self.min_samples,
            classes=self.classes, decoding=self.decoding,
            frontends={"atst": self.atst_frontend.config, "cnn": self.cnn_frontend.config},
            clip_pooling=self.clip_pooling, short_clips=self.short_clips, meta=dict(self.meta),
        )

    # ------------------------------------------------------------------------------ compute
    def features(self, waves: Tensor, lengths: Tensor | None = None, short_clips: str | None = None) -> CRNNInput:
        """16 kHz ``waves`` (B, N) or (N,) and optional valid ``lengths`` (B,) → :class:`CRNNInput`.

        ``short_clips`` (default the model's): ``mask`` — each clip alone (its own dB peak, min and
        max, and its own frames); ``pad`` — the official test path: every clip zero-padded to the
        10-s window, no mask. Computed in float32 without autograd.
        """
        mode = check_short_clips(short_clips or self.short_clips)
        if waves.dim() == 1:
            waves = waves[None]
        if mode == "pad":
            waves, lengths = pad_to_window(waves, lengths, self.window_samples), None
        elif lengths is not None and bool((lengths.cpu() >= waves.shape[-1]).all()):
            lengths = None
        with torch.no_grad():
            return CRNNInput(self.cnn_frontend(waves, lengths), self.atst_frontend(waves, lengths), lengths)

    def forward(self, cnn: Tensor, atst: Tensor, lengths: Tensor | None = None) -> SEDOutput:
        """The fields of :class:`CRNNInput` → :class:`SEDOutput` with (B, T, C) frame outputs, T = T_cnn // 4
        (``valid`` marks each clip's frames)."""
        lengths = None if lengths is None else lengths.to(cnn.device)
        cnn_frames = None if lengths is None else self.cnn_frontend.n_frames(lengths)
        x = self.cnn(cnn.transpose(1, 2).unsqueeze(1), cnn_frames)  # (B, C, T, 1)
        if x.shape[-1] != 1:
            raise AtstSedError(f"CNN output has {x.shape[-1]} frequency bins, expected 1")
        x = x.squeeze(-1).transpose(1, 2)  # (B, T, C)
        n_out = x.shape[1]
        out_frames = None if cnn_frames is None else cnn_frames // self.config.time_pooling

        atst_frames = None if lengths is None else self.atst_frontend.n_frames(lengths)
        tokens = self.atst(atst, atst_frames).frames  # (B, N, D)
        pooled = self._pool_tokens(tokens, atst_frames, n_out, out_frames)

        # Fusion, BiGRU and heads run in float32 even under bf16 autocast: the recurrence carries
        # rounding from frame to frame (in bf16 it moved more event edges, benchmarks/README.md),
        # a bf16 sigmoid keeps 8 significant bits, and together they cost little next to the
        # transformer and the CNN.
        with torch.autocast(x.device.type, enabled=False):
            h = self.rnn(self.cat_tf(torch.cat([x, pooled], dim=-1).float()), out_frames)
            h = self.dropout(h)
            logits = self.dense(h)
            probs = torch.sigmoid(logits)
            valid = None if out_frames is None else torch.arange(n_out, device=h.device)[None, :] < out_frames[:, None]
            return SEDOutput(logits, probs, attention_pooling(probs, self.dense_softmax(h), valid), valid)

    def _pool_tokens(self, tokens: Tensor, atst_frames: Tensor | None, n_out: int, out_frames: Tensor | None) -> Tensor:
        """Average the 40 ms tokens onto the CNN's frames (adaptive average pooling, per clip)."""
        if atst_frames is None:
            return F.adaptive_avg_pool1d(tokens.transpose(1, 2), n_out).transpose(1, 2)
        pooled = tokens.new_zeros(tokens.shape[0], n_out, tokens.shape[2])
        n_tokens = atst_frames // self.atst.config.patch_frames
        for i in range(tokens.shape[0]):
            t, o = int(n_tokens[i]), int(out_frames[i])
            pooled[i, :o] = F.adaptive_avg_pool1d(tokens[i, :t].T[None], o)[0].T
        return pooled

    # ------------------------------------------------------------------------------ training
    def parameter_parts(self) -> list[ParameterPart]:
        """Parts for learning rates, as ATST-SED groups them: ``cnn`` (the conv stack), ``rnn``
        (everything else outside the transformer: ``cat_tf``, the BiGRU, both heads) and
        ``transformer`` by depth from the top — final norm 0, block k 1 + (depth − 1 − k), the
        embeddings depth + 1 (the official ``tfm_lr_scale`` powers)."""
        enc = self.atst
        depth = len(enc.blocks)
        rnn = [*self.cat_tf.parameters(), *self.rnn.parameters(), *self.dense.parameters(), *self.dense_softmax.parameters()]
        parts = [ParameterPart("cnn", "cnn", None, list(self.cnn.parameters())),
                 ParameterPart("rnn", "rnn", None, rnn),
                 ParameterPart("atst.norm", "transformer", 0, list(enc.norm.parameters()))]
        parts += [ParameterPart(f"atst.blocks.{i}", "transformer", depth - i, list(block.parameters()))
                  for i, block in enumerate(enc.blocks)]
        embeds = [enc.mask_embed, enc.pos_embed, *enc.patch_embed.parameters()]
        return [*parts, ParameterPart("atst.embeddings", "transformer", depth + 1, embeds)]

    def freeze_all_but_last(self, n_blocks: int = 1) -> None:
        """Train the CNN, the fusion, the BiGRU and the heads, and of the transformer only its last
        ``n_blocks`` blocks and final norm (0: the transformer frozen, ATST-SED stage 1)."""
        for p in self.parameters():
            p.requires_grad_(True)
        self.atst.freeze_all_but_last(n_blocks)
