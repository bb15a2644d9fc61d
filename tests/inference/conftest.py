"""Fixtures for the inference tests: tiny SED checkpoints and a WAV writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from atst_sed.models.checkpoint import save_checkpoint
from inference_helpers import CLASSES, loud_model, random_model


@pytest.fixture(scope="session")
def loud_ckpt(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "loud.ckpt"
    decoding = {"thresholds": [0.5] * len(CLASSES), "median_filter": [7] * len(CLASSES)}
    decoding["thresholds"][1] = 0.8  # the constant class stays silent by default
    return save_checkpoint(path, loud_model(), classes=CLASSES, decoding=decoding)


@pytest.fixture(scope="session")
def random_ckpt(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "random.ckpt"
    return save_checkpoint(path, random_model(), classes=CLASSES)


@pytest.fixture
def write_wav(tmp_path):
    def write(name: str, data: np.ndarray, sr: int = 16000, **kwargs) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, data, sr, **kwargs)
        return path

    return write
