"""Fixtures of the evaluation tests (data in evaluation_helpers.py)."""

from __future__ import annotations

import pandas as pd
import pytest
from evaluation_helpers import DURATIONS, GT_ROWS


@pytest.fixture()
def gt() -> pd.DataFrame:
    return pd.DataFrame(GT_ROWS, columns=["filename", "onset", "offset", "event_label"])


@pytest.fixture()
def durations() -> dict[str, float]:
    return dict(DURATIONS)
