"""atst-sed: sound event detection with ATST-Frame / ATST-Clip and ATST-SED.

The Python API (:mod:`atst_sed.api`)::

    from atst_sed import load_model
    model = load_model("atst-sed:stage2")
    events = model.detect("recording.wav")

``load_model``, ``Model`` and ``evaluate`` are imported on first use, so that ``import atst_sed``
(and the command line's start) stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from atst_sed.version import __version__

if TYPE_CHECKING:
    from atst_sed.api import Model, evaluate, load_model

_API = ("Model", "evaluate", "load_model")


def __getattr__(name: str) -> Any:
    if name in _API:
        from atst_sed import api

        return getattr(api, name)
    raise AttributeError(f"module 'atst_sed' has no attribute {name!r}")


__all__ = ["Model", "__version__", "evaluate", "load_model"]
