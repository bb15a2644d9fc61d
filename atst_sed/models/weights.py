"""Checkpoint files → tensors → modules: the pieces every loader shares.

* :func:`read_checkpoint_file` — ``torch.load(weights_only=True)`` with a minimal allow-list (argparse
  namespaces of DINO releases; the numpy scalar constructors that audiossl trainers pickle as learning
  rates): no pickled code runs; damaged or foreign files are one :class:`InputError` naming them.
* :func:`published_state_dict` — all tensors of a Lightning, DINO or flat file as one flat dict.
* :func:`resolve_variant` / :func:`convert_official_state_dict` — an audiossl FrameAST / AST encoder
  under a key prefix onto :class:`~atst_sed.models.encoder.ATSTEncoder`.
* :func:`load_weights` — exact loading, one-line errors.
"""

from __future__ import annotations

import argparse
import pickle
import re
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from atst_sed.errors import InputError
from atst_sed.models.encoder import HEAD_DIM, EncoderConfig

FORMAT = "atst-sed"  # the "format" entry of our own (self-describing) checkpoint files

_multiarray = getattr(np, "_core", None) or np.core  # numpy 2 / numpy 1
_SCALAR = _multiarray.multiarray.scalar
#: What a pickled numpy scalar needs (audiossl trainers store ``numpy.float64`` learning rates in their
#: optimizer states), under both numpy 1 and numpy 2 module names: the scalar constructor, ``np.dtype``
#: and the numeric DType classes. No object dtype, no arrays, no callables.
NUMPY_SCALAR_GLOBALS: list[Any] = [
    (_SCALAR, "numpy.core.multiarray.scalar"),
    (_SCALAR, "numpy._core.multiarray.scalar"),
    np.dtype,
    *(getattr(np.dtypes, name) for name in (
        "Float64DType", "Float32DType", "Float16DType", "Int64DType", "Int32DType", "Int16DType", "Int8DType",
        "UInt64DType", "UInt32DType", "UInt16DType", "UInt8DType", "BoolDType",
    )),
]

# Benign classes found in published Lightning / DINO checkpoints (hyper-parameters, argparse args,
# numpy learning rates).
_SAFE_GLOBALS = [argparse.Namespace, *NUMPY_SCALAR_GLOBALS]

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
    ``mmap``: tensors stay on disk until used (a cheap check of a large file). A missing, truncated or
    corrupt file, or one that carries pickled Python objects → :class:`InputError` naming it."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such checkpoint file")
    problem = _not_a_checkpoint(path)
    if problem is not None:
        raise InputError(path, problem)
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


def encoder_prefixes(sd: dict[str, Tensor]) -> list[str]:
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
