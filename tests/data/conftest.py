"""Fixtures of the data tests: one tiny synthetic corpus per session."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    from atst_sed.data.synth import prepare_synth

    root = tmp_path_factory.mktemp("synth") / "tiny"
    prepare_synth(root, seed=0, size="tiny", jobs=1)
    return root
