"""Checkpoint I/O: our self-describing files and every published ATST layout.

Everything is read with ``torch.load(weights_only=True)`` (:func:`read_checkpoint_file`); a file
that needs arbitrary pickled objects is refused. Our files are plain dicts::

    {"format": "atst-sed", "format_version": 1, "kind": "encoder" | "sed",
     "encoder": EncoderConfig dict, "frontend": FrontendConfig dict,
     "classes": [...], "decoding": {...}, "meta": {...}, "state_dict": {...}}

and a SED file carries its model's contract (:class:`~atst_sed.models.spec.ModelSpec`: the frame
grid follows from the frontend's hop and the encoder's tokens, the window from its positional table).
Published layouts are converted behind public functions: :func:`published_state_dict` (the tensors
of a Lightning, DINO or flat file), :func:`convert_official_state_dict` (an encoder under a prefix
onto :class:`ATSTEncoder`), :func:`load_weights` (exact loading, one-line errors);
:func:`load_checkpoint` does all of it for both kinds of file.
"""

from __future__ import annotations

import argparse
import logging
import pickle
import re
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from atst_sed.version import __version__
from atst_sed.decoding import Decoding, DecodingError
from atst_sed.errors import InputError
from atst_sed.fileio import open_output
from atst_sed.frontend import FrontendConfig
from atst_sed.models.encoder import HEAD_DIM, ATSTEncoder, EncoderConfig
from atst_sed.models.sed import SEDModel
from atst_sed.models.spec import ModelSpec

FORMAT = "atst-sed"
FORMAT_VERSION = 1

log = logging.getLogger(__name__)

# Benign classes found in published Lightning / DINO checkpoints (hyper-parameters, argparse args).
_SAFE_GLOBALS = [argparse.Namespace]

# Where an encoder can sit inside a published file, most preferred first. The EMA teacher is the
# released encoder of a pretraining run; a C2F model's frame student is its deployable encoder.
_ENCODER_PREFERENCE = [
    "model.student.",  # clip-level C2F (module_distill.py): the FrameAST student; never matches pretraining files
    "model.teacher.encoder.",
    "encoder.encoder.frame_encoder.",
    "encoder.encoder.",
    "sed_teacher.",
    "teacher.",
    "",
    "sed_student.",
    "model.student.encoder.",
    "student.",
]
_IGNORED_PREFIX_PARTS = ("teacher_module.",)  # the frozen ATST-Clip inside a C2F checkpoint


_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since PyTorch 1.6
_PICKLE_PROTOCOL = b"\x80"  # the legacy format starts with a pickle protocol opcode


def _not_a_checkpoint(path: Path) -> str | None:
    """Why the file's first bytes rule out a PyTorch checkpoint (None when they could be one)."""
    with path.open("rb") as handle:
        head = handle.read(512)
    if not head:
        return "empty file"
    if head.startswith(_ZIP_MAGIC) or head.startswith(_PICKLE_PROTOCOL):
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        return "not a PyTorch checkpoint (neither a zip archive nor a pickle)"
    if text.startswith("version https://git-lfs"):
        return "not a PyTorch checkpoint but a Git LFS pointer (fetch the file itself: git lfs pull)"
    if text.lstrip().lower().startswith(("<!doctype html", "<html")):
        return "not a PyTorch checkpoint but an HTML page (a failed download?)"
    return "not a PyTorch checkpoint (a text file)"


def is_atst_sed_checkpoint(raw: Any) -> bool:
    """True for what :func:`read_checkpoint_file` gives for one of our own (self-describing) files."""
    return isinstance(raw, dict) and raw.get("format") == FORMAT


def read_checkpoint_file(path: str | PathLike[str], mmap: bool = False) -> Any:
    """The object in a ``torch.save`` file, read with ``weights_only=True`` (no pickled code runs).
    ``mmap``: tensors are mapped from the file and read from disk when first used instead of being
    copied into memory up front (a cheap check of a large file, a fast start for inference); only
    zip-format files (``torch.save`` since PyTorch 1.6) can be mapped, older ones are read whole.
    A missing, truncated or corrupt file, or one that carries pickled Python objects →
    :class:`InputError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such checkpoint file")
    problem = _not_a_checkpoint(path)
    if problem is not None:
        raise InputError(path, problem)
    if mmap:
        with path.open("rb") as handle:
            mmap = handle.read(len(_ZIP_MAGIC)) == _ZIP_MAGIC
    try:
        with torch.serialization.safe_globals(_SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        if "weights only" not in str(err).lower():  # a damaged pickle stream, not a refused object
            raise InputError(path, f"not a readable PyTorch checkpoint (damaged data: {first[:120]})") from None
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        what = f" ({found.group(1)})" if found else (f" ({first[:120]})" if first else "")
        raise InputError(
            path, f"refusing to load: the checkpoint carries a pickled Python object{what}; only tensors and plain data are accepted"
        ) from None
    except EOFError:
        raise InputError(path, "not a readable PyTorch checkpoint: truncated or corrupt (an interrupted copy or write?)") from None
    except Exception as err:
        with path.open("rb") as handle:
            zipped = handle.read(len(_ZIP_MAGIC)) == _ZIP_MAGIC
        detail = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
        # torch reports a damaged archive as a RuntimeError or an OSError of its zip reader
        if zipped:
            raise InputError(path, "not a readable PyTorch checkpoint: truncated or corrupt zip archive (an interrupted copy or write?)") from None
        raise InputError(path, f"not a readable PyTorch checkpoint ({detail})") from None


def published_state_dict(raw: Any, path: str | PathLike[str]) -> dict[str, Tensor]:
    """All tensors of a published checkpoint (what :func:`read_checkpoint_file` gave), keyed as one
    flat state dict: a Lightning ``state_dict`` (with ATST-SED's ``sed_teacher`` / ``sed_student``
    beside it), a DINO ``teacher`` (``module.``/``backbone.`` stripped), a ``model`` entry, or a flat
    tensor dict. :class:`InputError` naming ``path`` when none is there."""
    if not isinstance(raw, dict):
        raise InputError(path, "checkpoint is not a dictionary")
    if isinstance(raw.get("state_dict"), dict):
        sd = dict(raw["state_dict"])
        for extra in ("sed_teacher", "sed_student"):  # ATST-SED adds these beside the Lightning state
            if isinstance(raw.get(extra), dict):
                sd.update({f"{extra}.{k}": v for k, v in raw[extra].items()})
        return sd
    if isinstance(raw.get("teacher"), dict):  # DINO-style ATST-Clip release
        return {"teacher." + k.replace("module.", "").replace("backbone.", ""): v for k, v in raw["teacher"].items()}
    if isinstance(raw.get("model"), dict):
        return dict(raw["model"])
    if all(isinstance(v, Tensor) for v in raw.values()):
        return dict(raw)
    raise InputError(path, "no state dict found (expected 'state_dict', 'teacher' or a flat tensor dict)")


def _encoder_prefixes(sd: dict[str, Tensor]) -> list[str]:
    found = set()
    for key in sd:
        m = re.match(r"^(.*?)blocks\.0\.attn\.qkv\.weight$", key)
        if m and (m.group(1) + "pos_embed") in sd and not any(p in m.group(1) for p in _IGNORED_PREFIX_PARTS):
            found.add(m.group(1))
    return sorted(found, key=lambda p: (_preference_rank(p), p))


def _preference_rank(prefix: str) -> int:
    """Rank of ``prefix`` in :data:`_ENCODER_PREFERENCE`; nested prefixes (ATST-SED's
    ``sed_teacher.atst_frame.atst.``) rank with the entry they start with."""
    if prefix in _ENCODER_PREFERENCE:
        return _ENCODER_PREFERENCE.index(prefix)
    for i, preferred in enumerate(_ENCODER_PREFERENCE):
        if preferred and prefix.startswith(preferred):
            return i
    return len(_ENCODER_PREFERENCE)


VARIANTS = ("frame", "clip")


def resolve_variant(raw: Any, sd: dict[str, Tensor], prefix: str) -> tuple[str, str]:
    """ATST-Frame or ATST-Clip for the encoder under ``prefix``, and why (for the log).

    Only one key set is ambiguous: a ``cls_token`` with a final norm named ``norm`` is ATST-Clip's
    naming, and also that of an older FrameAST still in circulation (ATST-SED's default
    ``atst_as2M.ckpt``). Then, in order: the layout's family (ATST-SED and C2F files hold ATST-Frame,
    DINO-style releases ATST-Clip), the pretraining hyper-parameters (``train_len``: ATST-Clip;
    ``anchor_len`` / ``mask_ratio``: ATST-Frame), and otherwise the official loaders' rule: the
    pretraining layout ``model.{teacher,student}.encoder.*`` is ATST-Frame, as ATST-SED's loader
    reads it (``norm`` → ``norm_frame``, ``cls_token`` dropped); fine-tuned and flat files are
    ATST-Clip, as audiossl's clip downstream code reads them.
    """
    if prefix + "norm_frame.weight" in sd:
        return "frame", "final norm named 'norm_frame'"
    if prefix + "cls_token" not in sd:
        return "frame", "no CLS token"
    if prefix.startswith("sed_"):
        return "frame", "ATST-SED files hold ATST-Frame"
    if "frame_encoder" in prefix:
        return "frame", "the frame encoder of a C2F model"
    if prefix.startswith("teacher.") and isinstance(raw, dict) and "teacher" in raw:
        return "clip", "DINO-style release (ATST-Clip)"
    hp = raw.get("hyper_parameters") if isinstance(raw, dict) else None
    if isinstance(hp, dict) and prefix.startswith("model."):
        if "train_len" in hp:
            return "clip", "hyper-parameters of ATST-Clip pretraining (train_len)"
        if "anchor_len" in hp or "mask_ratio" in hp:
            return "frame", "hyper-parameters of ATST-Frame pretraining (anchor_len / mask_ratio)"
    ambiguous = "CLS token with a final norm named 'norm', and the file does not say which model"
    if re.match(r"^model\.(teacher|student)\.encoder\.$", prefix):
        return "frame", (f"{ambiguous}: read as ATST-Frame, as ATST-SED's official loader reads this "
                         "layout (atst_as2M.ckpt); set the variant to clip for an ATST-Clip file")
    return "clip", (f"{ambiguous}: read as ATST-Clip, as audiossl's clip code reads this layout; set the "
                    "variant to frame for an older ATST-Frame file")


def convert_official_state_dict(
    sd: dict[str, Tensor], prefix: str, variant: str | None = None
) -> tuple[dict[str, Tensor], EncoderConfig]:
    """Map an audiossl FrameAST / AST state dict (keys under ``prefix``) onto :class:`ATSTEncoder`.

    Depth and width come from tensor shapes, heads = width / 64. ``variant`` (``frame``/``clip``)
    defaults to :func:`resolve_variant` on the keys alone; read as ATST-Frame, an older FrameAST's
    ``cls_token`` is dropped and its final ``norm`` kept.

    Raises:
        ValueError: ``variant`` is ``clip`` but the encoder has no ``cls_token``.
    """
    enc = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
    width = enc["pos_embed"].shape[-1]
    depth = 1 + max(int(m.group(1)) for k in enc if (m := re.match(r"blocks\.(\d+)\.", k)))
    is_clip = (variant or resolve_variant(None, sd, prefix)[0]) == "clip"
    if is_clip and "cls_token" not in enc:
        raise ValueError("the encoder has no cls_token: it cannot be read as ATST-Clip")
    out: dict[str, Tensor] = {}
    for k, v in enc.items():
        if k.startswith("patch_embed.patch_embed."):
            k = "patch_embed." + k[len("patch_embed.patch_embed.") :]
        elif k.startswith("norm_frame."):
            k = "norm." + k[len("norm_frame.") :]
        elif k == "cls_token" and not is_clip:
            continue
        elif k.startswith(("head.", "prompt")) or k.endswith(("total_ops", "total_params")):
            continue  # classifier / prompts, and the profiling counters ``thop`` leaves in ATST-SED files
        out[k] = v.float()
    config = EncoderConfig(
        variant="clip" if is_clip else "frame",
        width=width,
        depth=depth,
        heads=width // HEAD_DIM,
        max_tokens=enc["pos_embed"].shape[1] - 1,
        n_mels=enc["patch_embed.patch_embed.weight"].shape[1] // 4 if "patch_embed.patch_embed.weight" in enc else 64,
    )
    return out, config


@dataclass
class LoadedCheckpoint:
    """What a checkpoint file gives: a ready encoder (and SED model for ``kind == 'sed'``)."""

    path: Path
    kind: str  # "encoder" | "sed"
    layout: str  # "atst-sed" or the published layout it came from
    encoder: ATSTEncoder
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    model: SEDModel | None = None
    classes: list[str] = field(default_factory=list)
    decoding: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def spec(self) -> ModelSpec | None:
        """The SED model's contract (grid, window, classes, decoding, frontend); None without a model."""
        return None if self.model is None else self.model.spec


def load_weights(module: torch.nn.Module, sd: dict[str, Tensor], path: str | PathLike[str]) -> None:
    """Load ``sd`` into ``module`` exactly: missing, unknown or misshapen tensors are one
    :class:`InputError` naming ``path``. The module's tensors are replaced by the file's (so a
    module built on the meta device costs no initialisation)."""
    own = module.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    wrong = sorted(k for k in set(own) & set(sd) if own[k].shape != sd[k].shape)
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} tensors (e.g. {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unknown tensors (e.g. {unexpected[0]})")
    if wrong:
        problems.append(f"shape mismatch for {wrong[0]}: {tuple(sd[wrong[0]].shape)} vs {tuple(own[wrong[0]].shape)}")
    if problems:
        raise InputError(path, "checkpoint does not fit the model: " + "; ".join(problems))
    module.load_state_dict(sd, assign=True)  # modules are built on the meta device: take the file's tensors


def load_checkpoint(
    path: str | PathLike[str], encoder_prefix: str | None = None, variant: str | None = None, mmap: bool = False
) -> LoadedCheckpoint:
    """Load our checkpoints or any published ATST layout (pretraining Lightning file, DINO ATST-Clip,
    fine-tuned DESED model, C2F model, ATST-SED stage file). Classifier and student keys are ignored
    for published files. ``encoder_prefix`` forces where the encoder weights sit; ``variant``
    (``frame``/``clip``) overrides the layout's guess. ``mmap``: the weights are mapped from the
    file (copy on write) rather than read whole, see :func:`read_checkpoint_file`; inference
    starts faster and only the tensors it uses are read."""
    path = Path(path)
    if variant is not None and variant not in VARIANTS:
        raise InputError(path, f"variant must be frame or clip, not {variant!r}")
    raw = read_checkpoint_file(path, mmap=mmap)
    if is_atst_sed_checkpoint(raw):
        loaded = _load_own(raw, path)
        if variant is not None and loaded.encoder.config.variant != variant:
            raise InputError(path, f"the checkpoint holds an ATST-{loaded.encoder.config.variant.capitalize()} "
                             f"encoder (it says so itself); the variant asked for is {variant}")
        return loaded
    sd = published_state_dict(raw, path)
    prefixes = [encoder_prefix] if encoder_prefix is not None else _encoder_prefixes(sd)
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


def _load_own(raw: dict, path: Path) -> LoadedCheckpoint:
    version = raw.get("format_version")
    if version != FORMAT_VERSION:
        raise InputError(path, f"checkpoint format version {version} is not supported (expected {FORMAT_VERSION})")
    try:
        config = EncoderConfig(**raw["encoder"])
        frontend = FrontendConfig(**raw.get("frontend", {}))
        kind = raw["kind"]
        sd = raw["state_dict"]
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(path, f"malformed atst-sed checkpoint ({err})") from None
    meta = dict(raw.get("meta", {}))
    if kind == "sed":
        classes = list(raw.get("classes") or [])
        if not classes:
            raise InputError(path, "SED checkpoint lists no classes")
        try:
            decoding = Decoding.from_dict(classes, raw.get("decoding"))
        except DecodingError as err:
            raise InputError(path, f"checkpoint decoding settings do not have one value per class ({err})") from None
        with torch.device("meta"):
            encoder = ATSTEncoder(config)
        model = SEDModel(encoder, classes, frontend, decoding)
        load_weights(model, sd, path)
        model.eval()
        return LoadedCheckpoint(path, kind, FORMAT, model.encoder, frontend, model, classes, dict(raw.get("decoding", {})), meta)
    if kind == "encoder":
        with torch.device("meta"):
            encoder = ATSTEncoder(config)
        load_weights(encoder, sd, path)
        encoder.eval()
        return LoadedCheckpoint(path, kind, FORMAT, encoder, frontend, meta=meta)
    raise InputError(path, f"unknown checkpoint kind {kind!r}")


def checkpoint_dict(
    module: ATSTEncoder | SEDModel,
    classes: list[str] | None = None,
    decoding: dict[str, Any] | None = None,
    frontend: FrontendConfig | None = None,
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A self-describing checkpoint for ``module``: an encoder, or a SED model, whose classes,
    decoding and frontend are those it carries unless given."""
    is_sed = isinstance(module, SEDModel)
    encoder = module.encoder if is_sed else module
    if is_sed:
        classes = list(module.classes) if classes is None else list(classes)
        if len(classes) != module.n_classes:
            raise ValueError("a SED checkpoint needs its class names in output order")
        decoding = module.decoding.to_dict() if decoding is None else decoding
        frontend = frontend or module.frontend.config
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": "sed" if is_sed else "encoder",
        "encoder": encoder.config.to_dict(),
        "frontend": (frontend or FrontendConfig()).to_dict(),
        "classes": list(classes or []),
        "decoding": dict(decoding or {}),
        "meta": {"atst_sed_version": __version__, **(meta or {})},
        "state_dict": {k: v.detach().cpu().clone() for k, v in module.state_dict().items()},
    }


def save_checkpoint(path: str | PathLike[str], module: ATSTEncoder | SEDModel, **kwargs: Any) -> Path:
    """Write :func:`checkpoint_dict` to the output ``path`` (atomically for a file: :mod:`atst_sed.fileio`)."""
    path = Path(path)
    with open_output(path) as handle:
        torch.save(checkpoint_dict(module, **kwargs), handle)
    return path
