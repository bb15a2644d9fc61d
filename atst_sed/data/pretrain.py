"""Unlabelled audio for ATST pretraining: file lists, views, and a LightningDataModule.

Sources (:func:`list_audio_files`): a folder (searched recursively for audio files, e.g. an
AudioSet download ``ROOT/unbalanced_train_segments/**.wav``), a text manifest (one path per line,
relative paths resolved against ``root`` or the manifest's folder; ``#`` comments), or a TSV/CSV
with a header holding a ``filename`` column (extra columns ignored; relative to ``root``).

Views per item (features from :class:`atst_sed.frontend.LogMelFrontend`, in the workers):

- ``frame``: one random ``clip_seconds`` (10 s) crop; shorter files are zero-padded at the end of
  the *waveform* and, as upstream, still treated as full length (no length mask: the padding is
  part of the input). ``view1`` = the clean mel (64, 1001), ``view2`` = frequency warp of the
  mixed-up mel.
- ``clip``: two random ``crop_seconds`` (6 s) crops whose overlap is at least
  ``min_overlap_seconds``: the first start is uniform, the second uniform within
  ±(crop − overlap) of it. For files up to 2·crop − overlap = 11 s (all of AudioSet) this is
  exactly upstream's two independent crops (two 6 s crops of a 10 s clip always overlap ≥ 2 s);
  only longer files are constrained. Each crop: mixup, then random resized crop.

Mixup draws from a per-worker memory bank (one :class:`MixupBank` per dataset copy, i.e. per
DataLoader worker), shared by both crops in ``clip``.

Unreadable files: by default an item whose file fails to load is replaced by the next file (up to
``max_retries``), a warning names the file once, and the item reports how many files it skipped
(``skipped``; the training module logs the running total as ``data/skipped_files``). With
``validate: true`` every file's header is checked up front instead and bad files are dropped
before training (their number is in :attr:`PretrainDataModule.missing_files`).
"""

from __future__ import annotations

import csv
import hashlib
import logging
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any, Literal

import pytorch_lightning as pl
import soundfile as sf
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from atst_sed.audio import is_audio_file, load_audio, seconds_to_samples
from atst_sed.data.augment import MixupBank, RandomResizeCrop
from atst_sed.errors import AtstSedError, InputError
from atst_sed.frontend import FrontendConfig, LogMelFrontend

log = logging.getLogger(__name__)


@dataclass
class PretrainDataConfig:
    """``source``: folder, text manifest or TSV/CSV (``filename`` column); ``root``: base folder for
    relative manifest entries. ``batch_size`` is per device. Durations in seconds."""

    source: str = ""
    root: str | None = None
    batch_size: int = 64
    num_workers: int = 4
    clip_seconds: float = 10.0
    crop_seconds: float = 6.0
    min_overlap_seconds: float = 1.0
    mixup_ratio: float = 0.4
    mixup_memory: int = 2000
    freq_scale: tuple[float, float] = (0.6, 1.5)
    time_scale: tuple[float, float] = (0.6, 1.5)
    virtual_crop_scale: tuple[float, float] = (1.0, 1.5)
    shuffle: bool = True
    validate: bool = False
    max_retries: int = 10


def _resolve(entry: str, base: Path) -> Path:
    p = Path(entry.strip()).expanduser()
    return p if p.is_absolute() else base / p


def list_audio_files(source: str | PathLike[str], root: str | PathLike[str] | None = None) -> list[Path]:
    """All audio files of a folder (recursive, sorted) or listed in a manifest (in file order)."""
    source = Path(source).expanduser()
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.is_file() and is_audio_file(p))
        if not files:
            raise InputError(source, "folder contains no audio files")
        return files
    if not source.is_file():
        raise InputError(source, "no such folder or manifest file")
    base = Path(root).expanduser() if root else source.parent
    text = source.read_text(errors="replace").splitlines()
    files: list[Path] = []
    header = text[0].lower() if text else ""
    delimiter = "\t" if "\t" in header else ("," if "," in header else None)
    if delimiter and "filename" in [h.strip() for h in header.split(delimiter)]:
        reader = csv.DictReader(text, delimiter=delimiter)
        reader.fieldnames = [h.strip().lower() for h in reader.fieldnames or []]
        for lineno, row in enumerate(reader, start=2):
            name = (row.get("filename") or "").strip()
            if not name:
                raise InputError(source, "empty filename", line=lineno)
            files.append(_resolve(name, base))
    else:
        for lineno, line in enumerate(text, start=1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            files.append(_resolve(line, base))
    if not files:
        raise InputError(source, "manifest lists no files")
    # A TSV may list the same clip once per event: keep the first occurrence.
    return list(dict.fromkeys(files))


def validate_files(files: list[Path]) -> tuple[list[Path], list[Path]]:
    """Split ``files`` into (readable, unreadable) by reading each header (fast, no decoding)."""
    good, bad = [], []
    for f in files:
        try:
            info = sf.info(str(f))
            (good if info.frames > 0 else bad).append(f)
        except Exception:
            try:
                load_audio(f)  # formats libsndfile cannot read (mp3 via the fallback decoder)
                good.append(f)
            except InputError as err:
                log.warning("skipping %s", err)
                bad.append(f)
    return good, bad


def files_fingerprint(files: list[Path]) -> str:
    """Short hash of the file list (paths and sizes): identifies the pretraining data."""
    h = hashlib.sha1()
    for f in files:
        try:
            size = f.stat().st_size
        except OSError:
            size = -1
        h.update(f"{f}\t{size}\n".encode())
    return h.hexdigest()[:16]


def _crop_or_pad(wav: Tensor, start: int, n: int) -> Tensor:
    """``n`` samples from ``start``; zero-padded at the end when the file is shorter."""
    seg = wav[start : start + n]
    if seg.shape[0] < n:
        seg = torch.nn.functional.pad(seg, (0, n - seg.shape[0]))
    return seg


def clip_crop_starts(n_samples: int, crop: int, min_overlap: int, generator: torch.Generator | None = None) -> tuple[int, int]:
    """Start samples of two ``crop``-sample crops of an ``n_samples`` file overlapping ≥ ``min_overlap``
    samples: s1 uniform in [0, n − crop], s2 uniform in [s1 − (crop − overlap), s1 + (crop − overlap)]
    ∩ [0, n − crop]. Files shorter than ``crop`` give (0, 0) (both crops are the zero-padded file)."""
    last = max(n_samples - crop, 0)
    reach = max(crop - min_overlap, 0)
    s1 = int(torch.randint(last + 1, (), generator=generator))
    lo, hi = max(0, s1 - reach), min(last, s1 + reach)
    return s1, lo + int(torch.randint(hi - lo + 1, (), generator=generator))


class PretrainDataset(Dataset):
    """Items: ``{"view1", "view2"}`` (64, T) float32 normalised log-mel, ``"skipped"`` long.

    ``method`` ``frame``: T = 1001 (10 s), ``clip``: T = 601 (6 s) for the defaults.
    """

    def __init__(self, files: list[Path], method: Literal["frame", "clip"], config: PretrainDataConfig,
                 frontend: FrontendConfig | None = None):
        if method not in ("frame", "clip"):
            raise ValueError(f"method must be 'frame' or 'clip', not {method!r}")
        if not files:
            raise AtstSedError("no audio files to pretrain on")
        self.files = list(files)
        self.method = method
        self.config = config
        self.frontend = LogMelFrontend(frontend)
        self.mixup = MixupBank(config.mixup_ratio, config.mixup_memory)
        if method == "frame":
            self.warp = RandomResizeCrop.frequency_warp(tuple(config.freq_scale))
        else:
            self.warp = RandomResizeCrop(tuple(config.virtual_crop_scale), tuple(config.freq_scale), tuple(config.time_scale))
        self.bad_files: set[Path] = set()

    def __len__(self) -> int:
        return len(self.files)

    def _features(self, wav: Tensor) -> Tensor:
        with torch.no_grad():
            return self.frontend(wav[None])[0]

    def _load(self, index: int) -> tuple[Tensor, int]:
        """Waveform of item ``index`` (or of the next readable file) and the number of files skipped."""
        skipped = 0
        for attempt in range(self.config.max_retries + 1):
            path = self.files[(index + attempt) % len(self.files)]
            if path in self.bad_files:
                skipped += 1
                continue
            try:
                return load_audio(path), skipped
            except InputError as err:
                self.bad_files.add(path)
                skipped += 1
                log.warning("skipping unreadable file (%d so far in this worker): %s", len(self.bad_files), err)
        raise AtstSedError(f"{self.config.max_retries + 1} files in a row could not be read (last: {path})")

    def __getitem__(self, index: int) -> dict[str, Any]:
        wav, skipped = self._load(index)
        c = self.config
        if self.method == "frame":
            n = seconds_to_samples(c.clip_seconds)
            start = int(torch.randint(wav.shape[0] - n + 1, ())) if wav.shape[0] > n else 0
            clean = self._features(_crop_or_pad(wav, start, n))
            view1, view2 = clean, self.warp(self.mixup(clean))
        else:
            n = seconds_to_samples(c.crop_seconds)
            s1, s2 = clip_crop_starts(wav.shape[0], n, seconds_to_samples(c.min_overlap_seconds))
            views = []
            for s in (s1, s2):
                views.append(self.warp(self.mixup(self._features(_crop_or_pad(wav, s, n)))))
            view1, view2 = views
        return {"view1": view1.float(), "view2": view2.float(), "skipped": torch.tensor(skipped, dtype=torch.long)}


class PretrainDataModule(pl.LightningDataModule):
    """Train loader over the configured source (shuffled, ``drop_last``); Lightning adds the
    DistributedSampler under DDP. ``files``, ``missing_files`` and ``fingerprint`` describe the data."""

    def __init__(self, config: PretrainDataConfig, method: Literal["frame", "clip"], frontend: FrontendConfig | None = None,
                 seed: int = 0):
        super().__init__()
        self.config = config
        self.method = method
        self.frontend = frontend
        self.seed = seed
        self.files: list[Path] = []
        self.missing_files = 0
        self.fingerprint = ""

    def prepare_files(self) -> list[Path]:
        if not self.files:
            if not self.config.source:
                raise AtstSedError("data.source is not set (a folder or manifest of audio files)")
            files = list_audio_files(self.config.source, self.config.root)
            if self.config.validate:
                files, bad = validate_files(files)
                self.missing_files = len(bad)
                if bad:
                    log.warning("%d of %d files are unreadable and left out", len(bad), len(bad) + len(files))
            if not files:
                raise InputError(self.config.source, "no readable audio files")
            self.files = files
            self.fingerprint = files_fingerprint(files)
        return self.files

    def setup(self, stage: str | None = None) -> None:
        self.prepare_files()

    def train_dataloader(self) -> DataLoader:
        files = self.prepare_files()
        dataset = PretrainDataset(files, self.method, self.config, self.frontend)
        if len(dataset) < self.config.batch_size:
            raise AtstSedError(f"only {len(dataset)} files for a batch size of {self.config.batch_size}")
        generator = torch.Generator().manual_seed(self.seed)
        workers = self.config.num_workers
        return DataLoader(
            dataset,
            batch_size=self.config.batch_size,
            shuffle=self.config.shuffle,
            drop_last=True,
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
            generator=generator,
        )
