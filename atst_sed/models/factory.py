"""The model factory: a SED model from a named architecture or a checkpoint (``models:`` of a recipe)."""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atst_sed.decoding import Decoding
from atst_sed.errors import AtstSedError, InputError
from atst_sed.frontend import ATST_SED_BRANCH, FrontendConfig
from atst_sed.models.checkpoint import AnySEDModel, LoadedCheckpoint, is_model_name, load_checkpoint
from atst_sed.models.crnn import ATSTSEDModel, CRNNConfig
from atst_sed.models.encoder import ATSTEncoder, EncoderConfig
from atst_sed.models.sed import SEDModel

log = logging.getLogger(__name__)

_NAMED = re.compile(r"^(frame|clip)_(tiny|small|base)$")
#: ``atst``: the encoder's tokens + attention-pooled frame classifier (ATST-Frame / ATST-Clip, 40 ms);
#: ``atst_sed``: ATST-SED's CRNN with the encoder as its transformer branch (64 ms).
ARCHITECTURES: tuple[str, ...] = ("atst", "atst_sed")


@dataclass
class ModelConfig:
    """A model to start from.

    ``encoder``: a named architecture (``frame_base``, ``clip_small``, ``frame_tiny`` …, random init),
    a checkpoint path (ours — an exported pretraining teacher or a SED model — or any published
    ATST-Frame/ATST-Clip/ATST-SED layout, fine-tuned SED files included) or a published model's name
    (``atst-frame:base``, ``atst-sed:stage1`` …; downloaded once, :mod:`atst_sed.hub`). ``variant``
    forces frame/clip for published files; ``overrides`` replace EncoderConfig fields (e.g. ``width``,
    ``depth``, ``heads`` for named architectures, ``drop_path`` for both).

    ``architecture`` (:data:`ARCHITECTURES`): ``atst`` puts a frame classifier on the encoder (a SED
    checkpoint's head is kept when its classes are the run's; an ATST-SED file gives its ATST-Frame
    branch); ``atst_sed`` builds ATST-SED's CRNN around an ATST-Frame encoder (CNN, fusion, BiGRU and
    heads freshly initialised), or continues an ATST-SED checkpoint whole (its heads kept when its
    classes are the run's). ``crnn`` replaces :class:`~atst_sed.models.crnn.CRNNConfig` fields
    (e.g. ``nb_filters``, ``n_rnn_cell`` at toy scale).
    """

    encoder: str = "frame_base"
    variant: str | None = None
    encoder_prefix: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    architecture: str = "atst"
    crnn: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(f"architecture must be one of {', '.join(ARCHITECTURES)}, not {self.architecture!r}")
        if self.crnn and self.architecture != "atst_sed":
            raise ValueError("crnn settings need architecture: atst_sed")


def build_model(
    config: ModelConfig,
    classes: Sequence[str],
    frontend: Mapping[str, Any] | None = None,
    decoding: Decoding | None = None,
) -> AnySEDModel:
    """A SED model for ``classes`` from ``config``, with ``decoding`` defaults (None: 0.5 / 7 frames).
    ``frontend`` replaces fields of the architecture's ATST frontend (a recipe's ``data.frontend``):
    the audiossl log-mel for ``atst``, the same clamped to [-50, 80] dB for ``atst_sed``."""
    classes = list(classes)
    if config.architecture == "atst_sed":
        return _build_atst_sed(config, classes, dict(frontend or {}), decoding)
    atst_frontend = _frontend(FrontendConfig(), frontend)
    if _NAMED.match(config.encoder):
        return SEDModel(_named_encoder(config), classes, atst_frontend, decoding)
    loaded = _load(config)
    source = loaded.model
    same_head = isinstance(source, SEDModel) and list(source.classes) == classes
    model = SEDModel(_with_overrides(loaded.encoder, config.overrides), classes, atst_frontend, decoding,
                     clip_pooling=source.clip_pooling if same_head else "attention")
    if same_head:
        model.head.load_state_dict(source.head.state_dict())
    elif source is not None:
        log.info("%s: a %s SED model for %s; starting from its encoder with a new head for %s",
                 config.encoder, source.spec.family, list(source.classes), classes)
    return model


def _build_atst_sed(config: ModelConfig, classes: list[str], frontend: dict[str, Any], decoding: Decoding | None) -> ATSTSEDModel:
    """ATST-SED's CRNN for ``classes`` around the encoder of ``config`` (see :class:`ModelConfig`)."""
    encoder: ATSTEncoder | None = None  # pretrained weights (None: a named architecture, random init)
    source: ATSTSEDModel | None = None
    if _NAMED.match(config.encoder):
        encoder_config = _named_encoder(config)
    else:
        loaded = _load(config)
        encoder = _with_overrides(loaded.encoder, config.overrides)
        encoder_config = encoder.config
        source = loaded.model if isinstance(loaded.model, ATSTSEDModel) else None
    if encoder_config.variant != "frame":
        raise AtstSedError(f"models: {config.encoder} is an ATST-{encoder_config.variant}; ATST-SED's transformer "
                           "branch is an ATST-Frame (variant: frame)")
    base = source.config if source is not None else CRNNConfig()
    try:
        crnn = dataclasses.replace(base, **{**config.crnn, "n_classes": len(classes), "embedding_size": encoder_config.width})
    except (TypeError, ValueError) as err:
        raise AtstSedError(f"models: crnn {config.crnn}: {err}") from None
    atst_frontend = _frontend(source.atst_frontend.config if source is not None else ATST_SED_BRANCH, frontend)
    cnn_frontend = source.cnn_frontend.config if source is not None else None
    try:
        model = ATSTSEDModel(crnn, encoder_config, cnn_frontend, atst_frontend, classes=classes, decoding=decoding)
    except ValueError as err:
        raise AtstSedError(f"models: {config.encoder} as ATST-SED: {err}") from None
    if encoder is not None and source is None:
        model.atst.load_state_dict(encoder.state_dict())
    if source is None:
        return model
    keep_heads = list(source.classes) == classes
    weights = {k: v for k, v in source.state_dict().items()
               if keep_heads or not k.startswith(("dense.", "dense_softmax."))}
    weights.update({f"atst.{k}": v for k, v in encoder.state_dict().items()})
    try:
        model.load_state_dict(weights, strict=keep_heads)
    except RuntimeError as err:  # crnn settings that change the CNN / RNN shapes
        raise AtstSedError(f"models: {config.encoder}: its ATST-SED weights do not fit crnn {config.crnn} "
                           f"({str(err).splitlines()[0]})") from None
    if not keep_heads:
        log.info("%s: an ATST-SED model for %s; new heads for %s", config.encoder, list(source.classes), classes)
    return model


def _frontend(base: FrontendConfig, overrides: Mapping[str, Any] | None) -> FrontendConfig:
    try:
        return dataclasses.replace(base, **dict(overrides or {}))
    except TypeError as err:
        raise AtstSedError(f"data.frontend: {err}") from None


def _named_encoder(config: ModelConfig) -> EncoderConfig:
    try:
        return EncoderConfig.named(config.encoder, **config.overrides)
    except (TypeError, ValueError) as err:
        raise AtstSedError(f"models: encoder {config.encoder} with overrides {config.overrides}: {err}") from None


def _load(config: ModelConfig) -> LoadedCheckpoint:
    """The checkpoint of a published model's name or a path (refused when the file says otherwise)."""
    if is_model_name(config.encoder):
        return load_checkpoint(config.encoder, variant=config.variant)
    path = Path(config.encoder).expanduser()
    if not path.exists():
        raise InputError(path, "no such encoder checkpoint (and not a named encoder like frame_base / clip_small, "
                         "nor a published model like atst-frame:base)")
    return load_checkpoint(path, config.encoder_prefix, config.variant)


def _with_overrides(encoder: ATSTEncoder, overrides: Mapping[str, Any]) -> ATSTEncoder:
    """``encoder`` rebuilt with EncoderConfig ``overrides`` (e.g. ``drop_path``), its weights kept."""
    if not overrides:
        return encoder
    try:
        rebuilt = ATSTEncoder(dataclasses.replace(encoder.config, **overrides))
    except TypeError as err:
        raise AtstSedError(f"models: overrides {dict(overrides)}: {err}") from None
    rebuilt.load_state_dict(encoder.state_dict())
    return rebuilt
