"""Named published models: a small registry, a download cache and integrity checks.

``fetch("atst-sed:stage2")`` returns the path of the official checkpoint in the cache
(``$ATST_SED_CACHE``, default the user cache folder, e.g. ``~/.cache/atst-sed``), downloading it
once. Google Drive links go through ``gdown`` (it handles Drive's confirmation step for large
files); other links are plain HTTP(S). Downloads are atomic (:mod:`atst_sed.fileio`): an
interrupted download leaves nothing behind.

Integrity: none of the official files has a published SHA-256. The first download's hash is
recorded beside the file (``<file>.sha256``) and every later use checks the file against it; a file
put in the cache by hand is recorded on its first use. Where a hash is published, the registry
holds it and the download is checked against it.

Offline, or when a download fails, the error is one line naming the URL and the exact path where
the file can be saved by hand.

AudioSet-strong class order: the output rows of the published AudioSet-strong ATST-Frame follow the
*file order* of ``common_labels.txt`` attached to audiossl PR #13, not the sorted MID list. The PR's
first commit (5eb4fda, 2024-07-09) used the sorted list; a user reported wrong labels; the author
answered (2024-07-30) "I forgot to use the sorted label in the label generation codes. You could try
this file [common_labels.txt] for the provided checkpoint", and the next commit (e584998) switched
the inference code to that unsorted order. The training code (``as_strong_dict.get_lab_dict``) also
indexes classes by line order. So the label file is read as it is, line by line.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlparse

from atst_sed.errors import AtstSedError, InputError
from atst_sed.fileio import atomic_path, atomic_write_text
from atst_sed.labels import DESED_CLASSES

log = logging.getLogger(__name__)

CACHE_ENV = "ATST_SED_CACHE"
HASH_SUFFIX = ".sha256"
#: downloader(url, handle, progress): write the bytes at ``url`` into the open binary ``handle``
Downloader = Callable[[str, BinaryIO, bool], None]


@dataclass(frozen=True)
class RemoteFile:
    """One downloadable file: where it is published, its name in the cache, its hash if published."""

    url: str
    filename: str
    sha256: str | None = None


@dataclass(frozen=True)
class PublishedModel:
    """A named published model and what it needs to run (see :data:`REGISTRY`)."""

    name: str
    family: str  # ATST-SED | ATST-Frame | ATST-Clip (as ModelSpec.family names them)
    kind: str  # sed | encoder
    architecture: str
    checkpoint: RemoteFile
    source: str  # where the link was published
    role: str | None = None  # the model inside the file used by default (ATST-SED: the EMA teacher)
    classes: tuple[str, ...] | None = None  # output order, when fixed by the model family
    n_classes: int | None = None
    labels: RemoteFile | None = None  # class ids in output order (file order), when not in `classes`
    ontology: RemoteFile | None = None  # id → display name
    #: published decoding settings (``median_filter`` / ``thresholds``: one value or one per class, in
    #: output frames) over :mod:`atst_sed.decoding`'s defaults
    decoding: dict[str, Any] = field(default_factory=dict)
    reported: dict[str, Any] = field(default_factory=dict)  # published scores, with where they come from
    notes: str = ""

    @property
    def files(self) -> tuple[RemoteFile, ...]:
        return tuple(f for f in (self.checkpoint, self.labels, self.ontology) if f is not None)


def _drive(file_id: str) -> str:
    return f"https://drive.google.com/file/d/{file_id}/view?usp=sharing"


_DESED = "DESED (10 classes)"
_ATST_SED_ARCH = "CRNN (7-block CNN with context gating) + ATST-Frame base, BiGRU 2×128; 64 ms frames"
_AS_STRONG_LABELS = RemoteFile("https://github.com/user-attachments/files/16423596/common_labels.txt", "common_labels.txt")
_ONTOLOGY = RemoteFile("https://raw.githubusercontent.com/audioset/ontology/master/ontology.json", "ontology.json")

REGISTRY: dict[str, PublishedModel] = {m.name: m for m in (
    PublishedModel(
        name="atst-sed:stage2",
        family="ATST-SED", kind="sed", role="teacher", architecture=_ATST_SED_ARCH,
        checkpoint=RemoteFile(_drive("1yMv05N0Nz5mSzlQ4YBb_sqOjazPbPDhw"), "Stage2_wo_ext.ckpt"),
        source="ATST-SED README (Audio-WestlakeU/ATST-SED), the stage-2 model trained without external data",
        classes=DESED_CLASSES, n_classes=10,
        decoding={"median_filter": [6, 20, 7, 4, 7, 6, 6, 6, 6, 6]},
        reported={"psds1": 0.583, "psds2": 0.810, "on": "DESED dev-test (ATST-SED README; public eval 0.631 / 0.833)"},
        notes="the best published DESED system; the file holds the EMA teacher (default) and the student",
    ),
    PublishedModel(
        name="atst-sed:stage1",
        family="ATST-SED", kind="sed", role="teacher", architecture=_ATST_SED_ARCH + " (transformer frozen)",
        checkpoint=RemoteFile(_drive("1_sGve3FySPEqZQKYDO_DVntZ-VWVhtWN"), "Stage_1.ckpt"),
        source="ATST-SED README, step 6 (the stage-1 model to fine-tune from)",
        classes=DESED_CLASSES, n_classes=10,
        decoding={"median_filter": 7},
        notes="no scores reported for stage 1",
    ),
    PublishedModel(
        name="atst-frame:audioset-strong",
        family="ATST-Frame", kind="sed", architecture="ATST-Frame base + linear frame head (no clip head); 40 ms frames",
        checkpoint=RemoteFile(_drive("1RWjnEnkDb-7fmNlqIcM-MovTnddOzLsh"), "atst_frame_audioset_strong.ckpt"),
        source="audiossl issue #12 (2024-07-04); label list attached to audiossl PR #13 (2024-07-30)",
        n_classes=407, labels=_AS_STRONG_LABELS, ontology=_ONTOLOGY,
        notes="407 AudioSet-strong classes, ids in the label file's line order; one threshold (0.5) for "
              "every class (no per-class thresholds are published); clip probability = max over frames",
    ),
    PublishedModel(
        name="atst-frame:as2m", family="ATST-Frame", kind="encoder",
        architecture="ATST-Frame base fine-tuned on AudioSet-2M (ATST-SED's transformer initialisation)",
        checkpoint=RemoteFile(_drive("1_xb0_n3UNbUG_pH1vLHTviLfsaSfCzxz"), "atst_as2M.ckpt"),
        source="ATST-SED README, step 2",
    ),
    PublishedModel(
        name="atst-frame:base", family="ATST-Frame", kind="encoder", architecture="ATST-Frame base (SSL, 12 × 768)",
        checkpoint=RemoteFile(_drive("1bGJSZWlAIIJ6GL5Id5dW0PTB72DL-QDQ"), "atst_frame_base.ckpt"),
        source="audiossl atstframe README",
    ),
    PublishedModel(
        name="atst-frame:small", family="ATST-Frame", kind="encoder", architecture="ATST-Frame small (SSL, 12 × 384)",
        checkpoint=RemoteFile(_drive("1xZoOTuxV415icYONYbeFQzgrmJQf4a4B"), "atst_frame_small.ckpt"),
        source="audiossl atstframe README",
    ),
    PublishedModel(
        name="atst-clip:base", family="ATST-Clip", kind="encoder", architecture="ATST-Clip base (SSL, 12 × 768)",
        checkpoint=RemoteFile("https://checkpointstorage.oss-cn-beijing.aliyuncs.com/atst/base.ckpt", "atst_clip_base.ckpt"),
        source="audiossl atst README",
    ),
    PublishedModel(
        name="atst-clip:small", family="ATST-Clip", kind="encoder", architecture="ATST-Clip small (SSL, 12 × 384)",
        checkpoint=RemoteFile("https://checkpointstorage.oss-cn-beijing.aliyuncs.com/atst/small.ckpt", "atst_clip_small.ckpt"),
        source="audiossl atst README",
    ),
)}


def published_model(name: str) -> PublishedModel:
    """The registry entry ``name``; an unknown name → :class:`AtstSedError` listing the known ones."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise AtstSedError(f"unknown model {name!r}; published models: {', '.join(REGISTRY)}") from None


def cache_dir() -> Path:
    """``$ATST_SED_CACHE``, else the user cache folder of atst-sed (platformdirs)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("atst-sed", appauthor=False))


def cached_path(model: PublishedModel, remote: RemoteFile) -> Path:
    """Where ``remote`` of ``model`` lives in the cache (also where to put it by hand)."""
    return cache_dir() / model.name.replace(":", "_") / remote.filename


def is_cached(name: str) -> bool:
    model = published_model(name)
    return all(cached_path(model, f).is_file() for f in model.files if f is not model.ontology)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _http_download(url: str, handle: BinaryIO, progress: bool) -> None:
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (https URLs from the registry)
        shutil.copyfileobj(response, handle, 1 << 20)


def _drive_download(url: str, handle: BinaryIO, progress: bool) -> None:
    import gdown  # a kept library for Google Drive's confirmation step on large files

    gdown.download(url, output=handle, quiet=not progress, fuzzy=True, use_cookies=False)


def default_downloader(url: str, handle: BinaryIO, progress: bool = False) -> None:
    """Google Drive links through gdown, anything else as a plain HTTP(S) GET."""
    host = urlparse(url).hostname or ""
    if host in ("drive.google.com", "docs.google.com"):
        _drive_download(url, handle, progress)
    else:
        _http_download(url, handle, progress)


def _looks_like_html(path: Path) -> bool:
    with path.open("rb") as handle:
        head = handle.read(512).lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html"))


def fetch_file(
    model: PublishedModel, remote: RemoteFile, downloader: Downloader | None = None, progress: bool = False
) -> Path:
    """The cached path of ``remote``, downloaded once and checked against its hash (see the module
    docstring). Failures → one-line :class:`AtstSedError` naming the URL and where to put the file."""
    path = cached_path(model, remote)
    record = path.with_name(path.name + HASH_SUFFIX)
    by_hand = f"download it yourself and save it as {path}"
    if path.is_file():
        found = _sha256(path)
        expected = remote.sha256 or (record.read_text().split()[0] if record.is_file() else None)
        if expected is None:
            atomic_write_text(record, f"{found}  {remote.filename}\n")
            log.info("%s: first use, recorded sha256 %s", path, found)
        elif found != expected:
            raise AtstSedError(f"{path}: sha256 {found} differs from the expected {expected} (damaged or replaced "
                               f"file?); delete it to download it again from {remote.url}")
        return path
    log.info("downloading %s from %s to %s", model.name, remote.url, path)
    try:
        with atomic_path(path) as tmp:
            with tmp.open("wb") as handle:
                (downloader or default_downloader)(remote.url, handle, progress)
            if tmp.stat().st_size == 0 or _looks_like_html(tmp):
                raise AtstSedError("got an empty file or a web page instead of the file (quota or permission page?)")
            found = _sha256(tmp)
            if remote.sha256 and found != remote.sha256:
                raise AtstSedError(f"the download's sha256 {found} differs from the published {remote.sha256}")
    except InputError as err:  # the cache folder cannot be written
        raise AtstSedError(f"cannot store {model.name} in the cache: {err}; set ${CACHE_ENV} to a writable folder") from None
    except Exception as err:  # network errors of urllib / requests / gdown, and the checks above
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise AtstSedError(f"cannot download {model.name} from {remote.url} ({reason[:200]}); {by_hand}") from None
    atomic_write_text(record, f"{found}  {remote.filename}\n")
    log.info("%s: downloaded, sha256 %s recorded", path, found)
    return path


def fetch(name: str, downloader: Downloader | None = None, progress: bool = False) -> Path:
    """The cached checkpoint of the published model ``name`` (downloaded once, hash-checked)."""
    model = published_model(name)
    return fetch_file(model, model.checkpoint, downloader, progress)


def read_label_list(path: str | os.PathLike[str], n_classes: int | None = None) -> list[str]:
    """Class ids in output order: one per line, in the file's order (empty lines skipped)."""
    path = Path(path)
    try:
        ids = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(path, f"cannot read the label list ({err})") from None
    if len(set(ids)) != len(ids):
        raise InputError(path, "the label list repeats a class id")
    if n_classes is not None and len(ids) != n_classes:
        raise InputError(path, f"the label list has {len(ids)} classes, the model {n_classes}")
    return ids


def read_ontology_names(path: str | os.PathLike[str]) -> dict[str, str]:
    """AudioSet ontology (``ontology.json``: a list of ``{"id", "name", ...}``) → id → display name."""
    path = Path(path)
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
        return {str(e["id"]): str(e["name"]) for e in entries}
    except (OSError, ValueError, TypeError, KeyError) as err:
        raise InputError(path, f"not an AudioSet ontology file ({err})") from None


def display_names(name: str, downloader: Downloader | None = None) -> dict[str, str]:
    """Class id → readable name for a published model (the ontology's names; DESED ids are names)."""
    model = published_model(name)
    if model.ontology is None:
        return {c: c for c in model.classes or ()}
    return read_ontology_names(fetch_file(model, model.ontology, downloader))
