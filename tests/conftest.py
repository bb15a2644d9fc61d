"""Suite-wide test settings: offline, CPU, deterministic, headless plots."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("PYTHONHASHSEED", "0")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(autouse=True)
def _seeded_cpu():
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    yield


@pytest.fixture(scope="session")
def shared_audio() -> Path:
    """The real recordings beside the repository (``../shared/audio``)."""
    folder = SHARED / "audio"
    if not folder.is_dir():
        pytest.skip("../shared/audio is not present beside the repository")
    return folder
