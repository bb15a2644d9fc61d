"""Checkpoint I/O: our self-describing files (both model families), every published ATST layout and the
named published models — one loading path, :func:`load_checkpoint`.

Everything is read with ``torch.load(weights_only=True)`` (:func:`~atst_sed.models.weights.read_checkpoint_file`);
a file that needs arbitrary pickled objects is refused. Our files are plain dicts (format version 2)::

    {"format": "atst-sed", "format_version": 2, "kind": "encoder" | "sed",
     "family": "ATST-Frame" | "ATST-Clip" | "ATST-SED",
     "encoder": EncoderConfig dict (the ATST transformer; ATST-SED: its ATST-Frame branch),
     "crnn": CRNNConfig dict (ATST-SED only),
     "frontends": {"atst": FrontendConfig dict, "cnn": ClipMinMaxMelConfig dict (ATST-SED only)},
     "grid": FrameGrid dict, "window_samples": int (checked against the configs on load),
     "classes": [...], "decoding": {"thresholds": [...], "median_filter": [...]},
     "clip_pooling": "attention" | "max", "short_clips": "mask" | "pad",
     "meta": {...}, "state_dict": {...}}

Version-1 files (ATST-Frame / ATST-Clip only: ``encoder``, ``frontend``, ``classes``, ``decoding``) are
read as they were written: attention clip pooling, short clips masked.

:func:`load_checkpoint` takes one of our files, any published layout (pretraining, DINO, fine-tuned
DESED / AudioSet-strong heads, C2F, ATST-SED stage files — SED files load as SED models, head
included) or a registry name such as ``atst-sed:stage2`` (:mod:`atst_sed.hub`: downloaded once).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import torch

from atst_sed import hub
from atst_sed.decoding import Decoding, DecodingError
from atst_sed.errors import AtstSedError, InputError
from atst_sed.fileio import open_output
from atst_sed.frontend import ClipMinMaxMelConfig, FrontendConfig
from atst_sed.models.crnn import FAMILY as ATST_SED_FAMILY
from atst_sed.models.crnn import ATSTSEDModel, CRNNConfig
from atst_sed.models.encoder import FAMILY as TOKEN_FAMILY
from atst_sed.models.encoder import ATSTEncoder, EncoderConfig
from atst_sed.models.official import official_layout, official_sed_model
from atst_sed.models.sed import SEDModel
from atst_sed.models.spec import ModelSpec
from atst_sed.models.weights import (
    FORMAT,
    VARIANTS,
    convert_official_state_dict,
    encoder_prefixes,
    is_atst_sed_checkpoint,
    load_weights,
    published_state_dict,
    read_checkpoint_file,
    resolve_variant,
)
from atst_sed.version import __version__

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)

log = logging.getLogger(__name__)

#: A SED model of either family (both state the same contract: ``features``, ``forward``, ``spec``).
AnySEDModel = SEDModel | ATSTSEDModel
_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]*:[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class LoadedCheckpoint:
    """What a checkpoint gives: a ready encoder (the ATST transformer; ATST-SED: its ATST-Frame branch)
    with the frontend it reads, and the SED model for ``kind == 'sed'``. ``layout``: ``atst-sed`` (ours)
    or the published layout it came from; ``source``: the registry name when loaded by name."""

    path: Path
    kind: str  # "encoder" | "sed"
    layout: str  # "atst-sed" or the published layout it came from
    encoder: ATSTEncoder
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    model: AnySEDModel | None = None
    classes: list[str] = field(default_factory=list)
    decoding: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    source: str | None = None

    @property
    def role(self) -> str | None:
        """Which model of a published file this is (``teacher`` / ``student``), when the file holds roles."""
        return self.meta.get("role")

    @property
    def spec(self) -> ModelSpec | None:
        """The SED model's contract (grid, window, classes, decoding, frontend); None without a model."""
        return None if self.model is None else self.model.spec


def is_model_name(source: str | PathLike[str]) -> bool:
    """Whether ``source`` reads as a registry name (``family:name``) rather than a file path."""
    return isinstance(source, str) and bool(_NAME_PATTERN.match(source)) and not Path(source).exists()


def load_checkpoint(
    source: str | PathLike[str],
    encoder_prefix: str | None = None,
    variant: str | None = None,
    role: str | None = None,
    classes: list[str] | tuple[str, ...] | None = None,
    downloader: hub.Downloader | None = None,
) -> LoadedCheckpoint:
    """Load a checkpoint: ours (either family), any published ATST layout, or a published model by
    name (``atst-sed:stage2``, ``atst-frame:base`` …: downloaded once into the cache, see :mod:`atst_sed.hub`).

    Published SED files (audiossl DESED / AudioSet-strong fine-tuned heads, C2F, ATST-SED stage files)
    give SED models, head included; other published files give their encoder. ``role``: ``teacher``
    (default) or ``student`` for ATST-SED files; C2F files give their frame student. ``classes``: the
    output names of a published model that does not fix them (default DESED's for 10 classes).
    ``encoder_prefix`` forces where the encoder sits (and loads the encoder only); ``variant``
    (``frame``/``clip``) overrides the layout's guess and is checked against files that say it.
    """
    if is_model_name(str(source)):
        return _load_named(str(source), variant, role, classes, downloader)
    path = Path(source)
    if variant is not None and variant not in VARIANTS:
        raise InputError(path, f"variant must be frame or clip, not {variant!r}")
    raw = read_checkpoint_file(path)
    if is_atst_sed_checkpoint(raw):
        if role is not None:
            raise InputError(path, f"an atst-sed checkpoint holds one model, not a {role} (roles exist in published ATST-SED and C2F files)")
        loaded = _load_own(raw, path)
        if variant is not None and loaded.encoder.config.variant != variant:
            raise InputError(path, f"the checkpoint holds an ATST-{loaded.encoder.config.variant.capitalize()} "
                             f"encoder (it says so itself); the variant asked for is {variant}")
        return loaded
    sd = published_state_dict(raw, path)
    if encoder_prefix is None and official_layout(sd) is not None:
        model = official_sed_model(raw, sd, path, role, classes, variant)
        return LoadedCheckpoint(path, "sed", model.meta["layout"], model.encoder, model.spec.frontend, model,
                                list(model.classes), model.decoding.to_dict(), dict(model.meta))
    if role is not None:
        raise InputError(path, f"this file holds an encoder only, no {role} SED model")
    return _load_published_encoder(raw, sd, path, encoder_prefix, variant)


def _load_published_encoder(raw: Any, sd: dict, path: Path, encoder_prefix: str | None, variant: str | None) -> LoadedCheckpoint:
    prefixes = [encoder_prefix] if encoder_prefix is not None else encoder_prefixes(sd)
    if not prefixes or not any(k.startswith(prefixes[0] + "blocks.") for k in sd):
        raise InputError(path, "no ATST encoder weights found (looked for '<prefix>blocks.0.attn.qkv.weight' with a pos_embed)")
    prefix = prefixes[0]
    chosen, why = (variant, "variant given") if variant is not None else resolve_variant(raw, sd, prefix)
    try:
        enc_sd, config = convert_official_state_dict(sd, prefix, chosen)
    except ValueError as err:
        raise InputError(path, str(err)) from None
    with torch.device("meta"):  # no time spent on a random init that is overwritten anyway
        encoder = ATSTEncoder(config)
    load_weights(encoder, enc_sd, path)
    encoder.eval()
    log.info("%s: published ATST-%s encoder (%d blocks, width %d) under '%s' (%s)", path,
             config.variant.capitalize(), config.depth, config.width, prefix or "<root>", why)
    return LoadedCheckpoint(path=path, kind="encoder", layout=f"official:{prefix or '<root>'}", encoder=encoder)


def _load_named(name: str, variant: str | None, role: str | None, classes, downloader) -> LoadedCheckpoint:
    """A registry model: fetched once, loaded as its file, with the registry's classes, role and decoding."""
    entry = hub.published_model(name)
    path = hub.fetch(name, downloader)
    if entry.kind == "encoder":
        if role is not None:
            raise AtstSedError(f"{name} is an encoder without an SED head: it has no {role} model")
        loaded = load_checkpoint(path, variant=variant)
        loaded.source = name
        return loaded
    if classes is None:
        classes = entry.classes
        if classes is None and entry.labels is not None:
            classes = hub.read_label_list(hub.fetch_file(entry, entry.labels, downloader), entry.n_classes)
    loaded = load_checkpoint(path, variant=variant, role=role or entry.role, classes=classes)
    model = loaded.model
    try:
        model.decoding = Decoding.for_classes(model.classes, base=model.decoding, **entry.decoding)
    except DecodingError as err:  # a registry entry that does not fit its file
        raise InputError(path, f"{name}: {err}") from None
    model.meta.update(name=name, source=entry.source, reported=dict(entry.reported))
    loaded.decoding, loaded.meta, loaded.source = model.decoding.to_dict(), dict(model.meta), name
    return loaded


# ------------------------------------------------------------------------------------ our format
def _own_configs(raw: dict, path: Path) -> tuple[str, EncoderConfig, dict[str, Any]]:
    """(family, encoder config, frontend configs) of one of our files, any readable version."""
    version = raw.get("format_version")
    if version not in READABLE_VERSIONS:
        raise InputError(path, f"checkpoint format version {version} is not supported (this atst-sed reads "
                         f"{', '.join(map(str, READABLE_VERSIONS))}; a newer atst-sed wrote it?)")
    config = EncoderConfig(**raw["encoder"])
    if version == 1:
        return TOKEN_FAMILY[config.variant], config, {"atst": FrontendConfig(**raw.get("frontend", {}))}
    family = raw["family"]
    frontends: dict[str, Any] = {"atst": FrontendConfig(**raw["frontends"]["atst"])}
    if family == ATST_SED_FAMILY:
        frontends["cnn"] = ClipMinMaxMelConfig(**raw["frontends"]["cnn"])
    elif family != TOKEN_FAMILY[config.variant]:
        raise ValueError(f"family {family!r} does not fit an ATST-{config.variant} encoder")
    return family, config, frontends


def _load_own(raw: dict, path: Path) -> LoadedCheckpoint:
    try:
        family, config, frontends = _own_configs(raw, path)
        kind = raw["kind"]
        sd = raw["state_dict"]
        short_clips = raw.get("short_clips", "mask")
        clip_pooling = raw.get("clip_pooling", "attention")
        crnn = CRNNConfig.from_dict(raw["crnn"]) if family == ATST_SED_FAMILY else None
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(path, f"malformed atst-sed checkpoint ({err})") from None
    meta = dict(raw.get("meta", {}))
    if kind == "encoder":
        with torch.device("meta"):
            encoder = ATSTEncoder(config)
        load_weights(encoder, sd, path)
        encoder.eval()
        return LoadedCheckpoint(path, kind, FORMAT, encoder, frontends["atst"], meta=meta)
    if kind != "sed":
        raise InputError(path, f"unknown checkpoint kind {kind!r}")
    classes = list(raw.get("classes") or [])
    if not classes:
        raise InputError(path, "SED checkpoint lists no classes")
    try:
        decoding = Decoding.from_dict(classes, raw.get("decoding"))
    except DecodingError as err:
        raise InputError(path, f"checkpoint decoding settings do not have one value per class ({err})") from None
    try:
        if crnn is not None:
            model: AnySEDModel = ATSTSEDModel.empty(
                crnn, config, frontends["cnn"], frontends["atst"], int(raw["window_samples"]), classes=classes,
                decoding=decoding, short_clips=short_clips, meta=meta)
        else:
            with torch.device("meta"):
                encoder = ATSTEncoder(config)
            model = SEDModel(encoder, classes, frontends["atst"], decoding, clip_pooling, short_clips, meta)
    except (AtstSedError, KeyError, TypeError, ValueError) as err:
        raise InputError(path, f"malformed atst-sed checkpoint ({err})") from None
    for what, stored, own in (("grid", raw.get("grid"), model.grid.to_dict()),
                              ("window_samples", raw.get("window_samples"), model.window_samples)):
        if stored is not None and stored != own:
            raise InputError(path, f"the checkpoint's {what} {stored} does not follow from its configs ({own})")
    load_weights(model, sd, path)
    model.eval()
    return LoadedCheckpoint(path, kind, FORMAT, model.encoder, frontends["atst"], model, classes, decoding.to_dict(), meta)


def checkpoint_dict(
    module: ATSTEncoder | AnySEDModel,
    classes: list[str] | None = None,
    decoding: dict[str, Any] | None = None,
    frontend: FrontendConfig | None = None,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A self-describing checkpoint for ``module``: an encoder (with ``frontend``, default ATST's), or a
    SED model of either family, whose classes, decoding, frontends, clip pooling and short-clip
    scoring are those it carries; ``classes`` renames its outputs, ``decoding`` replaces its settings."""
    if isinstance(module, ATSTEncoder):
        return _checkpoint(module, "encoder", module.family, {"atst": frontend or FrontendConfig()}, [], dict(decoding or {}), meta)
    spec = module.spec
    names = list(spec.classes) if classes is None else [str(c) for c in classes]
    if len(names) != len(spec.classes):
        raise ValueError(f"a SED checkpoint needs its {len(spec.classes)} class names in output order, got {len(names)}")
    decoding = dict(decoding) if decoding is not None else spec.decoding.to_dict()
    Decoding.from_dict(names, decoding)  # one value per class, or a clear error
    out = _checkpoint(module, "sed", spec.family, spec.frontends, names, decoding, {**module.meta, **(meta or {})})
    out.update(grid=spec.grid.to_dict(), window_samples=spec.window_samples, clip_pooling=spec.clip_pooling,
               short_clips=spec.short_clips)
    if isinstance(module, ATSTSEDModel):
        out["crnn"] = module.config.to_dict()
    return out


def _checkpoint(module: torch.nn.Module, kind: str, family: str, frontends: dict[str, Any], classes: list[str],
                decoding: dict[str, Any], meta: dict[str, Any] | None) -> dict[str, Any]:
    encoder = module if isinstance(module, ATSTEncoder) else module.encoder
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "family": family,
        "encoder": encoder.config.to_dict(),
        "frontends": {name: config.to_dict() for name, config in frontends.items()},
        "classes": classes,
        "decoding": decoding,
        "meta": {"atst_sed_version": __version__, **(meta or {})},
        "state_dict": {k: v.detach().cpu().clone() for k, v in module.state_dict().items()},
    }


def save_checkpoint(path: str | PathLike[str], module: ATSTEncoder | AnySEDModel, **kwargs: Any) -> Path:
    """Write :func:`checkpoint_dict` to the output ``path`` (atomically for a file: :mod:`atst_sed.fileio`)."""
    path = Path(path)
    with open_output(path) as handle:
        torch.save(checkpoint_dict(module, **kwargs), handle)
    return path


__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "AnySEDModel",
    "LoadedCheckpoint",
    "checkpoint_dict",
    "convert_official_state_dict",
    "is_atst_sed_checkpoint",
    "is_model_name",
    "load_checkpoint",
    "load_weights",
    "published_state_dict",
    "read_checkpoint_file",
    "save_checkpoint",
]
