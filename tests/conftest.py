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


class _Payload:
    """Unpickling this runs ``Path(marker).touch()``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture
def bad_checkpoints(tmp_path: Path) -> dict:
    """Contents of unusable checkpoint files: ``truncated`` (half of a real ``torch.save`` file) and
    ``pickle`` (carries :class:`_Payload`, which would create ``marker`` if its code ran)."""
    import torch

    marker = tmp_path / "payload_ran"
    good, pickled = tmp_path / "good.ckpt", tmp_path / "pickled.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}, "loops": {}}, good)
    torch.save({"state_dict": {}, "hyper_parameters": _Payload(marker)}, pickled)
    return {"truncated": good.read_bytes()[: good.stat().st_size // 2], "pickle": pickled.read_bytes(), "marker": marker}
