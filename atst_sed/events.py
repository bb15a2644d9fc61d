"""Event tables in DESED's TSV formats (strong labels, weak labels, clip durations) and the events
CSV of ``atst-sed detect``.

All times are seconds (float). Strong tables are pandas DataFrames with the columns
``filename, onset, offset, event_label``; a clip without events is one row whose onset, offset and
label are NaN (DESED's convention: empty fields). Readers check their input and raise
:class:`~atst_sed.errors.InputError` naming the file and the 1-based line of the problem (the
header is line 1). Writers are atomic (temporary file + rename).
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd

from atst_sed.audio import AUDIO_EXTENSIONS
from atst_sed.errors import InputError
from atst_sed.fileio import atomic_write_text

__all__ = [
    "EVENT_COLUMNS",
    "OFFSET_TOLERANCE_SECONDS",
    "SCORED_EVENT_COLUMNS",
    "check_event_tables",
    "clip_id",
    "duplicated_events",
    "events_past_end",
    "first_overlap",
    "lookup_duration",
    "merge_overlapping_events",
    "read_durations_tsv",
    "read_strong_tsv",
    "read_weak_tsv",
    "repeated_columns",
    "events_csv_text",
    "write_durations_tsv",
    "write_events_csv",
    "write_events_tsv",
]

log = logging.getLogger(__name__)

EVENT_COLUMNS = ("filename", "onset", "offset", "event_label")
#: The header of Google's AudioSet-strong release (``audioset_eval_strong.tsv``: ``segment_id
#: start_time_seconds end_time_seconds label``, labels are MIDs) → ours; read as a strong TSV.
AUDIOSET_STRONG_COLUMNS = {"segment_id": "filename", "start_time_seconds": "onset",
                           "end_time_seconds": "offset", "label": "event_label"}
#: Detections: the event columns and the event's mean probability.
SCORED_EVENT_COLUMNS = (*EVENT_COLUMNS, "score")
#: Offsets up to this far past the clip's duration are clipped (with a warning), beyond it rejected.
OFFSET_TOLERANCE_SECONDS = 0.5
_EMPTY = {"", "nan", "NaN", "NAN", "none", "None"}

PathType = str | PathLike[str]


# ----------------------------------------------------------------------------------------- helpers
def clip_id(filename: str) -> str:
    """The clip's id: the file name without directory and audio extension (sed_scores_eval's key).

    ``"a/Y1_0.000_10.000.wav" -> "Y1_0.000_10.000"``; names without an audio extension are kept.
    """
    name = os.path.basename(str(filename))
    lower = name.lower()
    for suffix in AUDIO_EXTENSIONS:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def lookup_duration(durations: Mapping[str, float], filename: str) -> float | None:
    """Duration (s) of ``filename`` in ``durations``, matching with or without the audio extension."""
    if filename in durations:
        return float(durations[filename])
    by_id = _durations_by_id(durations)
    value = by_id.get(clip_id(filename))
    return None if value is None else float(value)


def _durations_by_id(durations: Mapping[str, float]) -> dict[str, float]:
    return {clip_id(k): float(v) for k, v in durations.items()}


def repeated_columns(header: Sequence[str]) -> list[str]:
    """Column names that occur more than once in a header, in order of first appearance.

    pandas silently renames repeats (``onset``, ``onset.1``), so readers check the raw header.
    """
    names = [str(c).strip() for c in header]
    return list(dict.fromkeys(c for c in names if names.count(c) > 1))


def _read_table(path: PathType, required: Sequence[str], sep: str = "\t") -> pd.DataFrame:
    """Read a tab-separated (or, with ``sep=","``, comma-separated) file as strings; row ``i`` of the
    result is line ``i + 2`` of the file.

    Blank lines are dropped after line numbers are assigned (kept in the ``_line`` column).
    """
    path = Path(path)
    kind = "tab-separated" if sep == "\t" else "comma-separated"
    if not path.is_file():
        raise InputError(path, "file not found")
    with path.open(encoding="utf-8", errors="replace") as handle:
        repeated = repeated_columns(handle.readline().rstrip("\r\n").split(sep))
    if repeated:
        raise InputError(path, f"column name {repeated[0]!r} appears more than once in the header",
                         line=1)
    try:
        table = pd.read_csv(
            path, sep=sep, dtype=str, keep_default_na=False, skip_blank_lines=False,
            # DESED's TSV files never quote; a CSV quotes names that hold a comma (pandas, csv module)
            quoting=3 if sep == "\t" else 0,
        )
    except pd.errors.EmptyDataError:
        raise InputError(path, "empty file (no header)", line=1) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise InputError(path, f"not a readable {kind} table ({err})") from None
    table.columns = [str(c).strip() for c in table.columns]
    if not set(required) & set(table.columns) and set(AUDIOSET_STRONG_COLUMNS) <= set(table.columns):
        table = table.rename(columns=AUDIOSET_STRONG_COLUMNS)
    missing = [c for c in required if c not in table.columns]
    if missing:
        found = ", ".join(table.columns) or "nothing"
        raise InputError(
            path, f"missing column(s) {', '.join(missing)} (found {found}); "
            f"expected a {kind} header with {', '.join(required)}", line=1,
        )
    table = table[list(required)].apply(lambda col: col.str.strip())
    table["_line"] = np.arange(len(table)) + 2
    blank = (table[list(required)] == "").all(axis=1)
    return table[~blank].reset_index(drop=True)


def _to_float(values: pd.Series) -> np.ndarray:
    return pd.to_numeric(values.where(~values.isin(_EMPTY), None), errors="coerce").to_numpy(float)


def _first_line(table: pd.DataFrame, mask: np.ndarray) -> int:
    return int(table["_line"].to_numpy()[np.flatnonzero(mask)[0]])


# ------------------------------------------------------------------------------------ strong labels
def read_strong_tsv(
    path: PathType,
    classes: Sequence[str] | None = None,
    durations: Mapping[str, float] | None = None,
    merge_overlaps: bool = False,
    clip_to_durations: bool = False,
    sep: str = "\t",
) -> pd.DataFrame:
    """Read a strong-label (or detection) TSV: ``filename onset offset event_label`` in seconds.

    Columns may come in any order; others (``index``, ``score``, ...) are ignored. The header of
    Google's AudioSet-strong release (``segment_id start_time_seconds end_time_seconds label``) is
    read as these four columns (:data:`AUDIOSET_STRONG_COLUMNS`). A row with an
    empty onset, offset and label is a clip without events and is kept as one NaN row. By default
    the events come back exactly as written (what evaluators score); the two options below
    adapt them to a clip's frame grid, for training labels.

    Args:
        path: the TSV file.
        classes: when given, every label must be one of them.
        durations: clip durations in seconds (keys with or without the audio extension); when
            given, every file must be known.
        merge_overlaps: merge overlapping events of the same class in a clip (warning).
        clip_to_durations: with ``durations``, clip offsets past the duration by at most
            ``OFFSET_TOLERANCE_SECONDS`` (warning), drop events starting at or after it, reject
            offsets further out. Without it such events are kept as written
            (see :func:`events_past_end`).
        sep: the column separator: ``"\t"`` (DESED) or ``","`` (the CSV ``atst-sed detect`` writes).

    Returns:
        DataFrame with columns filename (str), onset, offset (float64 s), event_label (str/NaN),
        in file order.

    Raises:
        InputError: naming the file and line of the first problem.
    """
    table = _read_table(path, EVENT_COLUMNS, sep)
    lines = table["_line"].to_numpy()
    names = table["filename"]
    if (names == "").any():
        raise InputError(path, "empty filename", line=_first_line(table, (names == "").to_numpy()))
    onset_raw, offset_raw, label_raw = table["onset"], table["offset"], table["event_label"]
    onset, offset = _to_float(onset_raw), _to_float(offset_raw)
    label_empty = label_raw.isin(_EMPTY).to_numpy()
    onset_empty, offset_empty = onset_raw.isin(_EMPTY).to_numpy(), offset_raw.isin(_EMPTY).to_numpy()
    no_event = label_empty & onset_empty & offset_empty

    for column, raw, values, empty in (
        ("onset", onset_raw, onset, onset_empty), ("offset", offset_raw, offset, offset_empty),
    ):
        bad = ~no_event & ~empty & ~np.isfinite(values)
        if bad.any():
            i = np.flatnonzero(bad)[0]
            raise InputError(path, f"{column} {raw.iloc[i]!r} is not a number", line=int(lines[i]))
    partial = ~no_event & (onset_empty | offset_empty | label_empty)
    if partial.any():
        i = np.flatnonzero(partial)[0]
        what = [n for n, e in (("onset", onset_empty), ("offset", offset_empty),
                               ("event_label", label_empty)) if e[i]]
        raise InputError(
            path, f"empty {', '.join(what)} (a clip without events leaves onset, offset and "
            "event_label all empty)", line=int(lines[i]),
        )
    event = ~no_event
    bad = event & (onset < 0)
    if bad.any():
        i = np.flatnonzero(bad)[0]
        raise InputError(path, f"negative onset {onset[i]:g} s", line=int(lines[i]))
    bad = event & (onset >= offset)
    if bad.any():
        i = np.flatnonzero(bad)[0]
        raise InputError(path, f"onset {onset[i]:g} s is not before offset {offset[i]:g} s",
                         line=int(lines[i]))
    if classes is not None:
        known = set(classes)
        bad = event & ~label_raw.isin(known).to_numpy()
        if bad.any():
            i = np.flatnonzero(bad)[0]
            raise InputError(
                path, f"unknown class {label_raw.iloc[i]!r} (known: {', '.join(classes)})",
                line=int(lines[i]),
            )

    keep = np.ones(len(table), bool)
    if durations is not None:
        by_id = _durations_by_id(durations)
        ids = names.map(clip_id)
        clip_dur = np.array([durations.get(n, by_id.get(i, np.nan))
                             for n, i in zip(names, ids)], dtype=float)
        unknown = np.isnan(clip_dur)
        if unknown.any():
            i = np.flatnonzero(unknown)[0]
            raise InputError(path, f"file {names.iloc[i]!r} is not in the durations table",
                             line=int(lines[i]))
    if durations is not None and clip_to_durations:
        too_long = event & (offset > clip_dur + OFFSET_TOLERANCE_SECONDS + 1e-9)
        if too_long.any():
            i = np.flatnonzero(too_long)[0]
            raise InputError(
                path, f"offset {offset[i]:g} s is beyond the clip's duration {clip_dur[i]:g} s",
                line=int(lines[i]),
            )
        over = event & (offset > clip_dur)
        if over.any():
            start_past = over & (onset >= clip_dur)
            log.warning(
                "%s: %d event offset(s) past the clip duration (within %.1f s) clipped to it "
                "(first at line %d)%s", path, int(over.sum()), OFFSET_TOLERANCE_SECONDS,
                _first_line(table, over),
                f"; {int(start_past.sum())} event(s) starting at/after the end dropped"
                if start_past.any() else "",
            )
            offset = np.where(over, clip_dur, offset)
            keep &= ~start_past

    result = pd.DataFrame({
        "filename": names.to_numpy(object),
        "onset": np.where(event, onset, np.nan),
        "offset": np.where(event, offset, np.nan),
        "event_label": np.where(event, label_raw.to_numpy(object), np.nan).astype(object),
    })[keep].reset_index(drop=True)
    if merge_overlaps:
        before = int(result["onset"].notna().sum())
        result = merge_overlapping_events(result)
        merged = before - int(result["onset"].notna().sum())
        if merged:
            log.warning("%s: merged %d overlapping same-class event(s)", path, merged)
    return result


def _sorted_by_clip_class(events: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Events only, sorted by (file, class, onset), with, per row, "first of its file and class"
    and the latest offset of the earlier events of its file and class (NaN for the first)."""
    ev = events[events["onset"].notna().to_numpy()]
    order = np.lexsort((ev["onset"].to_numpy(), ev["event_label"].astype(str).to_numpy(),
                        ev["filename"].astype(str).to_numpy()))
    ev = ev.iloc[order]
    key = ev["filename"].astype(str) + "\x00" + ev["event_label"].astype(str)
    new_key = (key != key.shift()).to_numpy()
    run_max = ev.groupby(key.to_numpy(), sort=False)["offset"].cummax().shift().to_numpy(float)
    run_max[new_key] = np.nan
    return ev, new_key, run_max


def merge_overlapping_events(events: pd.DataFrame) -> pd.DataFrame:
    """Merge overlapping events of the same class in the same clip (touching events stay apart).

    Args:
        events: DataFrame with filename, onset, offset, event_label (NaN rows = clips w/o events).

    Returns:
        Same columns; rows keep the position of the first event of each merged group.
    """
    if events.empty:
        return events.copy()
    is_event = events["onset"].notna().to_numpy()
    ev, new_key, run_max = _sorted_by_clip_class(events)
    starts = new_key | ~(ev["onset"].to_numpy() < run_max)
    if starts.all():
        return events.copy()
    group = np.cumsum(starts)
    merged = ev.assign(_g=group, _pos=ev.index).groupby("_g", sort=False).agg(
        filename=("filename", "first"), onset=("onset", "min"), offset=("offset", "max"),
        event_label=("event_label", "first"), _pos=("_pos", "min"),
    )
    empty = events[~is_event].assign(_pos=events.index[~is_event])
    out = pd.concat([merged, empty], ignore_index=True).sort_values("_pos", kind="stable")
    return out[list(EVENT_COLUMNS)].reset_index(drop=True)


def duplicated_events(events: pd.DataFrame) -> np.ndarray:
    """Mask (one entry per row) of events that repeat an earlier row exactly (file, times, class)."""
    is_event = events["onset"].notna().to_numpy()
    return is_event & events.duplicated(subset=list(EVENT_COLUMNS)).to_numpy()


def first_overlap(events: pd.DataFrame) -> tuple[int, int] | None:
    """The first two same-class events of one clip that overlap, as index labels of ``events``.

    psds_eval's rule (which sed_eval and the DCASE evaluations inherit): events overlap when their
    intersection is longer than zero; events that only touch, and exact duplicates, do not count.
    Returns None when there is no such pair.
    """
    unique = events[~duplicated_events(events)]
    ev, _, run_max = _sorted_by_clip_class(unique)
    overlapping = np.flatnonzero(ev["onset"].to_numpy() < run_max)  # NaN compares False
    if not overlapping.size:
        return None
    j = int(overlapping[0])
    # its partner: an earlier event of the same file and class that ends after it starts
    same = (ev["filename"].to_numpy()[:j] == ev["filename"].iat[j]) & (
        ev["event_label"].to_numpy()[:j] == ev["event_label"].iat[j])
    partner = np.flatnonzero(same & (ev["offset"].to_numpy()[:j] > ev["onset"].iat[j]))[0]
    return ev.index[partner], ev.index[j]


def events_past_end(events: pd.DataFrame, durations: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """Masks over the rows of ``events``: offset past the clip's duration, and onset at or after it.

    Clips missing from ``durations`` (keys with or without audio extension) count as neither.
    """
    by_id = _durations_by_id(durations)
    names = events["filename"].astype(str)
    clip_dur = np.array([durations.get(n, by_id.get(clip_id(n), np.nan)) for n in names], float)
    offset, onset = events["offset"].to_numpy(float), events["onset"].to_numpy(float)
    with np.errstate(invalid="ignore"):
        return offset > clip_dur, onset >= clip_dur


def check_event_tables(tables: Mapping[Path, pd.DataFrame], durations: Mapping[str, float],
                       what: str) -> None:
    """The input rule of evaluation, on event tables read as written with :func:`read_strong_tsv`:
    score exactly what the reference libraries score.

    Warns once per kind of finding over all ``tables`` (events past their clip's end, exact
    duplicates), each with a count and an example; raises :class:`InputError` naming the file for
    overlapping same-class events, which psds_eval refuses.
    """
    past_end = duplicates = n_events = 0
    starting_after = 0
    files_past: list[Path] = []
    example = dup_example = None
    worst = 0.0
    for path, table in tables.items():
        pair = first_overlap(table)
        if pair is not None:
            a, b = table.loc[pair[0]], table.loc[pair[1]]
            raise InputError(
                path, f"clip {a['filename']!r}: {a['event_label']} events {a['onset']:g}-{a['offset']:g} s "
                f"and {b['onset']:g}-{b['offset']:g} s overlap (psds_eval and sed_scores_eval refuse "
                "overlapping events of one class; merge them)")
        n_events += int(table["onset"].notna().sum())
        late, after = events_past_end(table, durations)
        if late.any():
            past_end += int(late.sum())
            starting_after += int(after.sum())
            files_past.append(path)
            overshoot = table["offset"].to_numpy(float)[late] - np.array(
                [lookup_duration(durations, n) for n in table["filename"][late]], float)
            worst = max(worst, float(overshoot.max()))
            if example is None:
                row = table[late].iloc[0]
                example = (f"{path}: {row['filename']} {row['event_label']} {row['onset']:g}-"
                           f"{row['offset']:g} s, clip {lookup_duration(durations, row['filename']):g} s")
        dup = duplicated_events(table)
        if dup.any():
            duplicates += int(dup.sum())
            if dup_example is None:
                row = table[dup].iloc[0]
                dup_example = f"{path}: {row['filename']} {row['event_label']} {row['onset']:g}-{row['offset']:g} s"
    if past_end:
        in_files = f" in {len(files_past)} of {len(tables)} files" if len(tables) > 1 else ""
        after = f"; {starting_after} start at or after it" if starting_after else ""
        log.warning("%s: %d of %d events%s run past their clip's end (by up to %.3g s%s), e.g. %s; "
                    "scored as written, as psds_eval does", what, past_end, n_events, in_files,
                    worst, after, example)
    if duplicates:
        log.warning("%s: %d event(s) repeat an earlier row exactly, e.g. %s; scored as written "
                    "(psds_eval counts each)", what, duplicates, dup_example)


# -------------------------------------------------------------------------------------- weak labels
def read_weak_tsv(path: PathType, classes: Sequence[str] | None = None) -> pd.DataFrame:
    """Read a weak-label TSV ``filename event_labels`` (labels comma-separated, may be empty).

    Returns:
        DataFrame [filename (str), event_labels (list[str], duplicates removed, order kept)].

    Raises:
        InputError: missing columns, empty filename, unknown class (when ``classes`` given).
    """
    table = _read_table(path, ("filename", "event_labels"))
    known = None if classes is None else set(classes)
    labels: list[list[str]] = []
    for name, raw, line in zip(table["filename"], table["event_labels"], table["_line"]):
        if not name:
            raise InputError(path, "empty filename", line=int(line))
        items = list(dict.fromkeys(s.strip() for s in raw.split(",") if s.strip() not in _EMPTY))
        if known is not None:
            for item in items:
                if item not in known:
                    raise InputError(path, f"unknown class {item!r} (known: {', '.join(classes)})",
                                     line=int(line))
        labels.append(items)
    return pd.DataFrame({"filename": table["filename"].to_numpy(object),
                         "event_labels": pd.Series(labels, dtype=object)})


# ---------------------------------------------------------------------------------------- durations
def read_durations_tsv(path: PathType) -> dict[str, float]:
    """Read ``filename duration`` (seconds) into ``{filename: duration}``.

    Raises:
        InputError: missing columns, non-numeric / non-positive duration, conflicting duplicates.
    """
    table = _read_table(path, ("filename", "duration"))
    values = _to_float(table["duration"])
    out: dict[str, float] = {}
    for name, raw, value, line in zip(table["filename"], table["duration"], values, table["_line"]):
        if not name:
            raise InputError(path, "empty filename", line=int(line))
        if not np.isfinite(value):
            raise InputError(path, f"duration {raw!r} is not a number", line=int(line))
        if value <= 0:
            raise InputError(path, f"duration {value:g} s is not positive", line=int(line))
        if name in out and out[name] != value:
            raise InputError(path, f"{name!r} listed again with another duration "
                             f"({out[name]:g} s vs {value:g} s)", line=int(line))
        out[name] = float(value)
    return out


# ------------------------------------------------------------------------------------------ writers
def _fmt_seconds(values: Iterable[float]) -> list[str]:
    return ["" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{float(v):.3f}"
            for v in values]


def write_events_tsv(path: PathType, df: pd.DataFrame, extra_columns: Sequence[str] = ()) -> None:
    """Write an event table as DESED TSV (atomic): header ``filename onset offset event_label``.

    Times with 3 decimals; NaN rows (clips without events) as empty fields. ``extra_columns``
    (e.g. ``("score",)``) are appended after the four standard ones.
    """
    missing = [c for c in (*EVENT_COLUMNS, *extra_columns) if c not in df.columns]
    if missing:
        raise ValueError(f"write_events_tsv: DataFrame lacks column(s) {missing}")
    columns = [
        df["filename"].astype(str).tolist(),
        _fmt_seconds(df["onset"].tolist()),
        _fmt_seconds(df["offset"].tolist()),
        ["" if pd.isna(v) else str(v) for v in df["event_label"].tolist()],
    ]
    for name in extra_columns:
        columns.append(["" if pd.isna(v) else (f"{v:.6g}" if isinstance(v, float) else str(v))
                        for v in df[name].tolist()])
    header = "\t".join((*EVENT_COLUMNS, *extra_columns))
    body = "".join("\t".join(row) + "\n" for row in zip(*columns))
    atomic_write_text(path, header + "\n" + body)


def write_durations_tsv(path: PathType, durations: Mapping[str, float]) -> None:
    """Write ``filename duration`` (seconds, shortest exact float text) atomically."""
    lines = ["filename\tduration\n"]
    for name, value in durations.items():
        lines.append(f"{name}\t{float(value)!r}\n")
    atomic_write_text(path, "".join(lines))


def events_csv_text(events: pd.DataFrame) -> str:
    """``atst-sed detect``'s CSV: ``filename,onset,offset,event_label,score`` (3 decimals), sorted by
    filename, onset, label."""
    df = events.reindex(columns=list(SCORED_EVENT_COLUMNS))
    df = df.sort_values(["filename", "onset", "event_label"], kind="stable")
    buf = io.StringIO()
    df.to_csv(buf, index=False, float_format="%.3f", lineterminator="\n")
    return buf.getvalue()


def write_events_csv(target: PathType, events: pd.DataFrame) -> None:
    """Write :func:`events_csv_text` to the output ``target`` (``-`` = standard output; :mod:`atst_sed.fileio`)."""
    atomic_write_text(target, events_csv_text(events))
