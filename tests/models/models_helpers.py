"""Shared pieces of the model-family tests: the committed golden set (tests/golden) and its inputs."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from atst_sed.models.checkpoint import LoadedCheckpoint, load_checkpoint

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
SYNTHETIC = ("synth_10s", "synth_3p6s")  # tests/golden/inputs/*.flac (always run)
REAL = ("speech_en_10s", "speech_zh_4s")  # ../shared/audio (skipped when absent)
SHORT = {"synth_3p6s": 57777, "speech_zh_4s": 67263}  # shorter than the 10-s window
# (golden folder, role) → the layout our loader must report
LAYOUTS = {
    ("audiossl_desed_frame", None): "audiossl-frame",
    ("audiossl_desed_clip", None): "audiossl-clip",
    ("audiossl_desed_c2f", None): "audiossl-c2f",
    ("audiossl_as_strong_frame", None): "audiossl-frame",
    ("atstsed_stage1", "teacher"): "atst-sed",
    ("atstsed_stage1", "student"): "atst-sed",
    ("atstsed_stage2", "teacher"): "atst-sed",
    ("atstsed_stage2", "student"): "atst-sed",
}


def golden_checkpoint(folder: str) -> Path:
    return GOLDEN / folder / "checkpoint.ckpt"


@lru_cache(maxsize=None)
def official(folder: str, role: str | None) -> LoadedCheckpoint:
    """The golden checkpoint, loaded once per test session."""
    return load_checkpoint(golden_checkpoint(folder), role=role)


def read_input(name: str, shared_audio: Path | None = None) -> np.ndarray:
    """float32 mono samples of a golden input (synthetic: committed FLAC; real: ../shared/audio)."""
    path = GOLDEN / "inputs" / f"{name}.flac" if name in SYNTHETIC else shared_audio / f"{name}.wav"
    wave, sr = sf.read(path, dtype="float32")
    assert sr == 16000
    return wave


def golden_arrays(folder: str, name: str) -> dict[str, np.ndarray]:
    with np.load(GOLDEN / folder / f"{name}.npz") as data:
        return dict(data)


@torch.no_grad()
def run(model, wave: np.ndarray, short_clips: str):
    """(features, output) of ``model`` on one clip."""
    features = model.features(torch.from_numpy(wave), short_clips=short_clips)
    return features, model(*features)


def max_abs(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max())
