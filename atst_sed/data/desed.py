"""Real DESED (DCASE 2022 Task 4): ``download_dcase22`` and ``prepare_dcase22``.

``download_dcase22`` fetches the data with the ``desed`` package's documented functions (optional
dependency, imported lazily): the YouTube-based real sets (weak, unlabeled, validation), optionally
the AudioSet strong set, and the synthetic soundscapes from Zenodo, into the DCASE 2022 layout at
their original sample rate. ``prepare_dcase22`` resamples every set to 16 kHz mono into the
``_16k`` folders (in parallel, skipping files already done, writing atomically), then verifies:
every clip listed in the metadata but absent or unreadable goes to ``ROOT/missing_files.tsv``, the
manifests list the usable clips, and ``ROOT/fingerprint.json`` records the dataset fingerprint.
Both are safe to rerun and resume after an interruption.
"""

from __future__ import annotations

import logging
import os
import shutil
import urllib.request
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

from atst_sed.audio import SAMPLE_RATE, write_wav
from atst_sed.data.corpus import (
    SETS,
    ManifestEntry,
    write_fingerprint,
    write_index,
    write_manifest,
)
from atst_sed.errors import AtstSedError, InputError
from atst_sed.fileio import atomic_write_text, copy_file, open_output
from atst_sed.labels import DESED_CLASSES

log = logging.getLogger(__name__)

SYNTH_URL = "https://zenodo.org/record/6026841/files/dcase_synth.zip"
STRONG_TSV_URL = "https://zenodo.org/record/6444477/files/audioset_strong.tsv"


# ----------------------------------------------------------------------------------- download
def _import_desed():
    """The optional ``desed`` package (``pip install 'desed>=1.3.7'``; it needs yt-dlp and ffmpeg)."""
    try:
        import desed  # noqa: PLC0415
        import desed.download  # noqa: F401, PLC0415
    except ImportError:
        raise AtstSedError(
            "downloading DESED needs the optional `desed` package: pip install 'desed>=1.3.7' "
            "(it downloads YouTube clips with yt-dlp and needs ffmpeg). Already have the data? "
            "Put it under ROOT in the DCASE 2022 layout and run `atst-sed prepare dcase22 --root ROOT`."
        ) from None
    return desed


def download_dcase22(
    root: str | PathLike[str],
    real: bool = True,
    synthetic: bool = True,
    strong_real: bool = False,
    jobs: int = 3,
) -> None:
    """Download DESED into ``root`` (original sample rates), as DESED_task's 2022 script does.

    Args:
        real: weak, unlabeled in-domain and validation sets from YouTube
            (``desed.download_audioset_data``); clips no longer online are listed by ``desed`` under
            ``ROOT/missing_files/`` and later by :func:`prepare_dcase22`.
        synthetic: the synthetic soundscapes (``dcase_synth.zip`` from Zenodo record 6026841),
            linked into ``audio/{train,validation}/synthetic21_*``.
        strong_real: the AudioSet strong-label set (Zenodo record 6444477 + YouTube).
        jobs: parallel downloads.
    """
    desed = _import_desed()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if real:
        log.info("downloading the real DESED sets into %s (YouTube: this takes hours)", root)
        desed.download_audioset_data(str(root), n_jobs=jobs, chunk_size=10)
    if strong_real:
        tsv = root / SETS["strong_real"].labels
        if not tsv.is_file():
            _download_file(STRONG_TSV_URL, tsv)
        (root / "missing_files").mkdir(exist_ok=True)
        desed.download.download_audioset_files_from_csv(
            str(tsv),
            str(root / SETS["strong_real"].source_audio),
            missing_files_tsv=str(root / "missing_files" / "missing_files_strong_label_real.tsv"),
        )
    if synthetic:
        if not (root / "dcase_synth").is_dir():
            desed.download.download_and_unpack_archive(SYNTH_URL, str(root), archive_format="zip")
        link_synthetic(root)


def _download_file(url: str, path: Path) -> None:
    with urllib.request.urlopen(url) as response, open_output(path) as handle:  # noqa: S310 (fixed https URL)
        shutil.copyfileobj(response, handle)


def link_synthetic(root: str | PathLike[str]) -> None:
    """Link ``ROOT/dcase_synth/audio/<split>/<set>`` into ``ROOT/audio/<split>/`` and copy its
    metadata into ``ROOT/metadata/<split>/`` (what DESED_task's ``create_synth_dcase`` does)."""
    root = Path(root)
    base = root / "dcase_synth"
    for split in ("train", "validation"):
        for folder in sorted((base / "audio" / split).glob("*")) if (base / "audio" / split).is_dir() else []:
            target = root / "audio" / split / folder.name
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(folder.resolve(), target_is_directory=True)
        meta = base / "metadata" / split
        for tsv in sorted(meta.rglob("*.tsv")) if meta.is_dir() else []:
            target = root / "metadata" / split / tsv.relative_to(meta)
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                copy_file(tsv, target)


# ----------------------------------------------------------------------------------- prepare
@dataclass
class ClipStatus:
    set_name: str
    filename: str
    status: str  # "done" (already 16 kHz), "resampled", "missing"
    reason: str = ""
    num_samples: int = 0


def _check_16k(path: Path) -> tuple[int, str]:
    """(samples, "") for a readable 16 kHz file, else (0, reason)."""
    if not path.is_file():
        return 0, "no audio file"
    try:
        info = sf.info(str(path))
    except Exception as err:  # libsndfile's message names the problem
        return 0, f"unreadable ({str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__})"
    if info.samplerate != SAMPLE_RATE or info.channels != 1:
        return 0, f"{info.samplerate} Hz / {info.channels} channel(s), expected {SAMPLE_RATE} Hz mono"
    if info.frames == 0:
        return 0, "no samples"
    return int(info.frames), ""


def convert_clip(task: tuple[str, str, str, str, bool]) -> ClipStatus:
    """``(set, filename, source path, 16 kHz target path, verify_only)`` → the clip's status; the
    target is written (16 kHz mono PCM-16, atomically) unless it is already there or ``verify_only``."""
    set_name, filename, source, target, verify_only = task
    target_path = Path(target)
    samples, reason = _check_16k(target_path)
    if samples or verify_only:
        return ClipStatus(set_name, filename, "done" if samples else "missing", reason, samples)
    from atst_sed.audio import load_audio

    source_path = Path(source)
    if not source_path.is_file():
        return ClipStatus(set_name, filename, "missing", "no audio file")
    try:
        wave = load_audio(source_path).numpy()
    except InputError as err:
        return ClipStatus(set_name, filename, "missing", err.problem)
    peak = float(np.max(np.abs(wave))) if wave.size else 0.0
    if peak > 1.0:  # keep resampling overshoot inside the 16-bit range
        wave = wave / peak
    write_wav(target_path, wave, SAMPLE_RATE)
    return ClipStatus(set_name, filename, "resampled", "", int(wave.shape[0]))


def convert_clips(tasks: list[tuple[str, str, str, str, bool]], jobs: int | None = None,
                  progress: Callable[[int, int], None] | None = None) -> list[ClipStatus]:
    """:func:`convert_clip` over ``tasks`` in ``jobs`` processes (default: all cores), in order."""
    jobs = max(1, jobs or (os.cpu_count() or 1))
    statuses: list[ClipStatus] = []
    if jobs == 1 or len(tasks) < 16:
        for task in tasks:
            statuses.append(convert_clip(task))
            if progress:
                progress(len(statuses), len(tasks))
        return statuses
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        for status in pool.map(convert_clip, tasks, chunksize=16):
            statuses.append(status)
            if progress:
                progress(len(statuses), len(tasks))
    return statuses


def write_set_manifests(root: Path, set_names: Iterable[str], statuses: list[ClipStatus]) -> dict[str, tuple[list[ClipStatus], list[ClipStatus]]]:
    """``ROOT/manifests/<set>.tsv`` of each set's converted clips; returns ``{set: (its statuses,
    the present ones)}``."""
    out = {}
    for name in set_names:
        mine = [s for s in statuses if s.set_name == name]
        present = [s for s in mine if s.status != "missing"]
        write_manifest(root, name, (ManifestEntry(s.filename, f"{SETS[name].audio}/{s.filename}", s.num_samples / SAMPLE_RATE, s.num_samples)
                                    for s in present))
        out[name] = (mine, present)
    return out


def write_missing_files(root: Path, statuses: list[ClipStatus]) -> list[ClipStatus]:
    """``ROOT/missing_files.tsv`` (set, filename, reason) of the missing clips; returns them."""
    missing = sorted((s for s in statuses if s.status == "missing"), key=lambda s: (s.set_name, s.filename))
    atomic_write_text(
        root / "missing_files.tsv",
        "set\tfilename\treason\n" + "".join(f"{s.set_name}\t{s.filename}\t{s.reason}\n" for s in missing),
    )
    return missing


def _listed_files(root: Path, set_name: str) -> list[str] | None:
    """File names the metadata lists for a set (None: the set is absent)."""
    from atst_sed.events import read_strong_tsv, read_weak_tsv

    spec = SETS[set_name]
    if spec.labels and (root / spec.labels).is_file():
        if spec.kind == "strong":
            df = read_strong_tsv(root / spec.labels, DESED_CLASSES, merge_overlaps=False)
        else:
            df = read_weak_tsv(root / spec.labels, DESED_CLASSES)
        return list(dict.fromkeys(df["filename"].astype(str)))
    if spec.listing and (root / spec.listing).is_file():
        listing = root / spec.listing
        try:
            df = pd.read_csv(listing, sep="\t", dtype=str)
        except Exception as err:
            raise InputError(listing, f"not a readable file list ({err})") from None
        if "filename" not in df.columns:
            raise InputError(listing, "missing column filename", line=1)
        return list(dict.fromkeys(df["filename"].dropna().astype(str)))
    if spec.kind == "unlabeled":  # no listing: every audio file of the folders (DESED_task globs *.wav)
        names = set()
        for folder in (root / spec.source_audio, root / spec.audio):
            if folder.is_dir():
                names.update(p.name for p in folder.iterdir() if p.suffix.lower() in (".wav", ".flac") and not p.name.startswith("."))
        return sorted(names) or None
    return None


def prepare_dcase22(
    root: str | PathLike[str],
    jobs: int | None = None,
    only_verify: bool = False,
    progress: Callable[[int, int], None] | None = None,
    strong_val_list: str | PathLike[str] | None = None,
    strong_train_list: str | PathLike[str] | None = None,
) -> dict:
    """Resample DESED under ``root`` to 16 kHz mono (``_16k`` folders) and verify it.

    Files already present at 16 kHz are kept (rerunnable, resumable); ``only_verify`` resamples
    nothing. Writes ``missing_files.tsv`` (set, filename, reason) for every clip listed in the
    metadata whose 16 kHz audio is absent or unreadable, the manifests, missing durations TSVs
    (from the audio, 0.1 s as DESED_task), and ``fingerprint.json``.

    With the AudioSet strong labels (``strong_real``), also ATST-SED's train / validation split of
    them (``strong_real_train``, ``strong_real_val``; :func:`atst_sed.data.splits.write_strong_real_split`):
    from ``strong_val_list`` (and ``strong_train_list``), e.g. ATST-SED's
    ``train/val_utils/audioset_strong_{val,train}.tsv``, else a seeded draw of the same share, kept
    on reruns. Their clips are ``strong_real``'s: checked and reported missing once, under ``strong_real``.

    Returns:
        the report: {"fingerprint", "missing_files", "sets": {set: {"listed", "present",
        "resampled", "missing"}}, and "strong_real_split" when there is one}.
    """
    from atst_sed.data.splits import write_strong_real_split
    from atst_sed.events import write_durations_tsv

    root = Path(root)
    if not root.is_dir():
        raise InputError(root, "no such corpus folder (download DESED first: `atst-sed prepare dcase22 --download`)")
    split = write_strong_real_split(root, strong_val_list, strong_train_list)
    listed = {name: files for name in SETS if (files := _listed_files(root, name)) is not None}
    if not listed:
        raise InputError(root, "no DESED metadata found (expected e.g. metadata/validation/validation.tsv)")
    tasks = [
        (name, f, str(root / SETS[name].source_audio / f), str(root / SETS[name].audio / f), only_verify)
        for name, files in listed.items()
        if SETS[name].subset_of is None
        for f in files
    ]
    statuses = convert_clips(tasks, jobs, progress)
    report_sets: dict[str, dict[str, int]] = {}
    all_statuses = statuses + subset_statuses(listed, statuses)
    for name, (mine, present) in write_set_manifests(root, listed, all_statuses).items():
        spec = SETS[name]
        if spec.durations and not (root / spec.durations).is_file():
            write_durations_tsv(root / spec.durations, {s.filename: round(s.num_samples / SAMPLE_RATE, 1) for s in present})
        report_sets[name] = {
            "listed": len(mine),
            "present": len(present),
            "resampled": sum(s.status == "resampled" for s in mine),
            "missing": len(mine) - len(present),
        }
    missing = write_missing_files(root, statuses)
    extra = {"corpus": "dcase22", **({"strong_real_split": split} if split else {})}
    write_index(root, listed, {"classes": list(DESED_CLASSES), **extra})
    body = write_fingerprint(root, listed, len(missing), extra)
    for name, counts in report_sets.items():
        log.info("%s: %d listed, %d present (%d resampled), %d missing", name, counts["listed"], counts["present"], counts["resampled"], counts["missing"])
    if missing:
        log.warning("%d listed clip(s) are missing or unreadable: see %s", len(missing), root / "missing_files.tsv")
    report = {"fingerprint": body["fingerprint"], "missing_files": len(missing), "sets": report_sets}
    if split:
        report["strong_real_split"] = split
    return report


def subset_statuses(listed: dict[str, list[str]], statuses: list[ClipStatus]) -> list[ClipStatus]:
    """The statuses of the clips of every listed subset set (``SetSpec.subset_of``), taken from its
    parent set's (a clip of the subset that the parent does not list counts as missing)."""
    out = []
    for name, files in listed.items():
        parent = SETS[name].subset_of
        if parent is None:
            continue
        of_parent = {s.filename: s for s in statuses if s.set_name == parent}
        for f in files:
            s = of_parent.get(f)
            out.append(ClipStatus(name, f, s.status, s.reason, s.num_samples) if s else
                       ClipStatus(name, f, "missing", f"not a clip of {parent}"))
    return out
