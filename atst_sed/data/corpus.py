"""The DCASE 2022 corpus layout, our manifests and the dataset fingerprint.

Layout (shared by ``prepare synth`` and ``prepare dcase22``), relative to the corpus ROOT: see
:data:`SETS`. A set with ``subset_of`` is a part of another set (the same clips and audio folder,
its own labels file): ``strong_real_train`` / ``strong_real_val`` split ``strong_real`` as ATST-SED
does (:mod:`atst_sed.data.splits`). Manifests (``ROOT/manifests/<set>.tsv``: filename, path, duration, num_samples) list
the 16 kHz clips that exist and are readable; ``ROOT/manifests/index.json`` names the sets with
their label files. ``ROOT/fingerprint.json`` holds a hash of every manifest entry (set, file,
size) and every label file, the number of missing files and per-set counts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from os import PathLike
from pathlib import Path

import pandas as pd

from atst_sed.errors import InputError
from atst_sed.fileio import atomic_write_text


@dataclass(frozen=True)
class SetSpec:
    """One corpus set: where its 16 kHz audio and its metadata live (paths relative to ROOT)."""

    name: str
    kind: str  # "strong" | "weak" | "unlabeled"
    audio: str  # 16 kHz folder
    source_audio: str  # original-rate folder (DESED download target)
    labels: str | None  # strong or weak TSV
    durations: str | None = None
    listing: str | None = None  # a TSV listing the files of an unlabeled set (DESED download metadata)
    subset_of: str | None = None  # a part of that set: its clips and audio, its own labels file


SETS: dict[str, SetSpec] = {
    s.name: s
    for s in (
        SetSpec(
            "synth_train",
            "strong",
            "audio/train/synthetic21_train/soundscapes_16k",
            "audio/train/synthetic21_train/soundscapes",
            "metadata/train/synthetic21_train/soundscapes.tsv",
        ),
        SetSpec(
            "strong_real",
            "strong",
            "audio/train/strong_label_real_16k",
            "audio/train/strong_label_real",
            "metadata/train/audioset_strong.tsv",
        ),
        # ATST-SED's train / validation parts of strong_real (atst_sed.data.splits)
        SetSpec(
            "strong_real_train",
            "strong",
            "audio/train/strong_label_real_16k",
            "audio/train/strong_label_real",
            "metadata/train/audioset_strong_train.tsv",
            subset_of="strong_real",
        ),
        SetSpec(
            "strong_real_val",
            "strong",
            "audio/train/strong_label_real_16k",
            "audio/train/strong_label_real",
            "metadata/validation/audioset_strong_val.tsv",
            "metadata/validation/audioset_strong_val_durations.tsv",
            subset_of="strong_real",
        ),
        SetSpec("weak", "weak", "audio/train/weak_16k", "audio/train/weak", "metadata/train/weak.tsv"),
        SetSpec(
            "unlabeled",
            "unlabeled",
            "audio/train/unlabel_in_domain_16k",
            "audio/train/unlabel_in_domain",
            None,
            listing="metadata/train/unlabel_in_domain.tsv",
        ),
        SetSpec(
            "synth_val",
            "strong",
            "audio/validation/synthetic21_validation/soundscapes_16k",
            "audio/validation/synthetic21_validation/soundscapes",
            "metadata/validation/synthetic21_validation/soundscapes.tsv",
            "metadata/validation/synthetic21_validation/durations.tsv",
        ),
        SetSpec(
            "test",
            "strong",
            "audio/validation/validation_16k",
            "audio/validation/validation",
            "metadata/validation/validation.tsv",
            "metadata/validation/validation_durations.tsv",
        ),
    )
}

MANIFEST_COLUMNS = ["filename", "path", "duration", "num_samples"]


@dataclass
class ManifestEntry:
    filename: str
    path: str  # relative to ROOT
    duration: float  # seconds
    num_samples: int


def write_manifest(root: str | PathLike[str], set_name: str, entries: Iterable[ManifestEntry]) -> Path:
    """Write ``ROOT/manifests/<set>.tsv`` (sorted by filename) atomically; returns its path."""
    rows = sorted((asdict(e) for e in entries), key=lambda r: r["filename"])
    df = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    path = Path(root) / "manifests" / f"{set_name}.tsv"
    atomic_write_text(path, df.to_csv(sep="\t", index=False, float_format="%.6f"))
    return path


def read_manifest(root: str | PathLike[str], set_name: str) -> pd.DataFrame:
    """Read ``ROOT/manifests/<set>.tsv`` → DataFrame[filename, path, duration, num_samples]."""
    path = Path(root) / "manifests" / f"{set_name}.tsv"
    if not path.is_file():
        raise InputError(path, f"no manifest for set {set_name!r}: run `atst-sed prepare` for this corpus first")
    try:
        df = pd.read_csv(path, sep="\t", dtype={"filename": str, "path": str})
    except Exception as err:  # pandas parser errors name the line in their message
        raise InputError(path, f"malformed manifest ({err})") from None
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    if missing:
        raise InputError(path, f"missing column(s) {', '.join(missing)}", line=1)
    return df


def write_index(root: str | PathLike[str], set_names: Iterable[str], extra: Mapping | None = None) -> Path:
    """Write ``ROOT/manifests/index.json`` naming each set's kind, audio folder and label files."""
    sets = {name: {k: v for k, v in asdict(SETS[name]).items() if k != "name"} for name in sorted(set_names)}
    body = {"layout": "dcase2022", "sets": sets, **(dict(extra) if extra else {})}
    path = Path(root) / "manifests" / "index.json"
    atomic_write_text(path, json.dumps(body, indent=2, sort_keys=True) + "\n")
    return path


def read_index(root: str | PathLike[str]) -> dict:
    path = Path(root) / "manifests" / "index.json"
    if not path.is_file():
        raise InputError(path, "no corpus index: run `atst-sed prepare synth|dcase22 --root ROOT` first")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(path, f"invalid JSON ({err.msg})", line=err.lineno) from None


def compute_fingerprint(root: str | PathLike[str], set_names: Iterable[str]) -> str:
    """SHA-256 over (set, filename, byte size) of every manifest entry and the bytes of every label
    and durations file of the sets. Stable across reruns and machines; changes when a clip or a label
    changes (size) or is added/removed."""
    root = Path(root)
    h = hashlib.sha256()
    for name in sorted(set_names):
        spec = SETS[name]
        manifest = read_manifest(root, name)
        for filename, rel in zip(manifest["filename"], manifest["path"]):
            size = (root / rel).stat().st_size if (root / rel).is_file() else -1
            h.update(f"{name}\t{filename}\t{size}\n".encode())
        for meta in (spec.labels, spec.durations):
            if meta and (root / meta).is_file():
                h.update(f"{name}\t{meta}\n".encode())
                h.update(hashlib.sha256((root / meta).read_bytes()).digest())
    return "sha256:" + h.hexdigest()


def write_fingerprint(
    root: str | PathLike[str], set_names: Iterable[str], missing_files: int, extra: Mapping | None = None
) -> dict:
    """Compute the fingerprint and write ``ROOT/fingerprint.json``; returns its content."""
    root = Path(root)
    names = sorted(set_names)
    body = {
        "fingerprint": compute_fingerprint(root, names),
        "missing_files": int(missing_files),
        "sets": {n: int(len(read_manifest(root, n))) for n in names},
        **(dict(extra) if extra else {}),
    }
    atomic_write_text(root / "fingerprint.json", json.dumps(body, indent=2, sort_keys=True) + "\n")
    return body


def read_fingerprint(root: str | PathLike[str]) -> dict:
    path = Path(root) / "fingerprint.json"
    if not path.is_file():
        raise InputError(path, "no dataset fingerprint: run `atst-sed prepare` for this corpus")
    return json.loads(path.read_text())
