"""Fixtures for the submission tests: fake run folders, a real PDF report, META.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from submission_helpers import META, make_run


@pytest.fixture
def report_pdf(tmp_path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.backends.backend_pdf import PdfPages

    path = tmp_path / "report.pdf"
    with PdfPages(path) as pdf:
        fig = plt.figure(figsize=(4, 3))
        fig.text(0.1, 0.5, "ATST-SED technical report")
        pdf.savefig(fig)
        plt.close(fig)
    return path


@pytest.fixture
def meta_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "META.yaml"
    path.write_text(yaml.safe_dump(META, sort_keys=False))
    return path


@pytest.fixture
def runs(tmp_path: Path) -> list[Path]:
    """Three runs (different seeds) of one system."""
    return [make_run(tmp_path / "runs", f"seed{i}", seed=i, psds=(0.40 + 0.01 * i, 0.60 + 0.01 * i),
                     unprocessed=(i == 1)) for i in (1, 2, 3)]
