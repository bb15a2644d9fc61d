"""Published SED checkpoints (audiossl, ATST-SED) → our SED models, head included.

Layouts, told apart by their keys (``state_dict`` of a Lightning file):

==================  =====================================================  ==========================
layout              keys                                                   model
==================  =====================================================  ==========================
``audiossl-frame``  ``encoder.encoder.*`` (``norm_frame``) + ``head.*``    ATST-Frame + head (40 ms)
``audiossl-clip``   ``encoder.encoder.*`` (``cls_token``, ``norm``) +      ATST-Clip + head; the CLS
                    ``head.*``                                             token is not a frame
``audiossl-c2f``    ``encoder.encoder.frame_encoder.*`` + ``head.*``       ATST-Frame + head (the
                    (``encoder.encoder.teacher_module.*`` ignored)         frame student); the frozen
                                                                           ATST-Clip teacher is not
                                                                           the released model
``atst-sed``        ``sed_teacher.*`` / ``sed_student.*`` (CRNN)           :class:`ATSTSEDModel` (64 ms)
==================  =====================================================  ==========================

An audiossl head with ``head.linear_softmax`` (the DESED fine-tuning) pools clip probabilities with
attention; the AudioSet-strong release has ``head.linear`` only: its clip probability is then the
maximum over frames (``spec.clip_pooling == "max"``), a derived value, not a trained clip output. A
``head.linear`` that does not fit the encoder's tokens (a clip-level classifier over pooled
embeddings) is not a SED head: such a file is an encoder to :func:`official_layout`.

ATST-SED files hold two models: the EMA ``teacher`` (the default: what the official test and
inference use) and the ``student``. Their architecture comes from ``hyper_parameters['net']`` when
the file has it, else the published defaults; decoding defaults from ``hyper_parameters['training']``.

Every official test path zero-pads short clips to 10 s and scores the padding as audio: the models
built here say so (``short_clips="pad"``), and ``detect`` follows that unless told otherwise.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from atst_sed.decoding import Decoding, DecodingError
from atst_sed.errors import InputError
from atst_sed.frontend import ATST_SED_BRANCH, FrontendConfig
from atst_sed.labels import DESED_CLASSES
from atst_sed.models.crnn import ATSTSEDModel, CRNNConfig
from atst_sed.models.encoder import ATSTEncoder
from atst_sed.models.sed import SEDModel
from atst_sed.models.weights import convert_official_state_dict, load_weights, resolve_variant

log = logging.getLogger(__name__)

LAYOUTS: tuple[str, ...] = ("audiossl-frame", "audiossl-clip", "audiossl-c2f", "atst-sed")
#: Roles a file may hold: ATST-SED files hold both; a C2F file's deployable model is its frame student.
ROLES: tuple[str, ...] = ("teacher", "student")
_OFFICIAL_SHORT_CLIPS = "pad"  # every official test path pads short clips to 10 s without a mask


def official_layout(sd: dict[str, Tensor]) -> str | None:
    """The published SED layout of a flat state dict, or None (an encoder-only or unknown file)."""
    if any(k.startswith(("sed_teacher.cnn.", "sed_student.cnn.")) for k in sd):
        return "atst-sed"
    head = sd.get("head.linear.weight")
    if head is None or head.dim() != 2 or any(k.startswith("head.norm.") for k in sd):
        return None
    for prefix in ("encoder.encoder.frame_encoder.", "encoder.encoder."):
        pos = sd.get(prefix + "pos_embed")
        if pos is None:
            continue
        if pos.shape[-1] != head.shape[1]:  # a classifier over something else than the frame tokens
            return None
        if prefix.endswith("frame_encoder."):
            return "audiossl-c2f"
        return "audiossl-frame" if resolve_variant(None, sd, prefix)[0] == "frame" else "audiossl-clip"
    return None


def _class_names(path: Path, n: int, given: Sequence[str] | None) -> tuple[str, ...]:
    if given is not None:
        if len(given) != n:
            raise InputError(path, f"the model has {n} classes but {len(given)} class names were given")
        return tuple(given)
    if n == len(DESED_CLASSES):
        return DESED_CLASSES
    log.warning("%s: %d classes and no class names given: naming them class_000 …", path, n)
    return tuple(f"class_{i:03d}" for i in range(n))


def official_sed_model(
    raw: Any,
    sd: dict[str, Tensor],
    path: str | Path,
    role: str | None = None,
    classes: Sequence[str] | None = None,
    variant: str | None = None,
) -> SEDModel | ATSTSEDModel:
    """The SED model in a published file (``raw`` as read, ``sd`` its flat state dict), fp32, eval mode,
    on the CPU, with the layout, role and stage in ``model.meta``.

    ``role``: ``teacher`` (default) or ``student`` for ATST-SED; for C2F only ``student`` (the frame
    student is the released model); audiossl files otherwise hold one model. ``classes``: names in
    output order (default DESED's for 10 classes). ``variant``: checked against the file.
    A role, variant or class list the file does not fit → :class:`InputError` naming ``path``.
    """
    path = Path(path)
    layout = official_layout(sd)
    if layout is None:
        raise InputError(path, "not a published SED checkpoint (no audiossl frame head and no ATST-SED model in it)")
    if role is not None and role not in ROLES:
        raise InputError(path, f"unknown role {role!r}; use teacher or student")
    hp = raw.get("hyper_parameters") if isinstance(raw, dict) else None
    hp = hp if isinstance(hp, dict) else {}
    if layout == "atst-sed":
        if variant not in (None, "frame"):
            raise InputError(path, f"an ATST-SED file holds an ATST-Frame branch; the variant asked for is {variant}")
        return _atst_sed(path, sd, hp, role or "teacher", classes)
    if layout == "audiossl-c2f" and role == "teacher":
        raise InputError(path, "a C2F file's deployable model is its frame student (--role student, the default); "
                         "its frozen ATST-Clip teacher_module is not the released model")
    if layout != "audiossl-c2f" and role is not None:
        raise InputError(path, f"the {layout} file holds one model, not a {role} (roles exist in ATST-SED and C2F files)")
    return _audiossl(path, sd, hp, layout, classes, variant)


def _audiossl(path: Path, sd: dict[str, Tensor], hp: dict, layout: str, classes: Sequence[str] | None,
              variant: str | None) -> SEDModel:
    prefix = "encoder.encoder.frame_encoder." if layout == "audiossl-c2f" else "encoder.encoder."
    own_variant = "clip" if layout == "audiossl-clip" else "frame"
    if variant not in (None, own_variant):
        raise InputError(path, f"the {layout} file holds an ATST-{own_variant.capitalize()} encoder; the variant asked for is {variant}")
    enc_sd, enc_config = convert_official_state_dict(sd, prefix, own_variant)
    head_sd = {k[len("head."):]: v.float() for k, v in sd.items() if k.startswith("head.")}
    clip_pooling = "attention" if "linear_softmax.weight" in head_sd else "max"
    names = _class_names(path, head_sd["linear.weight"].shape[0], classes)
    dataset = "as_strong" if "utils_as_strong" in str(hp.get("dcase_conf", "")) else None
    meta = {"layout": layout, "role": "student" if layout == "audiossl-c2f" else None, "dataset": dataset}
    with torch.device("meta"):
        encoder = ATSTEncoder(enc_config)
    model = SEDModel(encoder, names, FrontendConfig(), clip_pooling=clip_pooling,
                     short_clips=_OFFICIAL_SHORT_CLIPS, meta=meta)
    load_weights(model, {**{f"encoder.{k}": v for k, v in enc_sd.items()}, **{f"head.{k}": v for k, v in head_sd.items()}}, path)
    log.info("%s: %s (ATST-%s, width %d, depth %d, %d classes, clip pooling %s)", path, layout,
             own_variant.capitalize(), enc_config.width, enc_config.depth, len(names), clip_pooling)
    return model.eval()


def _crnn_config(path: Path, hp: dict, width: int) -> CRNNConfig:
    net = hp.get("net")
    try:
        return CRNNConfig.from_net(net) if isinstance(net, dict) else CRNNConfig(embedding_size=width)
    except (TypeError, ValueError) as err:
        raise InputError(path, f"unsupported ATST-SED 'net' configuration ({err})") from None


def _atst_sed(path: Path, sd: dict[str, Tensor], hp: dict, role: str, classes: Sequence[str] | None) -> ATSTSEDModel:
    prefix = f"sed_{role}."
    own = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    if not own:
        present = sorted({k.split(".", 1)[0][len("sed_"):] for k in sd if k.startswith("sed_")})
        raise InputError(path, f"the ATST-SED file holds no {role} model (it holds: {', '.join(present) or 'none'})")
    own = {k: v for k, v in own.items() if not k.endswith(("total_ops", "total_params"))}  # thop counters
    atst_prefix = "atst_frame.atst."
    enc_sd, enc_config = convert_official_state_dict(own, atst_prefix, "frame")
    ultra = hp.get("ultra") if isinstance(hp.get("ultra"), dict) else {}
    enc_config = dataclasses.replace(enc_config, drop_path=float(ultra.get("atst_dropout") or 0.0))
    crnn = _crnn_config(path, hp, enc_config.width)
    names = _class_names(path, crnn.n_classes, classes)
    training = hp.get("training") if isinstance(hp.get("training"), dict) else {}
    try:
        decoding = Decoding.for_classes(names, median_filter=training.get("median_window"))
    except DecodingError as err:
        raise InputError(path, f"training.median_window: {err}") from None
    opt = hp.get("opt") if isinstance(hp.get("opt"), dict) else {}
    stage = None if "tfm_trainable_layers" not in opt else (1 if opt["tfm_trainable_layers"] == 0 else 2)
    meta = {"layout": "atst-sed", "role": role, "stage": stage}
    try:
        model = ATSTSEDModel.empty(crnn, enc_config, atst_frontend=ATST_SED_BRANCH, classes=names, decoding=decoding,
                                   short_clips=_OFFICIAL_SHORT_CLIPS, meta=meta)
    except ValueError as err:
        raise InputError(path, f"unsupported ATST-SED configuration ({err})") from None
    weights = {k: v.float() if v.is_floating_point() else v for k, v in own.items() if not k.startswith(atst_prefix)}
    weights.update({f"atst.{k}": v for k, v in enc_sd.items()})
    load_weights(model, weights, path)
    log.info("%s: ATST-SED %s (stage %s; CNN %s, BiGRU %d×%d, ATST-Frame width %d depth %d)", path, role,
             stage or "?", list(crnn.nb_filters), crnn.rnn_layers, crnn.n_rnn_cell, enc_config.width, enc_config.depth)
    return model.eval()
