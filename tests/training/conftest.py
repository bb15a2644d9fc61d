"""Session fixture of the training tests: the tiny synthetic corpus, built once."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """``atst-sed prepare synth --size tiny`` (84 clips, DCASE 2022 layout) in a session folder."""
    from atst_sed.data.synth import prepare_synth

    root = tmp_path_factory.mktemp("training_corpus") / "synth"
    prepare_synth(root, seed=0, size="tiny", jobs=1)
    return root
