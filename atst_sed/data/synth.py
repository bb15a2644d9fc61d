"""Offline synthetic DESED-like corpus: ``prepare_synth(root, seed, size, sources)``.

Writes 10 s soundscapes (16 kHz mono, 16-bit WAV) in the DCASE 2022 layout (:mod:`.corpus`) with
DESED's TSV formats and the 10 DESED classes: synthetic strong train, weak, unlabeled, synthetic
validation (strong + durations), the "validation" test set (strong + durations, some clips
shorter than 10 s and a few without events, as in DESED), and a stand-in for DESED's real
strong-labelled AudioSet clips (``strong_real``: louder backgrounds, quieter events) with
ATST-SED's train / validation split of it (``strong_real_train`` / ``strong_real_val``), so that
recipes can train on four sources (synthetic strong, real strong, weak, unlabeled) offline. Every clip is drawn from its own
generator seeded by (seed, set, index): the corpus is bit-identical for a seed whatever the number
of worker processes, and a rerun only writes the clips that are missing.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd

from atst_sed.audio import write_wav
from atst_sed.data import sources as src
from atst_sed.data.corpus import (
    SETS,
    ManifestEntry,
    write_fingerprint,
    write_index,
    write_manifest,
)
from atst_sed.data.splits import write_strong_real_split
from atst_sed.errors import AtstSedError, InputError
from atst_sed.events import read_strong_tsv, write_durations_tsv, write_events_tsv
from atst_sed.fileio import atomic_write_text
from atst_sed.labels import DESED_CLASSES

log = logging.getLogger(__name__)

SR = src.SR
CLIP_MS = 10_000
GENERATOR_VERSION = "atst-sed-synth-1"
SYNTH_SETS = ("synth_train", "weak", "unlabeled", "synth_val", "test", "strong_real")  # codes seed the clips: append only
SPLIT_SETS = ("strong_real_train", "strong_real_val")  # parts of strong_real (atst_sed.data.splits)
_SET_CODES = {name: i for i, name in enumerate(SYNTH_SETS)}
EVAL_SETS = ("synth_val", "test")


@dataclass(frozen=True)
class SynthSizes:
    """Clips per set."""

    synth_train: int
    weak: int
    unlabeled: int
    synth_val: int
    test: int
    strong_real: int = 0  # the real-strong stand-in; 0 = none


SIZES: dict[str, SynthSizes] = {
    "tiny": SynthSizes(synth_train=24, weak=12, unlabeled=24, synth_val=12, test=12, strong_real=16),
    "small": SynthSizes(synth_train=400, weak=200, unlabeled=400, synth_val=100, test=100, strong_real=240),
}

#: Probability of a real speech segment (when ``speech_dir`` is given) instead of synthetic babble.
REAL_SPEECH_PROBABILITY = 0.5
SHORT_TEST_FRACTION = 0.12  # DESED: 102 / 1168 validation clips are shorter than 10 s
EMPTY_TEST_FRACTION = 0.04  # DESED: 15 / 1168 validation clips have no event
SNR_DB = (3.0, 24.0)  # event level above the background, per event
BACKGROUND_DBFS = (-50.0, -35.0)
# strong_real stands in for real recordings: louder rooms, quieter events than the soundscapes
REAL_STRONG_SNR_DB = (0.0, 18.0)
REAL_STRONG_BACKGROUND_DBFS = (-45.0, -30.0)
MIN_GAP_MS = 100  # same-class events never overlap and stay this far apart


@dataclass
class ClipResult:
    set_name: str
    filename: str
    num_samples: int
    events: list[tuple[float, float, str]]  # seconds, on the 1 ms grid


# ----------------------------------------------------------------------------------- one clip
def _clip_rng(seed: int, set_name: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, _SET_CODES[set_name], index])


def _plan_events(rng: np.random.Generator, clip_ms: int, first_class: str) -> list[tuple[int, int, str]]:
    """Random events (onset_ms, offset_ms, label): 1–4 per clip, the first of ``first_class``."""
    n_events = int(rng.choice([1, 2, 3, 4], p=[0.3, 0.35, 0.25, 0.1]))
    events: list[tuple[int, int, str]] = []
    for k in range(n_events):
        label = first_class if k == 0 else DESED_CLASSES[int(rng.integers(len(DESED_CLASSES)))]
        lo, hi = src.DURATIONS[label]
        for _ in range(10):  # a few tries to avoid overlapping an event of the same class
            dur = int(round(rng.uniform(lo, min(hi, clip_ms / 1000)) * 1000))
            dur = max(min(dur, clip_ms), 300 if clip_ms >= 300 else clip_ms)
            onset = int(rng.integers(0, clip_ms - dur + 1))
            clash = any(
                lab == label and onset < off + MIN_GAP_MS and on < onset + dur + MIN_GAP_MS
                for on, off, lab in events
            )
            if not clash:
                events.append((onset, onset + dur, label))
                break
    return sorted(events)


def render_clip(
    seed: int, set_name: str, index: int, first_class: str, bank: src.SourceBank | None, real_probability: dict[str, float]
) -> tuple[np.ndarray, ClipResult]:
    """Waveform (n,) float32 and labels of clip ``index`` of ``set_name`` (deterministic)."""
    rng = _clip_rng(seed, set_name, index)
    clip_ms = CLIP_MS
    empty = False
    if set_name == "test":
        if rng.uniform() < SHORT_TEST_FRACTION:
            clip_ms = int(rng.integers(40, 100)) * 100  # 4.0–9.9 s, on DESED's 0.1 s durations grid
        empty = index % round(1 / EMPTY_TEST_FRACTION) == 1  # deterministic share, ≥ 1 per test set
    n = clip_ms * SR // 1000
    real = set_name == "strong_real"
    bg_level = 10 ** (rng.uniform(*(REAL_STRONG_BACKGROUND_DBFS if real else BACKGROUND_DBFS)) / 20)
    mix = src.background(n, rng) * bg_level
    events: list[tuple[float, float, str]] = []
    for onset_ms, offset_ms, label in ([] if empty else _plan_events(rng, clip_ms, first_class)):
        start = onset_ms * SR // 1000
        length = (offset_ms - onset_ms) * SR // 1000
        wave = src.render_event(label, length, rng, bank, real_probability.get(label, 1.0))
        gain = bg_level * 10 ** (rng.uniform(*(REAL_STRONG_SNR_DB if real else SNR_DB)) / 20)
        length = len(wave)  # a real recording may be shorter than planned
        mix[start : start + length] += gain * wave
        offset_ms = onset_ms + int(np.ceil(length * 1000 / SR))
        events.append((onset_ms / 1000, offset_ms / 1000, label))
    peak = float(np.max(np.abs(mix)))
    if peak > 0.95:  # keep 16-bit headroom; labels do not depend on the level
        mix *= 0.95 / peak
    result = ClipResult(set_name, f"{set_name}_{index:05d}.wav", n, sorted(events))
    return mix.astype(np.float32), result


_WORKER: dict = {}


def _init_worker(seed: int, banks: dict[str, src.SourceBank | None], real_probability: dict, audio_dirs: dict) -> None:
    _WORKER.update(seed=seed, banks=banks, real_probability=real_probability, audio_dirs=audio_dirs)


def _make_clip(task: tuple[str, int, str]) -> ClipResult:
    set_name, index, first_class = task
    bank = _WORKER["banks"].get("eval" if set_name in EVAL_SETS else "train")
    wave, result = render_clip(_WORKER["seed"], set_name, index, first_class, bank, _WORKER["real_probability"])
    path = Path(_WORKER["audio_dirs"][set_name]) / result.filename
    if not path.is_file():  # resumable: clips already written are identical by construction
        write_wav(path, wave, SR)
    return result


# ----------------------------------------------------------------------------------- the corpus
def _first_classes(seed: int, set_name: str, n: int) -> list[str]:
    """Round-robin over a seeded class order: every set with ≥ 10 clips covers all classes."""
    order = np.random.default_rng([seed, _SET_CODES[set_name], 10**6]).permutation(len(DESED_CLASSES))
    return [DESED_CLASSES[order[i % len(order)]] for i in range(n)]


def _strong_table(results: Sequence[ClipResult]) -> pd.DataFrame:
    rows = []
    for r in results:
        if not r.events:
            rows.append((r.filename, np.nan, np.nan, np.nan))
        rows.extend((r.filename, on, off, lab) for on, off, lab in r.events)
    return pd.DataFrame(rows, columns=["filename", "onset", "offset", "event_label"])


def _weak_text(results: Sequence[ClipResult]) -> str:
    lines = ["filename\tevent_labels\n"]
    for r in results:
        present = {lab for _, _, lab in r.events}
        lines.append(f"{r.filename}\t{','.join(c for c in DESED_CLASSES if c in present)}\n")
    return "".join(lines)


def _check_params(root: Path, params: dict) -> None:
    path = root / "synth.json"
    if path.is_file():
        old = json.loads(path.read_text())
        if "strong_real" not in old.get("sizes", {}):  # built before strong_real existed: its clips stay the same
            old = {**old, "sizes": {**old.get("sizes", {}), "strong_real": params["sizes"].get("strong_real", 0)}}
        if old != params:
            diff = ", ".join(f"{k} {old.get(k)!r} (asked {params.get(k)!r})" for k in sorted(set(old) | set(params)) if old.get(k) != params.get(k))
            raise AtstSedError(f"{root} already holds a synthetic corpus built with other settings: {diff}; use another --root or delete it")


def prepare_synth(
    root: str | PathLike[str],
    seed: int = 0,
    size: str = "tiny",
    sources: str = "synthetic",
    jobs: int | None = None,
    speech_dir: str | PathLike[str] | None = None,
    cache_dir: str | PathLike[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Build (or complete) the synthetic corpus under ``root``; returns ``fingerprint.json``'s content.

    Args:
        root: corpus folder (DCASE 2022 layout).
        seed: corpus seed; the same seed gives bit-identical files.
        size: ``"tiny"`` (84 clips, seconds) or ``"small"`` (1,200 clips, for ``make demo``).
        sources: ``"synthetic"`` (generators; plus real speech from ``speech_dir`` when given) or
            ``"real"`` (real recordings fetched by ``fetch_audio_sources.sh`` into ``cache_dir``;
            classes without real audio use stand-ins, listed in the corpus README).
        jobs: worker processes (default: all cores, 1 for tiny).
        speech_dir: optional folder of real speech WAVs mixed into the Speech events (default:
            none — Speech is synthetic babble, so the corpus depends on nothing outside the
            repository). Files with ``_en`` in their name go to the training sets, the rest to
            the evaluation sets, so no recording is shared between training and evaluation.
        progress: called as ``progress(done, total)`` after each clip.
    """
    if size not in SIZES:
        raise AtstSedError(f"unknown corpus size {size!r}; choose one of {', '.join(SIZES)}")
    if sources not in ("synthetic", "real"):
        raise AtstSedError(f"unknown sources {sources!r}; choose synthetic or real")
    root = Path(root)
    sizes = SIZES[size]
    real_probability: dict[str, float] = {}
    licences: list[str] = []
    if sources == "real":
        from atst_sed.data.real_sources import build_real_banks

        banks, stand_ins, licences, source_notes = build_real_banks(root, cache_dir, seed)
    else:
        banks, source_notes = _speech_banks(speech_dir)
        stand_ins = {}
        real_probability = {"Speech": REAL_SPEECH_PROBABILITY}
    params = {
        "generator": GENERATOR_VERSION,
        "seed": int(seed),
        "size": size,
        "sources": sources,
        "sizes": asdict(sizes),
        "source_files": source_notes,
    }
    _check_params(root, params)
    sets = tuple(name for name in SYNTH_SETS if getattr(sizes, name) > 0 or name != "strong_real")
    audio_dirs = {name: root / SETS[name].audio for name in sets}
    for folder in audio_dirs.values():
        folder.mkdir(parents=True, exist_ok=True)
    tasks = [
        (name, i, first)
        for name in sets
        for i, first in enumerate(_first_classes(seed, name, getattr(sizes, name)))
    ]
    jobs = jobs or (1 if size == "tiny" else (os.cpu_count() or 1))
    init_args = (int(seed), banks, real_probability, {k: str(v) for k, v in audio_dirs.items()})
    results: list[ClipResult] = []
    if jobs <= 1:
        _init_worker(*init_args)
        for task in tasks:
            results.append(_make_clip(task))
            if progress:
                progress(len(results), len(tasks))
    else:
        with ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker, initargs=init_args) as pool:
            for result in pool.map(_make_clip, tasks, chunksize=8):
                results.append(result)
                if progress:
                    progress(len(results), len(tasks))
    _write_metadata(root, results, sets)
    by_set = {name: [r for r in results if r.set_name == name] for name in sets}
    extra: dict = {}
    if "strong_real" in sets:  # ATST-SED's split of the real strong clips, drawn as for DESED without its lists
        extra["strong_real_split"] = write_strong_real_split(root)
        for part in SPLIT_SETS:
            names = set(read_strong_tsv(root / SETS[part].labels, DESED_CLASSES, merge_overlaps=False)["filename"])
            by_set[part] = [r for r in by_set["strong_real"] if r.filename in names]
        write_durations_tsv(root / SETS["strong_real_val"].durations, {r.filename: r.num_samples / SR for r in by_set["strong_real_val"]})
    sets = tuple(by_set)
    for name, items in by_set.items():
        write_manifest(
            root,
            name,
            (ManifestEntry(r.filename, f"{SETS[name].audio}/{r.filename}", r.num_samples / SR, r.num_samples) for r in items),
        )
    write_index(root, sets, {"classes": list(DESED_CLASSES), "corpus": "synthetic", **extra})
    atomic_write_text(root / "missing_files.tsv", "set\tfilename\treason\n")
    atomic_write_text(root / "README.md", _readme(params, by_set, stand_ins, licences))
    atomic_write_text(root / "synth.json", json.dumps(params, indent=2, sort_keys=True) + "\n")
    body = write_fingerprint(root, sets, 0, {"corpus": "synthetic", "seed": int(seed), "size": size, "sources": sources})
    log.info("synthetic corpus in %s: %s (%s)", root, body["sets"], body["fingerprint"])
    return body


def _speech_banks(speech_dir: str | PathLike[str] | None) -> tuple[dict[str, src.SourceBank | None], dict]:
    if speech_dir is None:
        return {"train": None, "eval": None}, {}
    folder = Path(speech_dir)
    files = sorted(folder.glob("*.wav")) if folder.is_dir() else []
    if not files:
        raise InputError(folder, "--speech-dir: no .wav file in this folder")
    train = [f for f in files if "_en" in f.stem] or files[:1]
    evals = [f for f in files if f not in train] or train
    notes = {"train": [f.name for f in train], "eval": [f.name for f in evals]}
    return {
        "train": src.load_bank({"Speech": [str(f) for f in train]}),
        "eval": src.load_bank({"Speech": [str(f) for f in evals]}),
    }, notes


def _write_metadata(root: Path, results: list[ClipResult], sets: Sequence[str]) -> None:
    by_set = {name: sorted((r for r in results if r.set_name == name), key=lambda r: r.filename) for name in sets}
    for name in ("synth_train", "synth_val", "test", "strong_real"):
        if name not in by_set:
            continue
        spec = SETS[name]
        write_events_tsv(root / spec.labels, _strong_table(by_set[name]))
        if spec.durations:
            write_durations_tsv(root / spec.durations, {r.filename: r.num_samples / SR for r in by_set[name]})
    atomic_write_text(root / SETS["weak"].labels, _weak_text(by_set["weak"]))
    listing = "".join(f"{r.filename}\n" for r in by_set["unlabeled"])
    atomic_write_text(root / SETS["unlabeled"].listing, "filename\n" + listing)


def _readme(params: dict, by_set: dict[str, list[ClipResult]], stand_ins: dict[str, str], licences: list[str]) -> str:
    counts = {c: 0 for c in DESED_CLASSES}
    for name, items in by_set.items():
        for r in items if name in SYNTH_SETS else ():  # the split sets repeat strong_real's clips
            for _, _, lab in r.events:
                counts[lab] += 1
    lines = [
        "# atst-sed synthetic DESED-like corpus",
        "",
        f"Built by `atst-sed prepare synth` ({params['generator']}): seed {params['seed']}, size "
        f"`{params['size']}`, sources `{params['sources']}`. The same command and seed rebuild it bit for bit.",
        "",
        "Layout and formats follow DCASE 2022 Task 4 (DESED): 16 kHz mono 16-bit WAV; strong labels",
        "`filename onset offset event_label` (seconds), weak labels `filename event_labels` (comma-separated),",
        "durations `filename duration`. The 10 DESED classes.",
        "",
        "| set | audio | labels | clips |",
        "|---|---|---|---|",
    ]
    for name in by_set:
        spec = SETS[name]
        labels = ", ".join(x for x in (spec.labels, spec.durations, spec.listing) if x)
        lines.append(f"| {name} | `{spec.audio}/` | `{labels}` | {len(by_set[name])} |")
    lines += [
        "",
        "Events per class (all sets): " + ", ".join(f"{c} {n}" for c, n in counts.items()) + ".",
        "",
        "Each clip: a room-tone background (pink-ish noise, sometimes mains hum) at −50…−35 dBFS and 1–4 events",
        f"at {SNR_DB[0]:g}–{SNR_DB[1]:g} dB above it, with class-typical durations between 0.3 and 10 s, overlaps",
        "between classes allowed, never within a class. The `validation` (test) set has clips shorter than 10 s",
        "and a few clips without events (an empty row in validation.tsv), as DESED's validation set does.",
        "",
        "`strong_real` stands in for DESED's real strong-labelled AudioSet clips: the same generators in louder",
        f"rooms ({REAL_STRONG_BACKGROUND_DBFS[0]:g}…{REAL_STRONG_BACKGROUND_DBFS[1]:g} dBFS) with quieter events "
        f"({REAL_STRONG_SNR_DB[0]:g}–{REAL_STRONG_SNR_DB[1]:g} dB above them);",
        "`strong_real_train` / `strong_real_val` split it as `prepare dcase22` splits DESED's without ATST-SED's lists",
        "(a seeded draw of 373/3373 of the clips for validation).",
        "",
        "Class signatures (synthetic generators, `atst_sed/data/sources.py`):",
        "Alarm_bell_ringing pulsed / two-tone AM tones 0.7–2.5 kHz; Blender broadband noise + ramping motor",
        "harmonics; Cat harmonic stack with glide and vibrato; Dishes decaying high-partial impacts; Dog short",
        "harmonic barks with a fast envelope; Electric_shaver_toothbrush bright buzz (f0 150–400 Hz); Frying",
        "high-passed crackle + hiss; Running_water modulated band noise + bubbles; Speech formant babble;",
        "Vacuum_cleaner low-passed noise + hum + whine.",
        "",
    ]
    if params["sources"] == "synthetic":
        notes = params.get("source_files") or {}
        if notes:
            lines += [
                "Real audio: Speech events are real speech segments (`--speech-dir`) with probability "
                f"{REAL_SPEECH_PROBABILITY:g} (training sets: {', '.join(notes.get('train', [])) or 'none'}; "
                f"evaluation sets: {', '.join(notes.get('eval', [])) or 'none'}).",
                "",
            ]
        else:
            lines += ["No real audio: every event, Speech included, comes from the generators above.", ""]
    else:
        lines += ["Real recordings were fetched from Debian/PyPI packages (see `licences/`); source FILES are split",
                  "between training sets and evaluation sets (no recording is in both).", ""]
        if stand_ins:
            lines += ["Stand-ins (classes without real recordings of the class itself):", ""]
            lines += [f"- {c}: {how}" for c, how in stand_ins.items()]
            lines.append("")
        if licences:
            lines += ["Licences of the packages used are kept in `licences/`: " + ", ".join(licences) + ".", ""]
    return "\n".join(lines)
