"""Corpora (synthetic, DESED), manifests, datasets, batch composition and the Lightning DataModule.

``from atst_sed.data import DataConfig, SEDDataModule`` (imported lazily: preparing a corpus does not
need Lightning).
"""

from __future__ import annotations

__all__ = ["DataConfig", "SEDDataModule"]


def __getattr__(name: str):
    if name in __all__:
        from atst_sed.data import datamodule

        return getattr(datamodule, name)
    raise AttributeError(f"module 'atst_sed.data' has no attribute {name!r}")
