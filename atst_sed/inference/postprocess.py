"""Post-processing of frame probabilities: per-class median filter, thresholds, events.

All frames are encoder tokens (40 ms, :data:`atst_sed.features.TOKEN_SECONDS`); layouts are
time-major ``(T, C)`` or ``(B, T, C)``.

The median filter has :func:`scipy.ndimage.median_filter` semantics (``mode="reflect"``; an even
size takes the upper median, as scipy does). Median filtering is a rank filter, so it commutes with
thresholding: ``median(p > t) == (median(p) > t)``. The DCASE baselines threshold first and filter
the binary decisions; we filter the scores once and threshold afterwards, which gives the same
events and lets :func:`decode_operating_points` score 50 thresholds with one filter per clip.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import scipy.ndimage

from atst_sed.features import token_to_seconds

EVENT_COLUMNS = ["filename", "onset", "offset", "event_label"]
SCORED_EVENT_COLUMNS = [*EVENT_COLUMNS, "score"]
DEFAULT_THRESHOLD = 0.5
DEFAULT_MEDIAN_FILTER = 7


def dcase2022_thresholds(n: int = 50) -> np.ndarray:
    """The DCASE 2022 operating points: ``n`` thresholds 1/(2n), 3/(2n), …, 1 - 1/(2n) (0.01 … 0.99)."""
    return np.arange(1 / (2 * n), 1, 1 / n)


def _per_class(value: float | int | Sequence[float] | np.ndarray, n_classes: int, what: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim == 0:
        return np.full(n_classes, arr.item())
    if arr.shape != (n_classes,):
        raise ValueError(f"{what}: expected one value or {n_classes} (one per class), got shape {arr.shape}")
    return arr


def median_filter(probs: np.ndarray, sizes: int | Sequence[int]) -> np.ndarray:
    """Median filter along time, one window size (in 40 ms frames) per class.

    ``probs`` (T, C) or (B, T, C); ``sizes`` one int or C ints (``<= 1`` = no filtering). Classes
    sharing a size are filtered in one :func:`scipy.ndimage.median_filter` call. Returns a new array
    of the same shape and dtype; each column equals ``scipy.ndimage.median_filter(probs[..., c],
    sizes[c])`` along time (``mode="reflect"``).
    """
    probs = np.asarray(probs)
    if probs.ndim not in (2, 3):
        raise ValueError(f"probs must be (T, C) or (B, T, C), got shape {probs.shape}")
    n_classes = probs.shape[-1]
    sizes_arr = _per_class(sizes, n_classes, "median filter sizes").astype(int)
    out = probs.copy()
    for size in np.unique(sizes_arr):
        if size <= 1:
            continue
        cols = np.flatnonzero(sizes_arr == size)
        window = (int(size), 1) if probs.ndim == 2 else (1, int(size), 1)
        out[..., cols] = scipy.ndimage.median_filter(probs[..., cols], size=window, mode="reflect")
    return out


def _frames_to_events():
    # The data area owns the one frames → events decoding (integer token arithmetic).
    from atst_sed.labels import frames_to_events

    return frames_to_events


def decode_events(
    probs: np.ndarray,
    classes: Sequence[str],
    thresholds: float | Sequence[float] = DEFAULT_THRESHOLD,
    median_sizes: int | Sequence[int] = DEFAULT_MEDIAN_FILTER,
    filename: str = "",
    offset_seconds: float = 0.0,
) -> pd.DataFrame:
    """Frame probabilities (T, C) → events ``[filename, onset, offset, event_label, score]``.

    Scores are median-filtered per class, then an event is a maximal run of frames with filtered
    score ``> threshold`` (strictly, as the DCASE baselines). ``score`` is the mean *unfiltered*
    probability over the event's frames. Onsets/offsets in seconds on the 40 ms grid, plus
    ``offset_seconds``. Sorted by onset, then label.
    """
    probs = np.asarray(probs, dtype=np.float32)
    if probs.ndim != 2 or probs.shape[1] != len(classes):
        raise ValueError(f"probs must be (T, {len(classes)}), got shape {probs.shape}")
    th = _per_class(thresholds, len(classes), "thresholds").astype(np.float32)
    binary = median_filter(probs, median_sizes) > th[None, :]
    events = _frames_to_events()(binary, list(classes), filename, offset_seconds=offset_seconds, scores=probs)
    events = events.reindex(columns=SCORED_EVENT_COLUMNS)
    return events.sort_values(["onset", "event_label"], kind="stable").reset_index(drop=True)


def decode_operating_points(
    scores: Mapping[str, np.ndarray],
    classes: Sequence[str],
    thresholds: Sequence[float] | np.ndarray | None = None,
    median_sizes: int | Sequence[int] = DEFAULT_MEDIAN_FILTER,
) -> dict[float, pd.DataFrame]:
    """Events at many thresholds (DCASE 2022 operating points) for many clips, fast.

    ``scores``: clip id (the ``filename`` written in the tables) → frame probabilities (T, C).
    ``thresholds``: default :func:`dcase2022_thresholds` (50). Each clip is median-filtered once;
    all thresholds are then decoded together with array operations. Returns threshold →
    DataFrame ``[filename, onset, offset, event_label]`` sorted by filename, onset, label; clips
    without events have no rows (the durations file lists them). Same events as
    :func:`decode_events` at each threshold.
    """
    th = np.asarray(dcase2022_thresholds() if thresholds is None else thresholds, dtype=np.float64)
    names = list(scores)
    if not names:
        return {float(t): pd.DataFrame(columns=EVENT_COLUMNS) for t in th}
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
    # Clips laid end to end, class-major (C, T_all), with one separator frame below every
    # threshold after each clip so that runs never cross clip boundaries.
    lengths = np.array([len(p) + 1 for p in arrays])
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    track = np.full((n_classes, int(lengths.sum())), -np.inf, dtype=np.float32)
    for i, p in enumerate(filtered):
        track[:, starts[i] : starts[i] + len(p)] = p.T

    per_th: list[list[np.ndarray]] = [[] for _ in th]
    chunk = max(1, int(2e8 // max(track.size, 1)))  # bound the (K, C, T_all) boolean cube to ~200 MB
    for k0 in range(0, len(th), chunk):
        ks = th[k0 : k0 + chunk].astype(np.float32)
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
            per_th[k0 + j] = [cls[sl], on[sl], off[sl]]

    labels = np.asarray(classes, dtype=object)
    name_arr = np.asarray(names, dtype=object)
    tables: dict[float, pd.DataFrame] = {}
    for t, (cls, on, off) in zip(th, per_th):
        clip = np.searchsorted(starts, on, side="right") - 1
        local_on, local_off = on - starts[clip], off - starts[clip]
        df = pd.DataFrame(
            {
                "filename": name_arr[clip],
                "onset": np.round(token_to_seconds(local_on.astype(np.float64)), 6),
                "offset": np.round(token_to_seconds(local_off.astype(np.float64)), 6),
                "event_label": labels[cls],
            }
        )
        df = df.sort_values(["filename", "onset", "event_label"], kind="stable").reset_index(drop=True)
        tables[float(round(t, 10))] = df
    return tables
