"""Readable class names: class ids (e.g. AudioSet MIDs) in a model's output order and their display
names; choosing classes by id or name.

A model's classes are ids: what score files, evaluation and checkpoints carry (``/m/09x0r``; for DESED
the ids are already readable, ``Speech``). People read display names (``Speech``): the CSV of
``detect`` and its pictures use them by default.

Files read here (:func:`read_label_file`):

* a label list: one class id per line in the model's output order, optionally followed by a TAB and
  its display name; ``#`` lines and a ``mid<TAB>display_name`` header are skipped (the shipped
  :data:`AUDIOSET_STRONG_TABLE` has this form; so has audiossl's ``common_labels.txt``, ids only);
* an AudioSet ontology (``ontology.json``: a list of ``{"id", "name", ...}``): names only.

The shipped table names the 407 classes of the published AudioSet-strong ATST-Frame (ontology names,
CC BY-SA 4.0, attribution in the file), so that no ontology download is needed to run it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path

from atst_sed.errors import AtstSedError, InputError

#: The published AudioSet-strong ATST-Frame's classes: MID TAB display name, in output order.
AUDIOSET_STRONG_TABLE = Path(__file__).resolve().parent / "resources" / "audioset_strong_classes.tsv"
LABEL_FORMATS: tuple[str, ...] = ("name", "mid")
_HEADER = ("mid", "id", "class", "label")


def read_label_file(path: str | os.PathLike[str], n_classes: int | None = None) -> tuple[list[str], dict[str, str]]:
    """``(ids in output order, {id: display name})`` of a label list, or ``([], names)`` of an AudioSet
    ontology (``.json``). ``n_classes``: the model's class count, checked against a list.
    Unreadable or inconsistent files → :class:`InputError` naming ``path``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(path, f"cannot read the label file ({err})") from None
    if path.suffix.lower() == ".json":
        return [], _ontology_names(path, text)
    ids: list[str] = []
    names: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        class_id, _, name = (part.strip() for part in line.partition("\t"))
        if not ids and class_id.lower() in _HEADER and name.lower() in ("", "name", "display_name"):
            continue  # a header line
        if class_id in names or class_id in ids:
            raise InputError(path, f"class id {class_id!r} appears twice", line=number)
        ids.append(class_id)
        if name:
            names[class_id] = name
    if not ids:
        raise InputError(path, "no class id in the label file")
    if n_classes is not None and len(ids) != n_classes:
        raise InputError(path, f"the label file has {len(ids)} classes, the model {n_classes}")
    return ids, names


def read_label_list(path: str | os.PathLike[str], n_classes: int | None = None) -> list[str]:
    """Class ids in output order: the first column of a label list, in the file's line order."""
    ids, _ = read_label_file(path, n_classes)
    if not ids:
        raise InputError(path, "an ontology names classes but gives no class order; pass a label list")
    return ids


def read_ontology_names(path: str | os.PathLike[str]) -> dict[str, str]:
    """AudioSet ontology (``ontology.json``) → ``{id: display name}``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(path, f"cannot read the ontology ({err})") from None
    return _ontology_names(path, text)


def _ontology_names(path: Path, text: str) -> dict[str, str]:
    try:
        return {str(e["id"]): str(e["name"]) for e in json.loads(text)}
    except (ValueError, TypeError, KeyError) as err:
        raise InputError(path, f"not an AudioSet ontology file (a JSON list of {{id, name}}; {err})") from None


@lru_cache(maxsize=1)
def audioset_strong_table() -> tuple[tuple[str, ...], dict[str, str]]:
    """The shipped AudioSet-strong table: (the 407 MIDs in the published model's output order, names)."""
    ids, names = read_label_file(AUDIOSET_STRONG_TABLE)
    return tuple(ids), names


def name_map(classes: Sequence[str], *tables: Mapping[str, str]) -> dict[str, str]:
    """``{class id: display name}`` for ``classes``: the first table naming an id wins; an id no table
    names keeps its id."""
    out = {}
    for class_id in classes:
        out[class_id] = next((t[class_id] for t in tables if class_id in t), class_id)
    return out


def class_indices(selection: Sequence[str], classes: Sequence[str], names: Mapping[str, str],
                   what: str = "--classes") -> list[int]:
    """Output indices (in model order) of the classes in ``selection``, each given by its id or its
    display name (case-insensitive). An unknown entry → :class:`AtstSedError` naming ``what`` (the
    option) with close matches."""
    by_key: dict[str, int] = {}
    for i, class_id in enumerate(classes):
        by_key.setdefault(class_id.casefold(), i)
        by_key.setdefault(names.get(class_id, class_id).casefold(), i)
    chosen: set[int] = set()
    for item in selection:
        key = item.strip().casefold()
        if key not in by_key:
            import difflib

            close = difflib.get_close_matches(key, list(by_key), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(repr(_original(c, classes, names)) for c in close)}?" if close else ""
            raise AtstSedError(f"{what}: unknown class {item.strip()!r} (neither a class id nor a display name "
                               f"of the model){hint}")
        chosen.add(by_key[key])
    if not chosen:
        raise AtstSedError(f"{what}: no class given")
    return sorted(chosen)


def split_selection(texts: Sequence[str], classes: Sequence[str], names: Mapping[str, str]) -> list[str]:
    """Comma-separated class lists (``--classes``) → entries. Display names may hold commas
    (``Gunshot, gunfire``): pieces are joined back while their join is a known id or name."""
    known = {c.casefold() for c in classes} | {names.get(c, c).casefold() for c in classes}
    entries: list[str] = []
    for text in texts:
        pieces = [p.strip() for p in text.split(",")]
        i = 0
        while i < len(pieces):
            # the longest run of pieces starting at i that reads as one known class
            j = next((j for j in range(len(pieces), i, -1) if ", ".join(pieces[i:j]).casefold() in known), i + 1)
            entry = ", ".join(pieces[i:j])
            if entry:
                entries.append(entry)
            i = j
    return entries


def _original(key: str, classes: Sequence[str], names: Mapping[str, str]) -> str:
    for class_id in classes:
        for text in (names.get(class_id, class_id), class_id):
            if text.casefold() == key:
                return text
    return key


def check_label_format(label_format: str) -> str:
    if label_format not in LABEL_FORMATS:
        raise AtstSedError(f"label format must be one of {', '.join(LABEL_FORMATS)}, not {label_format!r}")
    return label_format


__all__ = [
    "AUDIOSET_STRONG_TABLE",
    "LABEL_FORMATS",
    "audioset_strong_table",
    "check_label_format",
    "name_map",
    "read_label_file",
    "read_label_list",
    "read_ontology_names",
    "class_indices",
    "split_selection",
]
