"""Label encoding in one place: class map, events → frame targets on a model's grid, weak multi-hot.

On a :class:`~atst_sed.timegrid.FrameGrid` with frames of ``h`` seconds (ATST: 0.04), frame ``t``
covers ``[h t, h (t + 1))``. An event ``[onset, offset)`` activates frames
``floor(onset / h) … ceil(offset / h) - 1``; decoding a run of active frames ``[s, e)``
(:func:`atst_sed.decoding.frames_to_events`) gives ``[h s, h e)``. So events whose times lie on the
grid survive a round trip exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from atst_sed.errors import AtstSedError
from atst_sed.timegrid import FrameGrid

#: The 10 DCASE 2022 Task 4 (DESED) classes in the official order (index = position).
DESED_CLASSES: tuple[str, ...] = (
    "Alarm_bell_ringing",
    "Blender",
    "Cat",
    "Dishes",
    "Dog",
    "Electric_shaver_toothbrush",
    "Frying",
    "Running_water",
    "Speech",
    "Vacuum_cleaner",
)

class ClassMap:
    """Ordered class names ↔ column indices."""

    def __init__(self, classes: Iterable[str] = DESED_CLASSES):
        self._names = tuple(str(c) for c in classes)
        if not self._names:
            raise AtstSedError("the class list is empty")
        if len(set(self._names)) != len(self._names):
            raise AtstSedError(f"duplicate class names in {list(self._names)}")
        self._index = {name: i for i, name in enumerate(self._names)}

    @property
    def names(self) -> tuple[str, ...]:
        return self._names

    def index(self, name: str) -> int:
        """Column of class ``name``; unknown names raise ``KeyError`` naming the known classes."""
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(f"unknown class {name!r}; known: {', '.join(self._names)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __len__(self) -> int:
        return len(self._names)

    def __iter__(self):
        return iter(self._names)

    def __repr__(self) -> str:
        return f"ClassMap({list(self._names)})"


def _as_class_map(class_map: ClassMap | Sequence[str]) -> ClassMap:
    return class_map if isinstance(class_map, ClassMap) else ClassMap(class_map)


def events_to_frames(
    events: pd.DataFrame,
    class_map: ClassMap | Sequence[str],
    n_frames: int,
    offset_seconds: float = 0.0,
    *,
    grid: FrameGrid,
) -> np.ndarray:
    """Frame targets (n_frames, C) float32 for the events of ONE clip, on ``grid``.

    ``events`` has columns onset, offset (seconds) and event_label; rows with a missing label
    (a clip without events) are ignored. ``offset_seconds`` is the clip time of frame 0 (for crops,
    on the grid): times are shifted by it first. Onset frame = floor, offset frame = ceil
    (exclusive), clipped to ``[0, n_frames]``; events entirely outside the window are dropped.
    """
    cmap = _as_class_map(class_map)
    target = np.zeros((n_frames, len(cmap)), dtype=np.float32)
    if len(events) == 0:
        return target
    rows = events.dropna(subset=["event_label"])
    shift = grid.seconds_to_frame(offset_seconds, "round") if offset_seconds else 0
    for onset, offset, label in zip(rows["onset"], rows["offset"], rows["event_label"]):
        start = grid.seconds_to_frame(float(onset), "floor") - shift
        end = grid.seconds_to_frame(float(offset), "ceil") - shift
        start, end = max(start, 0), min(end, n_frames)
        if end > start:
            target[start:end, cmap.index(label)] = 1.0
    return target


def weak_multi_hot(labels: Iterable[str], class_map: ClassMap | Sequence[str]) -> np.ndarray:
    """Clip-level multi-hot vector (C,) float32 of class names ``labels``."""
    cmap = _as_class_map(class_map)
    out = np.zeros(len(cmap), dtype=np.float32)
    for label in labels:
        out[cmap.index(label)] = 1.0
    return out
