"""Our own self-describing checkpoints of the ATST-SED family (save → load with the whole contract).

A plain dict (``torch.load(weights_only=True)`` reads it), in the format of
:mod:`atst_sed.models.checkpoint` with ``family: "atst-sed"`` and the family's own configs::

    {"format": "atst-sed", "format_version": 1, "kind": "sed", "family": "atst-sed",
     "crnn": CRNNConfig dict, "encoder": EncoderConfig dict,
     "frontends": {"cnn": ClipMinMaxMelConfig dict, "atst": FrontendConfig dict},
     "grid": FrameGrid dict (checked on load), "window_samples": 160000,
     "classes": [...], "decoding": {"thresholds": [...], "median_filter": [...]},
     "meta": {...}, "state_dict": {...}}
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Any, Sequence

import torch

from atst_sed import __version__
from atst_sed.errors import InputError
from atst_sed.features import ClipMinMaxMelConfig, FrontendConfig
from atst_sed.fileio import open_output
from atst_sed.models.checkpoint import FORMAT, FORMAT_VERSION, _strict_load, read_checkpoint_file
from atst_sed.models.crnn import ATSTSEDModel, CRNNConfig
from atst_sed.models.encoder import EncoderConfig
from atst_sed.models.spec import ModelSpec

FAMILY = "atst-sed"


def crnn_checkpoint_dict(
    model: ATSTSEDModel,
    classes: Sequence[str],
    decoding: dict[str, Any] | None = None,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The self-describing checkpoint of ``model`` with its class names in output order."""
    if len(classes) != model.n_classes:
        raise ValueError(f"the model has {model.n_classes} classes, {len(classes)} names were given")
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": "sed",
        "family": FAMILY,
        "crnn": model.config.to_dict(),
        "encoder": model.encoder_config.to_dict(),
        "frontends": model.frontend_configs(),
        "grid": model.grid.to_dict(),
        "window_samples": model.window_samples,
        "classes": list(classes),
        "decoding": dict(decoding or {}),
        "meta": {"atst_sed_version": __version__, **(meta or {})},
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
    }


def is_crnn_checkpoint(raw: Any) -> bool:
    """Whether a loaded checkpoint object is one of ours of the ATST-SED family."""
    return isinstance(raw, dict) and raw.get("format") == FORMAT and raw.get("family") == FAMILY


def crnn_from_checkpoint_dict(raw: dict[str, Any], path: str | PathLike[str]) -> tuple[ATSTSEDModel, ModelSpec]:
    """The model (fp32, eval mode) and its contract from :func:`crnn_checkpoint_dict`'s dict."""
    path = Path(path)
    if raw.get("format_version") != FORMAT_VERSION:
        raise InputError(path, f"checkpoint format version {raw.get('format_version')} is not supported (expected {FORMAT_VERSION})")
    try:
        crnn = CRNNConfig.from_dict(raw["crnn"])
        encoder = EncoderConfig(**raw["encoder"])
        frontends = raw["frontends"]
        cnn_frontend = ClipMinMaxMelConfig(**frontends["cnn"])
        atst_frontend = FrontendConfig(**frontends["atst"])
        classes = tuple(raw["classes"])
        state_dict = raw["state_dict"]
        model = ATSTSEDModel.empty(crnn, encoder, cnn_frontend, atst_frontend, int(raw["window_samples"]))
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(path, f"malformed atst-sed checkpoint of the ATST-SED family ({err})") from None
    if len(classes) != crnn.n_classes:
        raise InputError(path, f"the checkpoint lists {len(classes)} classes for a {crnn.n_classes}-class model")
    if raw.get("grid") is not None and raw["grid"] != model.grid.to_dict():
        raise InputError(path, f"the checkpoint's grid {raw['grid']} does not follow from its configs ({model.grid.to_dict()})")
    _strict_load(model, state_dict, path)
    model.eval()
    spec = ModelSpec(
        family=FAMILY,
        grid=model.grid,
        classes=classes,
        frontends=model.frontend_configs(),
        decoding=dict(raw.get("decoding") or {}),
        window_samples=model.window_samples,
        clip_pooling="attention",
        official_short_clips="pad",
        meta=dict(raw.get("meta") or {}),
    )
    return model, spec


def save_crnn_checkpoint(path: str | PathLike[str], model: ATSTSEDModel, classes: Sequence[str], **kwargs: Any) -> Path:
    """Write :func:`crnn_checkpoint_dict` to ``path`` (atomically, :mod:`atst_sed.fileio`)."""
    path = Path(path)
    data = crnn_checkpoint_dict(model, classes, **kwargs)
    with open_output(path) as handle:
        torch.save(data, handle)
    return path


def load_crnn_checkpoint(path: str | PathLike[str]) -> tuple[ATSTSEDModel, ModelSpec]:
    """Read a file written by :func:`save_crnn_checkpoint` (``weights_only=True``)."""
    raw = read_checkpoint_file(path)
    if not is_crnn_checkpoint(raw):
        raise InputError(path, "not an atst-sed checkpoint of the ATST-SED family")
    return crnn_from_checkpoint_dict(raw, path)
