"""Published SED checkpoints (audiossl, ATST-SED) → our SED models, head included.

Layouts, told apart by their keys (``state_dict`` of a Lightning file):

==================  =====================================================  ==========================
layout              keys                                                   model
==================  =====================================================  ==========================
``audiossl-frame``  ``encoder.encoder.*`` (``norm_frame``) + ``head.*``    ATST-Frame + head (40 ms)
``audiossl-clip``   ``encoder.encoder.*`` (``cls_token``, ``norm``) +      ATST-Clip + head; the CLS
                    ``head.*``                                             token is not a frame
``audiossl-c2f``    ``encoder.encoder.frame_encoder.*`` + ``head.*``       ATST-Frame + head; the
                    (``encoder.encoder.teacher_module.*`` ignored)         frozen ATST-Clip teacher
                                                                           is not the released model
``atst-sed``        ``sed_teacher.*`` / ``sed_student.*`` (CRNN)           :class:`ATSTSEDModel` (64 ms)
==================  =====================================================  ==========================

An audiossl head with ``head.linear_softmax`` (the DESED fine-tuning) pools clip probabilities with
attention; the AudioSet-strong release has ``head.linear`` only: its clip probability is then the
maximum over frames (:class:`~atst_sed.models.head.MaxPoolingHead`, ``spec.clip_pooling == "max"``),
a derived value that downstream code must not treat as a trained clip output.

ATST-SED files hold two models: the EMA ``teacher`` (the default: what the official test and
inference use) and the ``student``. Their architecture comes from ``hyper_parameters['net']`` when
the file has it, else the published defaults; decoding defaults from ``hyper_parameters['training']``.

Files written by the audiossl trainers carry ``numpy.float64`` learning rates in their optimizer
states, which ``torch.load(weights_only=True)`` refuses; :func:`read_official_file` allows exactly the
numpy scalar / dtype constructors those need, nothing else.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor

from atst_sed.errors import InputError
from atst_sed.features import ATST_SED_BRANCH, FrontendConfig
from atst_sed.labels import DESED_CLASSES
from atst_sed.models.checkpoint import (
    _flat_state_dict,
    _strict_load,
    convert_official_state_dict,
    read_checkpoint_file,
    resolve_variant,
)
from atst_sed.models.crnn import ATSTSEDModel, CRNNConfig
from atst_sed.models.encoder import ATSTEncoder
from atst_sed.models.sed import SEDModel
from atst_sed.models.spec import ATST_GRID, ModelSpec
from atst_sed.models.token_sed import TokenSEDModel

log = logging.getLogger(__name__)

LAYOUTS: tuple[str, ...] = ("audiossl-frame", "audiossl-clip", "audiossl-c2f", "atst-sed")
ROLES: tuple[str, ...] = ("teacher", "student")
DEFAULT_THRESHOLD = 0.5
AUDIOSSL_MEDIAN_FILTER = 7  # audiossl's DESED and AudioSet-strong test decoding (40 ms frames)

_multiarray = getattr(np, "_core", None) or np.core  # numpy 2 / numpy 1
_SCALAR = _multiarray.multiarray.scalar
# What a pickled numpy scalar needs, under both numpy 1 and numpy 2 module names: the scalar
# constructor, np.dtype and the numeric DType classes. No object dtype, no arrays, no callables.
NUMPY_SCALAR_GLOBALS: list[Any] = [
    (_SCALAR, "numpy.core.multiarray.scalar"),
    (_SCALAR, "numpy._core.multiarray.scalar"),
    np.dtype,
    *(getattr(np.dtypes, name) for name in (
        "Float64DType", "Float32DType", "Float16DType", "Int64DType", "Int32DType", "Int16DType", "Int8DType",
        "UInt64DType", "UInt32DType", "UInt16DType", "UInt8DType", "BoolDType",
    )),
]


def read_official_file(path: str | PathLike[str]) -> Any:
    """:func:`read_checkpoint_file` that also accepts numpy scalars (audiossl optimizer states)."""
    with torch.serialization.safe_globals(NUMPY_SCALAR_GLOBALS):
        return read_checkpoint_file(path)


@dataclass
class OfficialSED:
    """A published SED checkpoint, loaded: the model (waveform → :class:`SEDOutput` through
    ``model.features`` and ``model(...)``) and its contract."""

    path: Path
    layout: str  # one of LAYOUTS
    role: str | None  # "teacher" | "student" for ATST-SED, None otherwise
    model: TokenSEDModel | ATSTSEDModel
    spec: ModelSpec


def official_layout(sd: dict[str, Tensor]) -> str | None:
    """The published SED layout of a flat state dict, or None (an encoder-only or unknown file)."""
    if any(k.startswith(("sed_teacher.cnn.", "sed_student.cnn.")) for k in sd):
        return "atst-sed"
    if "head.linear.weight" not in sd:
        return None
    if "encoder.encoder.frame_encoder.pos_embed" in sd:
        return "audiossl-c2f"
    if "encoder.encoder.pos_embed" in sd:
        return "audiossl-frame" if resolve_variant(None, sd, "encoder.encoder.")[0] == "frame" else "audiossl-clip"
    return None


def _classes(path: Path, n: int, given: Sequence[str] | None) -> tuple[str, ...]:
    if given is not None:
        if len(given) != n:
            raise InputError(path, f"the model has {n} classes but {len(given)} class names were given")
        return tuple(given)
    if n == len(DESED_CLASSES):
        return DESED_CLASSES
    log.warning("%s: %d classes and no class names given: naming them class_000 …", path, n)
    return tuple(f"class_{i:03d}" for i in range(n))


def _median_windows(value: Any, n: int) -> list[int]:
    """One median-filter window (output frames) per class, from one value or a list."""
    values = list(value) if isinstance(value, (list, tuple)) else [value] * n
    if len(values) != n:
        raise ValueError(f"expected 1 or {n} values, got {len(values)}")
    return [int(v) for v in values]


def load_official_sed(
    path: str | PathLike[str],
    role: str | None = None,
    layout: str | None = None,
    classes: Sequence[str] | None = None,
) -> OfficialSED:
    """Load a published SED checkpoint file as an fp32 CPU model in eval mode.

    ``role``: ``teacher`` (default) or ``student`` for ATST-SED files; audiossl files hold one model.
    ``layout``: assert the file's layout (one of :data:`LAYOUTS`). ``classes``: names in output
    order (default: DESED's for 10 classes; ``class_NNN`` otherwise — AudioSet-strong's MIDs come
    from its label file). A file without such a model, or with another role / layout → :class:`InputError`.
    """
    path = Path(path)
    _check_choices(path, role, layout)
    return official_sed_from_checkpoint(read_official_file(path), path, role, layout, classes)


def _check_choices(path: Path, role: str | None, layout: str | None) -> None:
    if layout is not None and layout not in LAYOUTS:
        raise InputError(path, f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")
    if role is not None and role not in ROLES:
        raise InputError(path, f"unknown role {role!r}; use teacher or student")


def official_sed_from_checkpoint(
    raw: Any,
    path: str | PathLike[str],
    role: str | None = None,
    layout: str | None = None,
    classes: Sequence[str] | None = None,
) -> OfficialSED:
    """:func:`load_official_sed` on an already read checkpoint object ``raw`` (``path`` names it in errors)."""
    path = Path(path)
    _check_choices(path, role, layout)
    sd = _flat_state_dict(raw, path)
    found = official_layout(sd)
    if found is None:
        raise InputError(path, "not a published SED checkpoint (no audiossl head and no ATST-SED model in it)")
    if layout is not None and layout != found:
        raise InputError(path, f"the file holds the {found} layout, not {layout}")
    hp = raw.get("hyper_parameters") if isinstance(raw, dict) else None
    hp = hp if isinstance(hp, dict) else {}
    if found == "atst-sed":
        return _load_atst_sed(path, sd, hp, role or "teacher", classes)
    if role is not None:
        raise InputError(path, f"the {found} file holds one model, not a {role} (roles exist in ATST-SED files only)")
    return _load_audiossl(path, sd, hp, found, classes)


def _load_audiossl(path: Path, sd: dict[str, Tensor], hp: dict, layout: str, classes: Sequence[str] | None) -> OfficialSED:
    prefix = "encoder.encoder.frame_encoder." if layout == "audiossl-c2f" else "encoder.encoder."
    variant = "clip" if layout == "audiossl-clip" else "frame"
    enc_sd, enc_config = convert_official_state_dict(sd, prefix, variant)
    head_sd = {k: v.float() for k, v in sd.items() if k.startswith("head.")}
    clip_pooling = "attention" if "head.linear_softmax.weight" in head_sd else "max"
    n_classes = head_sd["head.linear.weight"].shape[0]
    with torch.device("meta"):
        sed = SEDModel(ATSTEncoder(enc_config), n_classes, clip_pooling)
    _strict_load(sed, {**{f"encoder.{k}": v for k, v in enc_sd.items()}, **head_sd}, path)
    model = TokenSEDModel(sed.eval(), FrontendConfig()).eval()
    names = _classes(path, n_classes, classes)
    dataset = "as_strong" if "utils_as_strong" in str(hp.get("dcase_conf", "")) else ("dcase" if n_classes == 10 else None)
    spec = ModelSpec(
        family=f"atst-{variant}",
        grid=ATST_GRID,
        classes=names,
        frontends=model.frontend_configs(),
        decoding={"thresholds": [DEFAULT_THRESHOLD] * n_classes, "median_filter": [AUDIOSSL_MEDIAN_FILTER] * n_classes},
        window_samples=model.window_samples,
        clip_pooling=clip_pooling,
        official_short_clips="pad",
        meta={"layout": layout, "dataset": dataset, "median_filter_on": "binary decisions"},
    )
    log.info("%s: %s (ATST-%s, width %d, depth %d, %d classes, clip pooling %s)", path, layout,
             variant.capitalize(), enc_config.width, enc_config.depth, n_classes, clip_pooling)
    return OfficialSED(path, layout, None, model, spec)


def _crnn_config(path: Path, hp: dict, width: int) -> CRNNConfig:
    net = hp.get("net")
    try:
        return CRNNConfig.from_net(net) if isinstance(net, dict) else CRNNConfig(embedding_size=width)
    except (TypeError, ValueError) as err:
        raise InputError(path, f"unsupported ATST-SED 'net' configuration ({err})") from None


def _load_atst_sed(path: Path, sd: dict[str, Tensor], hp: dict, role: str, classes: Sequence[str] | None) -> OfficialSED:
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
    try:
        model = ATSTSEDModel.empty(crnn, enc_config, atst_frontend=ATST_SED_BRANCH)
    except ValueError as err:
        raise InputError(path, f"unsupported ATST-SED configuration ({err})") from None
    weights = {k: v.float() if v.is_floating_point() else v for k, v in own.items() if not k.startswith(atst_prefix)}
    weights.update({f"atst.{k}": v for k, v in enc_sd.items()})
    _strict_load(model, weights, path)
    model.eval()
    n = crnn.n_classes
    training = hp.get("training") if isinstance(hp.get("training"), dict) else {}
    try:
        median = _median_windows(training.get("median_window", 7), n)
    except ValueError as err:
        raise InputError(path, f"training.median_window: {err}") from None
    opt = hp.get("opt") if isinstance(hp.get("opt"), dict) else {}
    stage = None if "tfm_trainable_layers" not in opt else (1 if opt["tfm_trainable_layers"] == 0 else 2)
    spec = ModelSpec(
        family="atst-sed",
        grid=model.grid,
        classes=_classes(path, n, classes),
        frontends=model.frontend_configs(),
        decoding={"thresholds": [DEFAULT_THRESHOLD] * n, "median_filter": median},
        window_samples=model.window_samples,
        clip_pooling="attention",
        official_short_clips="pad",
        meta={"layout": "atst-sed", "role": role, "stage": stage, "net": crnn.to_dict(), "median_filter_on": "scores"},
    )
    log.info("%s: ATST-SED %s (stage %s; CNN %s, BiGRU %d×%d, ATST-Frame width %d depth %d)", path, role,
             stage or "?", list(crnn.nb_filters), crnn.rnn_layers, crnn.n_rnn_cell, enc_config.width, enc_config.depth)
    return OfficialSED(path, "atst-sed", role, model, spec)
