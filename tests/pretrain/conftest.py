"""Fixtures for the pretraining tests: tiny folders of real wav files (written with soundfile)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf


def write_clips(folder: Path, seconds: list[float], seed: int = 0) -> list[Path]:
    """Noise + a random tone per file, 16 kHz mono; every second file goes into a subfolder."""
    rng = np.random.default_rng(seed)
    paths = []
    for i, dur in enumerate(seconds):
        n = int(16000 * dur)
        t = np.arange(n) / 16000
        wav = 0.05 * rng.standard_normal(n) + 0.2 * np.sin(2 * np.pi * rng.uniform(200, 3000) * t)
        path = folder / ("sub" if i % 2 else "") / f"clip{i:02d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, wav.astype(np.float32), 16000)
        paths.append(path)
    return paths


@pytest.fixture(scope="session")
def wav_dir(tmp_path_factory) -> Path:
    """8 readable clips of 3–12 s (some shorter than 6 s and 10 s, some longer)."""
    folder = tmp_path_factory.mktemp("pretrain_wavs")
    write_clips(folder, [3.0, 10.0, 12.0, 7.5, 10.0, 4.0, 11.0, 10.0])
    return folder


@pytest.fixture(scope="session")
def wav_dir_with_bad(tmp_path_factory) -> Path:
    """4 readable clips and one file with a .wav name that is not audio."""
    folder = tmp_path_factory.mktemp("pretrain_bad")
    write_clips(folder, [10.0, 10.0, 10.0, 10.0], seed=1)
    (folder / "broken.wav").write_bytes(b"this is not a wav file")
    return folder
