"""Frame probabilities → events: the one home of post-processing.

* :class:`Decoding` — decision thresholds and median-filter sizes per class, expanded once from
  "one value | one per class | ``{class: value}``" (defaults :data:`DEFAULT_THRESHOLD`,
  :data:`DEFAULT_MEDIAN_FILTER`); what checkpoints carry and ``detect`` applies.
* :func:`median_filter`, :func:`frames_to_events`, :func:`decode_events` — one clip.
* :func:`threshold_runs` — the one vectorised multi-threshold decoder, behind
  :func:`decode_operating_points` (probability arrays on a frame grid, the DCASE 2022 operating
  points of the test stage and validation) and :func:`scores_to_operating_points` (score tables as
  read from sed_scores_eval files, ``atst-sed evaluate``).
* :func:`dcase2022_thresholds` / :data:`DCASE2022_THRESHOLDS` — the 50 operating points.

Layouts are time-major ``(T, C)`` or ``(B, T, C)``; frames are a model's output frames on a
:class:`~atst_sed.timegrid.FrameGrid`, always given by the caller (a model's ``spec.grid``: 40 ms ATST, 64 ms ATST-SED).

The median filter has :func:`scipy.ndimage.median_filter` semantics (``mode="reflect"``; an even
size takes the upper median, as scipy does). Median filtering is a rank filter, so it commutes with
thresholding: ``median(p > t) == (median(p) > t)``. The DCASE baselines threshold first and filter
the binary decisions; we filter the scores once and threshold afterwards, which gives the same
events and lets :func:`decode_operating_points` score 50 thresholds with one filter per clip.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.ndimage

from atst_sed.errors import AtstSedError
from atst_sed.events import EVENT_COLUMNS, SCORED_EVENT_COLUMNS
from atst_sed.timegrid import FrameGrid

__all__ = [
    "DCASE2022_THRESHOLDS",
    "DEFAULT_MEDIAN_FILTER",
    "DEFAULT_THRESHOLD",
    "Decoding",
    "DecodingError",
    "dcase2022_thresholds",
    "decode_events",
    "decode_operating_points",
    "frames_to_events",
    "median_filter",
    "per_class",
    "scores_to_operating_points",
    "threshold_runs",
]

DEFAULT_THRESHOLD = 0.5
DEFAULT_MEDIAN_FILTER = 7  # frames (ATST: 0.28 s)

PerClass = float | int | Sequence[float] | Sequence[int] | np.ndarray | Mapping[str, float] | Mapping[str, int]


class DecodingError(AtstSedError, ValueError):
    """Decoding settings that do not fit the classes (one line; a ValueError for library callers)."""


def dcase2022_thresholds(n: int = 50) -> np.ndarray:
    """The DCASE 2022 operating points: ``n`` thresholds 1/(2n), 3/(2n), …, 1 - 1/(2n) (0.01 … 0.99)."""
    return np.arange(1 / (2 * n), 1, 1 / n)


#: The 50 DCASE 2022 operating-point thresholds rounded to their written form: 0.01, 0.03, ..., 0.99.
DCASE2022_THRESHOLDS: tuple[float, ...] = tuple(round(float(t), 2) for t in dcase2022_thresholds(50))


# ------------------------------------------------------------------------------------ settings
def per_class(value: PerClass | None, classes: Sequence[str] | int, what: str, base: Sequence | None = None) -> list:
    """One value per class from "one value | one per class | ``{class: value}``".

    ``classes``: the class names (or their number, when no mapping is given). A mapping replaces
    the named classes' entries of ``base``; None gives ``base``. Raises :class:`DecodingError` for
    unknown class names or a wrong number of values.
    """
    names = [f"class {i}" for i in range(classes)] if isinstance(classes, int) else list(classes)
    n = len(names)
    if value is None or isinstance(value, Mapping):
        if base is None:
            raise DecodingError(f"{what}: no values to start from")
        values = list(base)
        if len(values) != n:
            raise DecodingError(f"{what}: expected one value or {n} (one per class), got {len(values)}")
        for name, v in (value or {}).items():
            if isinstance(classes, int) or name not in names:
                raise DecodingError(f"{what}: unknown class {name!r} (classes: {', '.join(names)})")
            values[names.index(name)] = v
        return values
    arr = np.asarray(value)
    if arr.ndim == 0:
        return [arr.item()] * n
    if arr.shape != (n,):
        count = arr.shape[0] if arr.ndim == 1 else f"shape {arr.shape}"
        raise DecodingError(f"{what}: expected one value or {n} (one per class), got {count}")
    return arr.tolist()


@dataclass(frozen=True)
class Decoding:
    """Post-processing of one model's frame probabilities: per class a decision threshold
    (an event is a run of frames whose median-filtered probability is ``> threshold``) and a
    median-filter size in output frames (``<= 1``: none)."""

    classes: tuple[str, ...]
    thresholds: tuple[float, ...]
    median_filter: tuple[int, ...]

    @classmethod
    def for_classes(
        cls,
        classes: Sequence[str],
        thresholds: PerClass | None = None,
        median_filter: PerClass | None = None,
        base: "Decoding | None" = None,
    ) -> "Decoding":
        """Settings for ``classes``: each of ``thresholds`` / ``median_filter`` is one value, one per
        class, a ``{class: value}`` map over ``base`` (default: 0.5 / 7 for every class), or None
        (``base``'s values)."""
        classes = tuple(str(c) for c in classes)
        n = len(classes)
        th_base = base.thresholds if base is not None else [DEFAULT_THRESHOLD] * n
        mf_base = base.median_filter if base is not None else [DEFAULT_MEDIAN_FILTER] * n
        th = per_class(thresholds, classes, "thresholds", th_base)
        mf = per_class(median_filter, classes, "median filter", mf_base)
        return cls(classes, tuple(float(t) for t in th), tuple(int(m) for m in mf))

    @classmethod
    def from_dict(cls, classes: Sequence[str], data: Mapping[str, Any] | None) -> "Decoding":
        """The ``decoding`` entry of a checkpoint (``{"thresholds": [...], "median_filter": [...]}``,
        either may be missing)."""
        data = data or {}
        return cls.for_classes(classes, data.get("thresholds"), data.get("median_filter"))

    def to_dict(self) -> dict[str, list]:
        """What a checkpoint stores: ``{"thresholds": [C floats], "median_filter": [C ints]}``."""
        return {"thresholds": list(self.thresholds), "median_filter": list(self.median_filter)}

    def filtered(self, probs: np.ndarray) -> np.ndarray:
        """``probs`` (T, C) median-filtered with these sizes (float32): the post-processed scores
        that :meth:`events` thresholds, so ``filtered(p) > threshold`` gives its events exactly."""
        return median_filter(np.asarray(probs, dtype=np.float32), self.median_filter)

    def events(self, probs: np.ndarray, filename: str = "", *, grid: FrameGrid, top_k: int | None = None) -> pd.DataFrame:
        """:func:`decode_events` of ``probs`` (T, C) with these settings."""
        return decode_events(probs, self.classes, self.thresholds, self.median_filter, filename, grid=grid, top_k=top_k)


# ------------------------------------------------------------------------------------ one clip
def median_filter(probs: np.ndarray, sizes: int | Sequence[int]) -> np.ndarray:
    """Median filter along time, one window size (in frames) per class.

    ``probs`` (T, C) or (B, T, C); ``sizes`` one int or C ints (``<= 1`` = no filtering). Classes
    sharing a size are filtered in one :func:`scipy.ndimage.median_filter` call. Returns a new array
    of the same shape and dtype; each column equals ``scipy.ndimage.median_filter(probs[..., c],
    sizes[c])`` along time (``mode="reflect"``).
    """
    probs = np.asarray(probs)
    if probs.ndim not in (2, 3):
        raise ValueError(f"probs must be (T, C) or (B, T, C), got shape {probs.shape}")
    sizes_arr = np.asarray(per_class(sizes, probs.shape[-1], "median filter sizes")).astype(int)
    out = probs.copy()
    for size in np.unique(sizes_arr):
        if size <= 1:
            continue
        cols = np.flatnonzero(sizes_arr == size)
        window = (int(size), 1) if probs.ndim == 2 else (1, int(size), 1)
        out[..., cols] = scipy.ndimage.median_filter(probs[..., cols], size=window, mode="reflect")
    return out


def frames_to_events(
    binary: np.ndarray,
    classes: Sequence[str],
    filename: str,
    offset_seconds: float = 0.0,
    scores: np.ndarray | None = None,
    *,
    grid: FrameGrid,
) -> pd.DataFrame:
    """Decode binary frame decisions (T, C) into events, vectorised over frames.

    Each maximal run of active frames ``[s, e)`` of class ``c`` becomes one event from
    ``grid.frame_to_seconds(s) + offset_seconds`` to ``grid.frame_to_seconds(e) + offset_seconds``
    (seconds, rounded to 1 µs). With ``scores`` (T, C) (probabilities), a ``score`` column holds the
    mean score over the event's frames. Returns columns filename, onset, offset, event_label[, score],
    sorted by onset then class.
    """
    names = list(classes)
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
        "onset": np.round(grid.frame_to_seconds(starts.astype(np.float64)) + offset_seconds, 6),
        "offset": np.round(grid.frame_to_seconds(ends.astype(np.float64)) + offset_seconds, 6),
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


def decode_events(
    probs: np.ndarray,
    classes: Sequence[str],
    thresholds: float | Sequence[float] = DEFAULT_THRESHOLD,
    median_sizes: int | Sequence[int] = DEFAULT_MEDIAN_FILTER,
    filename: str = "",
    offset_seconds: float = 0.0,
    *,
    grid: FrameGrid,
    top_k: int | None = None,
) -> pd.DataFrame:
    """Frame probabilities (T, C) → events ``[filename, onset, offset, event_label, score]``.

    Scores are median-filtered per class, then an event is a maximal run of frames with filtered
    score ``> threshold`` (strictly, as the DCASE baselines). ``top_k``: in each frame only the
    ``top_k`` classes with the highest filtered scores may be active (ties: the lower class index).
    ``score`` is the mean *unfiltered* probability over the event's frames. Onsets/offsets in seconds
    on ``grid``, plus ``offset_seconds``. Sorted by onset, then label.
    """
    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim != 2 or probs.shape[1] != len(classes):
        raise ValueError(f"probs must be (T, {len(classes)}), got shape {probs.shape}")
    th = np.asarray(per_class(thresholds, len(classes), "thresholds")).astype(np.float32)
    filtered = median_filter(probs, median_sizes)
    binary = filtered > th[None, :]
    if top_k is not None and top_k < len(classes):
        rank = np.argsort(np.argsort(-filtered, axis=1, kind="stable"), axis=1, kind="stable")
        binary &= rank < top_k
    events = frames_to_events(binary, list(classes), filename, offset_seconds=offset_seconds, scores=probs, grid=grid)
    events = events.reindex(columns=list(SCORED_EVENT_COLUMNS))
    return events.sort_values(["onset", "event_label"], kind="stable").reset_index(drop=True)


# ------------------------------------------------------------------------- many thresholds at once
Runs = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def threshold_runs(tracks: Sequence[np.ndarray], thresholds: Sequence[float] | np.ndarray) -> list[Runs]:
    """Runs of frames above each threshold in many (T_i, C) tracks, with array operations only.

    Comparisons are ``score > threshold`` in the tracks' dtype (thresholds are cast to it). Returns,
    per threshold, four int arrays ``(track, class, first frame, one past the last frame)``,
    ordered by class, then track, then frame.
    """
    dtype = np.result_type(*tracks) if tracks else np.float64
    n_classes = tracks[0].shape[1] if tracks else 0
    # Tracks laid end to end, class-major (C, T_all), with one separator frame below every
    # threshold after each track so that runs never cross track boundaries.
    lengths = np.array([len(t) + 1 for t in tracks], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    track = np.full((n_classes, int(lengths.sum())), -np.inf, dtype=dtype)
    for i, t in enumerate(tracks):
        track[:, starts[i] : starts[i] + len(t)] = t.T

    th = np.asarray(thresholds, dtype=np.float64)
    out: list[Runs] = []
    chunk = max(1, int(2e8 // max(track.size, 1)))  # bound the (K, C, T_all) cube to ~200 MB
    for k0 in range(0, len(th), chunk):
        ks = th[k0 : k0 + chunk].astype(dtype)
        above = np.zeros((len(ks), n_classes, track.shape[1] + 1), dtype=np.int8)
        np.greater(track[None], ks[:, None, None], out=above[:, :, 1:].view(bool))
        edges = np.diff(above, axis=-1, append=np.int8(0)).ravel()  # +1 at run starts, -1 one past run ends
        flat = np.flatnonzero(edges)
        rising = edges[flat] == 1
        # In (k, class, time) order every start is followed by its own end.
        k_on, cls, on = np.unravel_index(flat[rising], above.shape)
        off = np.unravel_index(flat[~rising], above.shape)[2]
        bounds = np.searchsorted(k_on, np.arange(len(ks) + 1))
        for j in range(len(ks)):
            sl = slice(bounds[j], bounds[j + 1])
            which = np.searchsorted(starts, on[sl], side="right") - 1
            out.append((which, cls[sl], on[sl] - starts[which], off[sl] - starts[which]))
    return out


def decode_operating_points(
    scores: Mapping[str, np.ndarray],
    classes: Sequence[str],
    thresholds: Sequence[float] | np.ndarray | None = None,
    median_sizes: int | Sequence[int] = DEFAULT_MEDIAN_FILTER,
    *,
    grid: FrameGrid,
) -> dict[float, pd.DataFrame]:
    """Events at many thresholds (DCASE 2022 operating points) for many clips, fast.

    ``scores``: clip id (the ``filename`` written in the tables) → frame probabilities (T, C) on
    ``grid``. ``thresholds``: default :func:`dcase2022_thresholds` (50). Each clip is median-filtered
    once; all thresholds are then decoded together (:func:`threshold_runs`). Returns threshold →
    DataFrame ``[filename, onset, offset, event_label]`` sorted by filename, onset, label; clips
    without events have no rows (the durations file lists them). Same events as
    :func:`decode_events` at each threshold.
    """
    th = np.asarray(dcase2022_thresholds() if thresholds is None else thresholds, dtype=np.float64)
    names = list(scores)
    if not names:
        return {float(t): pd.DataFrame(columns=list(EVENT_COLUMNS)) for t in th}
    n_classes = len(classes)
    arrays = [np.asarray(scores[name], dtype=np.float32) for name in names]
    for name, p in zip(names, arrays):
        if p.ndim != 2 or p.shape[1] != n_classes:
            raise ValueError(f"scores of {name!r} must be (T, {n_classes}), got shape {p.shape}")
    # One median filter call per distinct clip length ((B, T, C) stack; edges reflect per clip).
    filtered: list[np.ndarray] = [np.empty(0)] * len(names)
    by_length: dict[int, list[int]] = {}
    for i, p in enumerate(arrays):
        by_length.setdefault(len(p), []).append(i)
    for idx in by_length.values():
        stacked = median_filter(np.stack([arrays[i] for i in idx]), median_sizes)
        for j, i in enumerate(idx):
            filtered[i] = stacked[j]

    labels = np.asarray(classes, dtype=object)
    name_arr = np.asarray(names, dtype=object)
    tables: dict[float, pd.DataFrame] = {}
    for t, (clip, cls, on, off) in zip(th, threshold_runs(filtered, th)):
        df = pd.DataFrame(
            {
                "filename": name_arr[clip],
                "onset": np.round(grid.frame_to_seconds(on.astype(np.float64)), 6),
                "offset": np.round(grid.frame_to_seconds(off.astype(np.float64)), 6),
                "event_label": labels[cls],
            }
        )
        df = df.sort_values(["filename", "onset", "event_label"], kind="stable").reset_index(drop=True)
        tables[float(round(t, 10))] = df
    return tables


def scores_to_operating_points(
    scores: Mapping[str, pd.DataFrame], thresholds: Sequence[float],
) -> dict[float, pd.DataFrame]:
    """Threshold score tables (sed_scores_eval format: ``onset offset <classes...>``) into one event
    table per threshold.

    Same decoding as ``sed_scores_eval.base_modules.detection.scores_to_event_list`` (an event is
    a run of frames with score ``> threshold``; onset = first frame's onset, offset = last
    frame's offset; tests check the two agree), vectorised by :func:`threshold_runs` (the library's
    per-clip, per-threshold call takes ~1 min at DESED scale). No median filter here: score files
    are expected to be post-processed already (as DCASE 2023+ / ATST-SED write them).

    Returns:
        ``{threshold: DataFrame[filename (clip id), onset, offset, event_label]}``, rows by clip
        (in the order of ``scores``), class, onset.
    """
    levels = np.asarray([float(t) for t in thresholds], dtype=np.float64)
    names = list(scores)
    frames = [scores[n] for n in names]
    classes = [str(c) for c in frames[0].columns[2:]] if frames else []
    tracks = [f.iloc[:, 2:].to_numpy(np.float64) for f in frames]
    first = np.concatenate([[0], np.cumsum([len(t) for t in tracks])[:-1]]).astype(np.int64) if tracks else np.zeros(0, np.int64)
    onsets = np.concatenate([f["onset"].to_numpy(np.float64) for f in frames]) if frames else np.empty(0)
    offsets = np.concatenate([f["offset"].to_numpy(np.float64) for f in frames]) if frames else np.empty(0)
    labels = np.asarray(classes, dtype=object)
    name_arr = np.asarray(names, dtype=object)
    out = {}
    runs = threshold_runs(tracks, levels) if tracks else [(np.empty(0, int),) * 4 for _ in levels]
    for threshold, (clip, cls, on, off) in zip(levels, runs):
        order = np.lexsort((on, cls, clip))
        clip, cls, on, off = clip[order], cls[order], on[order], off[order]
        out[float(threshold)] = pd.DataFrame({
            "filename": name_arr[clip] if clip.size else np.empty(0, object),
            "onset": onsets[first[clip] + on] if clip.size else np.empty(0),
            "offset": offsets[first[clip] + off - 1] if clip.size else np.empty(0),
            "event_label": labels[cls] if clip.size else np.empty(0, object),
        })
    return out
