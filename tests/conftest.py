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


@pytest.fixture
def report_pdf(tmp_path: Path) -> Path:
    """A real one-page PDF (matplotlib), e.g. a submission's technical report."""
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    path = tmp_path / "report.pdf"
    with PdfPages(path) as pdf:
        fig = plt.figure(figsize=(4, 3))
        fig.text(0.1, 0.5, "ATST-SED technical report")
        pdf.savefig(fig)
        plt.close(fig)
    return path
