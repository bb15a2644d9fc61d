"""Your own data as a corpus: labelled TSVs + audio folders → the DCASE 2022 layout, 16 kHz.

``prepare_custom`` takes any subset of: strong-labelled training clips, weakly labelled training
clips, unlabelled clips, a strong-labelled validation set and a strong-labelled test set, each a
DESED-format TSV (``filename onset offset event_label`` / ``filename event_labels``) with the folder
its ``filename`` column is relative to. Labels are checked against your class list (errors name
the file and line), audio of any format, rate or channel count is resampled to 16 kHz mono, and
the corpus gets manifests, ``missing_files.tsv`` and ``fingerprint.json`` like the DESED one, plus
your classes in ``manifests/index.json`` (what training uses when ``data.classes`` is not set).

Your parts fill the DCASE slots that the recipes address by name:

==================  ===============  ==========================================
part                corpus set       recipe key
==================  ===============  ==========================================
strong (training)   ``strong_real``  ``data.strong_sets: [strong_real]``
weak                ``weak``         ``data.weak_sets: [weak]``
unlabeled           ``unlabeled``    ``data.unlabeled_sets: [unlabeled]``
validation          ``synth_val``    ``data.val_set: synth_val``
test                ``test``         ``data.test_set: test``
==================  ===============  ==========================================
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from os import PathLike
from pathlib import Path

from atst_sed.audio import AUDIO_EXTENSIONS, SAMPLE_RATE
from atst_sed.data.corpus import SETS, write_fingerprint, write_index
from atst_sed.data.desed import ClipStatus, convert_clips, write_missing_files, write_set_manifests
from atst_sed.errors import AtstSedError, InputError
from atst_sed.events import read_strong_tsv, read_weak_tsv, write_durations_tsv
from atst_sed.fileio import atomic_write_text

log = logging.getLogger(__name__)

PART_TO_SET = {"strong": "strong_real", "weak": "weak", "unlabeled": "unlabeled", "validation": "synth_val", "test": "test"}


def read_classes(spec: str) -> list[str]:
    """Class names from a comma-separated list or a text file with one name per line."""
    path = Path(spec)
    if path.is_file():
        names = [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
        where: str | Path = path
    else:
        names, where = [c.strip() for c in spec.split(",") if c.strip()], "--classes"
    if not names:
        raise InputError(where, "no class names")
    if len(set(names)) < len(names):
        raise InputError(where, f"duplicate class names: {sorted({n for n in names if names.count(n) > 1})}")
    return names


def _labelled_files(part: str, labels: Path, classes: Sequence[str]) -> list[str]:
    if part == "weak":
        table = read_weak_tsv(labels, classes)
    else:
        table = read_strong_tsv(labels, classes, merge_overlaps=False)
    return list(dict.fromkeys(table["filename"].astype(str)))


def _audio_files(folder: Path) -> list[str]:
    """Audio files below ``folder`` (recursive), as paths relative to it."""
    return sorted(
        str(p.relative_to(folder)) for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS and not p.name.startswith(".")
    )


def _target_name(filename: str) -> str:
    """The clip's file name in the corpus: 16 kHz WAV, sub-folders kept."""
    return str(Path(filename).with_suffix(".wav"))


def prepare_custom(
    root: str | PathLike[str],
    classes: Sequence[str],
    parts: Mapping[str, tuple[str | PathLike[str] | None, str | PathLike[str]]],
    jobs: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Build a corpus at ``root`` from ``parts``: ``{part: (labels TSV or None, audio folder)}``
    with parts among :data:`PART_TO_SET` (``unlabeled`` takes no TSV: every audio file of its
    folder, recursively). Rerunnable: clips already converted are kept.

    Returns:
        the report {"fingerprint", "missing_files", "sets": {set: {"listed", "present", "missing"}}}.

    Raises:
        InputError: a label file or folder problem, naming the file (and line).
    """
    unknown = sorted(set(parts) - set(PART_TO_SET))
    if unknown:
        raise AtstSedError(f"unknown part(s) {unknown}; use {', '.join(PART_TO_SET)}")
    if not parts:
        raise AtstSedError("no data given: pass at least one of --strong, --weak, --unlabeled, --validation, --test")
    root = Path(root)
    classes = list(classes)
    tasks, renamed = [], {}
    for part, (labels, audio) in parts.items():
        audio = Path(audio)
        if not audio.is_dir():
            raise InputError(audio, f"no such audio folder (--{part})")
        set_name = PART_TO_SET[part]
        spec = SETS[set_name]
        if part == "unlabeled":
            files = _audio_files(audio)
            if not files:
                raise InputError(audio, "no audio files in this folder (--unlabeled)")
            atomic_write_text(root / spec.listing, "filename\n" + "".join(f"{_target_name(f)}\n" for f in files))
        else:
            labels = Path(labels)
            files = _labelled_files(part, labels, classes)
            ids = {Path(f).stem for f in files}
            if len(ids) < len(files):  # clips are scored by file name without folder and extension
                raise InputError(labels, "two clips share a file name (in different folders or with other extensions)")
            text = labels.read_text()
            if any(_target_name(f) != f for f in files):  # the corpus holds WAVs: rename in the copied labels
                renamed[set_name] = sum(_target_name(f) != f for f in files)
                table = text.splitlines(keepends=True)
                text = table[0] + "".join(_rename_first_field(line) for line in table[1:])
            (root / spec.labels).parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(root / spec.labels, text)
        tasks += [(set_name, _target_name(f), str(audio / f), str(root / spec.audio / _target_name(f)), False) for f in files]
    for set_name, count in renamed.items():
        log.info("%s: %d file name(s) renamed to .wav in the corpus labels", set_name, count)
    statuses = convert_clips(tasks, jobs, progress)
    return _write_corpus(root, classes, sorted({t[0] for t in tasks}), statuses)


def _rename_first_field(line: str) -> str:
    first, sep, rest = line.partition("\t")
    return (_target_name(first) if first.strip() else first) + sep + rest


def _write_corpus(root: Path, classes: list[str], set_names: list[str], statuses: list[ClipStatus]) -> dict:
    report: dict[str, dict[str, int]] = {}
    for name, (mine, present) in write_set_manifests(root, set_names, statuses).items():
        spec = SETS[name]
        if spec.durations:  # evaluation sets: durations from the audio
            write_durations_tsv(root / spec.durations, {s.filename: s.num_samples / SAMPLE_RATE for s in present})
        report[name] = {"listed": len(mine), "present": len(present), "missing": len(mine) - len(present)}
        log.info("%s: %d listed, %d present, %d missing", name, len(mine), len(present), len(mine) - len(present))
    missing = write_missing_files(root, statuses)
    if missing:
        log.warning("%d clip(s) are missing or unreadable: see %s", len(missing), root / "missing_files.tsv")
    write_index(root, set_names, {"classes": classes, "corpus": "custom"})
    body = write_fingerprint(root, set_names, len(missing), {"corpus": "custom", "classes": classes})
    return {"fingerprint": body["fingerprint"], "missing_files": len(missing), "sets": report}

