"""Fixtures for the submission tests: fake run folders and a META.yaml (the PDF report is suite-wide)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from submission_helpers import META, make_run


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
