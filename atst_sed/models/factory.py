"""The model factory: a SED model from a named architecture or a checkpoint (``models:`` of a recipe)."""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atst_sed.decoding import Decoding
from atst_sed.errors import AtstSedError, InputError
from atst_sed.frontend import FrontendConfig
from atst_sed.models.checkpoint import is_model_name, load_checkpoint
from atst_sed.models.encoder import ATSTEncoder, EncoderConfig
from atst_sed.models.sed import SEDModel

log = logging.getLogger(__name__)

_NAMED = re.compile(r"^(frame|clip)_(tiny|small|base)$")


@dataclass
class ModelConfig:
    """An encoder to start from: a named architecture (``frame_base``, ``clip_small``, ``frame_tiny``
    …, random init), a checkpoint path (ours — an exported pretraining teacher or a SED model —
    or any published ATST-Frame/ATST-Clip layout, fine-tuned SED files included) or a published
    model's name (``atst-frame:base``, ``atst-sed:stage2`` …; downloaded once, :mod:`atst_sed.hub`).
    A SED checkpoint's head is kept when its classes are the run's; an ATST-SED file gives its
    ATST-Frame branch. ``variant`` forces frame/clip for published files;
    ``overrides`` replace EncoderConfig fields (e.g. ``width``, ``depth``, ``heads`` for named
    architectures, ``drop_path`` for both)."""

    encoder: str = "frame_base"
    variant: str | None = None
    encoder_prefix: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)


def build_model(
    config: ModelConfig,
    classes: Sequence[str],
    frontend: FrontendConfig | None = None,
    decoding: Decoding | None = None,
) -> SEDModel:
    """A SED model for ``classes`` from ``config`` (a fresh head unless the checkpoint is a SED model
    with the same classes), with ``frontend`` (default ATST's) and ``decoding`` defaults."""
    classes = list(classes)
    overrides = dict(config.overrides)
    if _NAMED.match(config.encoder):
        try:
            encoder_config = EncoderConfig.named(config.encoder, **overrides)
        except (TypeError, ValueError) as err:
            raise AtstSedError(f"models: encoder {config.encoder} with overrides {overrides}: {err}") from None
        return SEDModel(encoder_config, classes, frontend, decoding)
    if is_model_name(config.encoder):
        loaded = load_checkpoint(config.encoder, variant=config.variant)
    else:
        path = Path(config.encoder).expanduser()
        if not path.exists():
            raise InputError(path, "no such encoder checkpoint (and not a named encoder like frame_base / clip_small, "
                             "nor a published model like atst-frame:base)")
        loaded = load_checkpoint(path, config.encoder_prefix, config.variant)  # refuses a file that says otherwise
    encoder = loaded.encoder
    if overrides:
        try:
            encoder_config = dataclasses.replace(encoder.config, **overrides)
        except TypeError as err:
            raise AtstSedError(f"models: overrides {overrides}: {err}") from None
        rebuilt = ATSTEncoder(encoder_config)
        rebuilt.load_state_dict(encoder.state_dict())
        encoder = rebuilt
    source = loaded.model
    same_head = isinstance(source, SEDModel) and list(source.classes) == classes
    model = SEDModel(encoder, classes, frontend, decoding, clip_pooling=source.clip_pooling if same_head else "attention")
    if same_head:
        model.head.load_state_dict(source.head.state_dict())
    elif source is not None:
        log.info("%s: a %s SED model for %s; starting from its encoder with a new head for %s",
                 config.encoder, source.spec.family, list(source.classes), classes)
    return model
