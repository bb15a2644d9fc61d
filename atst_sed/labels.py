"""Label encoding in one place: class map, events ↔ frame targets (40 ms tokens), weak multi-hot.

Frame ``t`` covers ``[0.04 t, 0.04 (t + 1))`` seconds (the encoder's token grid, see
:mod:`atst_sed.features`). An event ``[onset, offset)`` activates frames
``floor(onset / 0.04) … ceil(offset / 0.04) - 1``; decoding a run of active frames ``[s, e)`` gives
``[0.04 s, 0.04 e)``. So events whose times lie on the 40 ms grid survive a round trip exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from atst_sed.errors import AtstSedError
from atst_sed.features import TOKENS_PER_SECOND, seconds_to_token, token_to_seconds

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

#: Frames (tokens) in a 10 s clip.
CLIP_FRAMES = 10 * TOKENS_PER_SECOND


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
    n_frames: int = CLIP_FRAMES,
    offset_seconds: float = 0.0,
) -> np.ndarray:
    """Frame targets (n_frames, C) float32 for the events of ONE clip.

    ``events`` has columns onset, offset (seconds) and event_label; rows with a missing label
    (a clip without events) are ignored. ``offset_seconds`` is the clip time of frame 0 (for crops):
    times are shifted by it first. Onset frame = floor, offset frame = ceil (exclusive), clipped to
    ``[0, n_frames]``; events entirely outside the window are dropped.
    """
    cmap = _as_class_map(class_map)
    target = np.zeros((n_frames, len(cmap)), dtype=np.float32)
    if len(events) == 0:
        return target
    rows = events.dropna(subset=["event_label"])
    shift = seconds_to_token(offset_seconds, "round") if offset_seconds else 0
    for onset, offset, label in zip(rows["onset"], rows["offset"], rows["event_label"]):
        start = seconds_to_token(float(onset), "floor") - shift
        end = seconds_to_token(float(offset), "ceil") - shift
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


def frames_to_events(
    binary: np.ndarray,
    classes: ClassMap | Sequence[str],
    filename: str,
    offset_seconds: float = 0.0,
    scores: np.ndarray | None = None,
) -> pd.DataFrame:
    """Decode binary frame decisions (T, C) into events, vectorised over frames.

    Each maximal run of active frames ``[s, e)`` of class ``c`` becomes one event with onset
    ``0.04 s + offset_seconds`` and offset ``0.04 e + offset_seconds`` (seconds, rounded to 1 µs).
    With ``scores`` (T, C) (probabilities), a ``score`` column holds the mean score over the event's
    frames. Returns columns filename, onset, offset, event_label[, score], sorted by onset then class.
    """
    names = _as_class_map(classes).names
    active = np.asarray(binary).astype(bool)
    if active.ndim != 2 or active.shape[1] != len(names):
        raise ValueError(f"binary must be (T, {len(names)}), got {active.shape}")
    n_t, n_c = active.shape
    padded = np.zeros((n_t + 2, n_c), dtype=np.int8)
    padded[1:-1] = active
    change = np.diff(padded, axis=0)  # (T + 1, C): +1 at run starts, -1 one past run ends
    # nonzero on the transposed array is class-major, so the k-th start and k-th end pair up.
    cls, starts = np.nonzero(change.T == 1)
    _, ends = np.nonzero(change.T == -1)
    columns = {
        "filename": [filename] * len(starts),
        "onset": np.round(token_to_seconds(starts.astype(np.float64)) + offset_seconds, 6),
        "offset": np.round(token_to_seconds(ends.astype(np.float64)) + offset_seconds, 6),
        "event_label": [names[c] for c in cls],
    }
    if scores is not None:
        probs = np.asarray(scores, dtype=np.float64)
        if probs.shape != active.shape:
            raise ValueError(f"scores shape {probs.shape} differs from binary shape {active.shape}")
        cumulative = np.zeros((n_t + 1, n_c), dtype=np.float64)
        np.cumsum(probs, axis=0, out=cumulative[1:])
        columns["score"] = (cumulative[ends, cls] - cumulative[starts, cls]) / (ends - starts)
    df = pd.DataFrame(columns)
    if len(df):
        df["_c"] = cls
        df = df.sort_values(["onset", "_c", "offset"], kind="stable").drop(columns="_c").reset_index(drop=True)
    return df
