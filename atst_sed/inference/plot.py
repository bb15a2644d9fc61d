"""Detection pictures (PNG): log-mel spectrogram on a Hz axis, per-class score heat map and event
lanes, on one time axis.

A recording longer than one row is drawn at a fixed time scale (``seconds_per_inch``) in rows of
``ROW_INCHES``, ``rows_per_page`` rows per PNG page, so that ten minutes read like ten seconds do;
a recording that fits one row fills it, as a 10 s clip always has. Each class gets its own lane in
the score and event panels (its name once, on the axis), at most ``max_classes`` of them: all of a
small model's classes, only those that fire of a 407-class one (:func:`select_classes`). Event
boxes are labelled only where the label fits inside the box, so labels never overlap.

The data helpers (:func:`select_classes`, :func:`log_mel_frames`, :func:`hz_ticks`,
:func:`pool_columns`) are shared with the interactive view (:mod:`atst_sed.inference.plot_html`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from atst_sed.fileio import open_output
from atst_sed.frontend import FrontendConfig, LogMelFrontend

__all__ = [
    "DEFAULT_MAX_CLASSES",
    "ROWS_PER_PAGE",
    "PlotInput",
    "SECONDS_PER_INCH",
    "detection_figures",
    "hz_ticks",
    "log_mel_frames",
    "mel_band_centres_hz",
    "page_paths",
    "page_rows",
    "plot_detection",
    "pool_columns",
    "select_classes",
]

SECONDS_PER_INCH = 5.0  # time scale of a recording longer than one row: 60 s per 12 in row
ROW_INCHES = 12.0  # width of a row's time axis
ROWS_PER_PAGE = 4  # rows per PNG page: 4 min per page at 5 s/in
DEFAULT_MAX_CLASSES = 10  # lanes per picture (DESED: all ten classes)
DPI = 100
EVENT_LABEL_GID = "event-label"  # the gid of the text labels on event boxes (tests find them by it)

_MEL_INCHES = 1.3
_LANE_INCHES = 0.17  # > the 7 pt class names, so lane names never touch
_GAP_INCHES = 0.1
_AXIS_INCHES = 0.45  # tick labels and the "time" label under a row
_ROW_GAP_INCHES = 0.2
_HEADER_INCHES = 0.75
_RIGHT_INCHES = 0.6  # the threshold labels of the event lanes
_HZ_TICKS = (100, 500, 1000, 2000, 4000, 7000)
_MAX_NAME_CHARS = 28
_MEL_CONTEXT_FRAMES = 100  # audio around a segment so that its edge frames are those of the whole file


# ----------------------------------------------------------------------------------- shared data
def select_classes(probs: np.ndarray, events: pd.DataFrame, classes: Sequence[str], max_classes: int) -> list[int]:
    """Indices of the classes to draw, in model order, at most ``max_classes``.

    A model with at most ``max_classes`` classes (DESED's 10) gets every class. With more (the 407
    of AudioSet-strong), only the classes that fire — have an event — get a lane (the highest peak
    scores of ``probs`` (T, C) first when more fire than fit); when none fires, the
    ``max_classes`` highest peak scores do, so that the picture shows what came closest."""
    if max_classes < 1:
        raise ValueError("max_classes must be at least 1")
    if len(classes) <= max_classes:
        return list(range(len(classes)))
    peak = np.asarray(probs, dtype=np.float64).max(axis=0) if len(probs) else np.zeros(len(classes))
    fired = set(events["event_label"].dropna()) if len(events) else set()
    order = sorted(range(len(classes)), key=lambda i: (classes[i] not in fired, -peak[i], i))
    n_fired = sum(c in fired for c in classes)
    return sorted(order[: min(max_classes, n_fired) if n_fired else max_classes])


#: The note on a picture that shows some of the classes (:func:`select_classes`'s rule).
SHOWN_CLASSES_NOTE = "{shown} of {total} classes: those with events, by peak score (none fired: the highest peaks)"


def mel_band_centres_hz(config: FrontendConfig | None = None) -> np.ndarray:
    """Centre frequency (Hz) of each mel band of the frontend, (n_mels,): HTK mel scale, as
    torchaudio's ``MelSpectrogram`` places its triangular filters."""
    c = config or FrontendConfig()
    low, high = (2595.0 * np.log10(1.0 + f / 700.0) for f in (c.f_min, c.f_max))
    mels = np.linspace(low, high, c.n_mels + 2)[1:-1]
    return 700.0 * (10.0 ** (mels / 2595.0) - 1.0)


def hz_ticks(config: FrontendConfig | None = None) -> tuple[np.ndarray, list[str]]:
    """Tick positions on a mel image whose band ``i`` spans ``[i, i + 1)`` (centre ``i + 0.5``),
    and their labels in Hz ("500", "2k"), placed by the band centre frequencies."""
    centres = mel_band_centres_hz(config)
    mel = 2595.0 * np.log10(1.0 + centres / 700.0)
    wanted = [f for f in _HZ_TICKS if centres[0] <= f <= centres[-1]]
    positions = np.interp([2595.0 * math.log10(1.0 + f / 700.0) for f in wanted], mel, np.arange(len(mel)) + 0.5)
    labels = [f"{f // 1000}k" if f >= 1000 and f % 1000 == 0 else f"{f / 1000:g}k" if f >= 1000 else str(f) for f in wanted]
    return positions, labels


def log_mel_frames(
    audio: np.ndarray, start: int, stop: int, chunk_frames: int = 8192, config: FrontendConfig | None = None
) -> np.ndarray:
    """Normalised log-mel frames ``[start, stop)`` of ``audio`` (N,) at the frontend's rate (``config``:
    the model's, default ATST's): (n_mels, stop - start).

    Computed chunk by chunk with ``_MEL_CONTEXT_FRAMES`` of audio around each chunk, so memory stays
    bounded for hours of audio. The dB floor (``top_db``) is set per chunk, not per file.
    """
    frontend = LogMelFrontend(config)
    hop = frontend.config.hop_length
    n_frames = len(audio) // hop + 1
    start, stop = max(0, start), min(stop, n_frames)
    parts = []
    with torch.inference_mode():
        for a in range(start, stop, chunk_frames):
            b = min(stop, a + chunk_frames)
            first = max(0, a - _MEL_CONTEXT_FRAMES)
            last = min(len(audio), (b + _MEL_CONTEXT_FRAMES) * hop + 1)
            mel = frontend(torch.as_tensor(audio[first * hop : last], dtype=torch.float32)).numpy()
            parts.append(mel[:, a - first : b - first])
    return np.concatenate(parts, axis=1) if parts else np.zeros((frontend.config.n_mels, 0), np.float32)


def pool_columns(image: np.ndarray, factor: int, how: str = "mean") -> np.ndarray:
    """(rows, T) → (rows, ceil(T / factor)): the mean (or ``how="max"``) of each group of ``factor``
    adjacent columns; the last group holds what is left."""
    if factor <= 1:
        return image
    t = image.shape[1]
    groups = np.arange(0, t, factor)
    reduce = np.maximum if how == "max" else np.add
    out = reduce.reduceat(image, groups, axis=1)
    if how == "max":
        return out
    sizes = np.minimum(groups + factor, t) - groups
    return out / sizes


@dataclass(frozen=True)
class PlotInput:
    """One recording's detection results, as the pictures show them.

    ``audio`` (N,) at the frontend's rate; ``probs`` (T, C) scores per frame of ``frame_seconds``
    (the model's grid); ``events`` with onset/offset in seconds, event_label and optionally score;
    ``thresholds`` one per class (None: not shown); ``title`` heads the picture (default: the file
    name); ``frontend`` the log-mel shown (the model's ATST frontend; default ATST's).
    """

    audio: np.ndarray
    probs: np.ndarray
    events: pd.DataFrame
    classes: Sequence[str]
    frame_seconds: float
    title: str = ""
    thresholds: Sequence[float] | None = None
    frontend: FrontendConfig = field(default_factory=FrontendConfig)

    @property
    def duration(self) -> float:
        return len(self.audio) / self.frontend.sample_rate

    def lanes(self, max_classes: int) -> tuple[list[int], pd.DataFrame]:
        """The class indices to draw (:func:`select_classes`) and the events of those classes."""
        shown = select_classes(self.probs, self.events, self.classes, max_classes)
        if not len(self.events):
            return shown, pd.DataFrame(columns=["onset", "offset", "event_label"])
        return shown, self.events[self.events["event_label"].isin([self.classes[i] for i in shown])]


# ------------------------------------------------------------------------------------- page plan
def page_rows(duration: float, seconds_per_inch: float = SECONDS_PER_INCH,
              rows_per_page: int = ROWS_PER_PAGE) -> list[list[tuple[float, float]]]:
    """The time span (seconds) of each row of each page: one row spanning ``duration`` when it fits
    in ``ROW_INCHES`` at ``seconds_per_inch``, else rows of that length, ``rows_per_page`` per page
    (the last row keeps the scale and ends in blank space)."""
    row_seconds = ROW_INCHES * seconds_per_inch
    if duration <= row_seconds:
        return [[(0.0, duration)]]
    n_rows = math.ceil(duration / row_seconds - 1e-9)
    rows = [(i * row_seconds, (i + 1) * row_seconds) for i in range(n_rows)]
    return [rows[i : i + rows_per_page] for i in range(0, n_rows, rows_per_page)]


@dataclass(frozen=True)
class _Drawing:
    """What every page of one recording shares."""

    probs: np.ndarray  # (T, shown classes)
    events: pd.DataFrame  # events of the shown classes
    names: list[str]  # shown class names, in lane order (top to bottom)
    thresholds: list[float] | None
    frame_seconds: float
    duration: float
    minutes: bool  # times as m:ss
    mel_range: tuple[float, float]  # one colour scale for every row of the recording
    frontend: FrontendConfig  # the log-mel shown (its mel bands give the Hz axis)


def _clock(seconds: float, _pos=None) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m}:{s:02d}"


def _short(name: str) -> str:
    return name if len(name) <= _MAX_NAME_CHARS else name[: _MAX_NAME_CHARS - 1] + "…"


def _row_inches(n_lanes: int) -> float:
    return _MEL_INCHES + 2 * (_GAP_INCHES + n_lanes * _LANE_INCHES) + _AXIS_INCHES + _ROW_GAP_INCHES


def _label_events(ax, renderer, d: _Drawing, lane_of: dict[str, int], span: tuple[float, float]) -> None:
    """Draw the event boxes of one row (one collection per lane) and label each box where the text
    fits inside its visible part and clear of the lane's previous label."""
    if not len(d.events):
        return
    events = d.events.sort_values("onset", kind="stable")
    on = np.maximum(events["onset"].to_numpy(float), span[0])
    off = np.minimum(events["offset"].to_numpy(float), span[1])
    lanes = events["event_label"].map(lane_of).to_numpy(int)
    visible = off > on
    colors = _lane_colors(len(d.names))
    for lane in np.unique(lanes[visible]):
        mine = visible & (lanes == lane)
        ax.broken_barh(list(zip(on[mine], off[mine] - on[mine])), (lane - 0.4, 0.8), color=colors[lane], alpha=0.85,
                       linewidth=0)
    left_px = ax.transData.transform(np.column_stack([on, np.zeros_like(on)]))[:, 0]
    right_px = ax.transData.transform(np.column_stack([off, np.zeros_like(off)]))[:, 0]
    probe = ax.text(0, 0, " 0.00", fontsize=6)
    narrowest = probe.get_window_extent(renderer).width  # no label is narrower: skip boxes below it unmeasured
    probe.remove()
    scores = events["score"].to_numpy(float) if "score" in events else None
    right_edge: dict[int, float] = {}
    for i in np.flatnonzero(visible):
        lane, name = int(lanes[i]), events["event_label"].iat[i]
        if right_px[i] - left_px[i] < narrowest or left_px[i] < right_edge.get(lane, -np.inf):
            continue
        candidates = [name] if scores is None else [f"{name} {scores[i]:.2f}", f"{scores[i]:.2f}"]
        label = ax.text(on[i], lane, "", va="center", ha="left", fontsize=6, clip_on=True, gid=EVENT_LABEL_GID)
        for text in candidates:
            label.set_text(" " + text)
            extent = label.get_window_extent(renderer)
            if extent.x1 <= right_px[i] and extent.x0 >= right_edge.get(lane, -np.inf):
                right_edge[lane] = extent.x1
                break
        else:
            label.remove()


def _lane_colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10"] if n <= 10 else colormaps["tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


@dataclass(frozen=True)
class _MelImage:
    image: np.ndarray  # (n_mels, columns)
    start: float  # seconds at the left edge of the first column
    end: float  # seconds at the right edge of the last column


def _row_mel(audio: np.ndarray, span: tuple[float, float], duration: float, config: FrontendConfig) -> _MelImage:
    """The log-mel of one row, at most 2 columns per pixel; frame ``f`` is centred at ``f * hop``."""
    hop = config.hop_length / config.sample_rate
    f0, f1 = math.floor(span[0] / hop), math.ceil(min(span[1], duration) / hop) + 1
    mel = log_mel_frames(audio, f0, f1, config=config)
    factor = max(1, math.ceil(mel.shape[1] / (2 * ROW_INCHES * DPI)))
    image = pool_columns(mel, factor)
    start = (f0 - 0.5) * hop
    return _MelImage(image, start, start + mel.shape[1] * hop)


def _draw_row(fig, renderer, d: _Drawing, span: tuple[float, float], mel: _MelImage, top: float, left: float) -> None:
    """One row (mel, score lanes, event lanes) whose top edge is ``top`` inches below the figure's top."""
    from matplotlib.ticker import FuncFormatter, MultipleLocator

    width_in, height_in = fig.get_size_inches()
    n = len(d.names)

    def axes(y_top: float, h: float, **kwargs):
        return fig.add_axes((left / width_in, 1.0 - (y_top + h) / height_in, ROW_INCHES / width_in, h / height_in), **kwargs)

    lanes_h = n * _LANE_INCHES
    ax_mel = axes(top, _MEL_INCHES)
    ax_scores = axes(top + _MEL_INCHES + _GAP_INCHES, lanes_h, sharex=ax_mel)
    ax_events = axes(top + _MEL_INCHES + 2 * _GAP_INCHES + lanes_h, lanes_h, sharex=ax_mel)
    start, end = span

    ax_mel.imshow(mel.image, origin="lower", aspect="auto", cmap="magma", interpolation="nearest",
                  vmin=d.mel_range[0], vmax=d.mel_range[1], extent=(mel.start, mel.end, 0, mel.image.shape[0]))
    positions, labels = hz_ticks(d.frontend)
    ax_mel.set_yticks(positions, labels, fontsize=7)
    ax_mel.set_ylim(0, mel.image.shape[0])
    ax_mel.set_ylabel("Hz", fontsize=8)

    fs = d.frame_seconds
    t0, t1 = math.floor(start / fs), min(len(d.probs), math.ceil(end / fs))
    scores = np.asarray(d.probs[t0:t1], dtype=np.float32).T
    factor = max(1, math.ceil(scores.shape[1] / (2 * ROW_INCHES * DPI)))
    ax_scores.imshow(pool_columns(scores, factor, "max"), origin="upper", aspect="auto", cmap="viridis",
                     vmin=0.0, vmax=1.0, interpolation="nearest",
                     extent=(t0 * fs, t0 * fs + math.ceil(scores.shape[1] / factor) * factor * fs, n - 0.5, -0.5))
    names = [_short(c) for c in d.names]
    for ax in (ax_scores, ax_events):
        ax.set_yticks(range(n), names, fontsize=7)
        ax.set_ylim(n - 0.5, -0.5)
        ax.tick_params(axis="y", length=0)
    ax_scores.set_ylabel("score", fontsize=8)
    ax_events.set_ylabel("events", fontsize=8)
    if d.thresholds is not None:
        right = ax_events.twinx()
        right.set_ylim(n - 0.5, -0.5)
        right.set_yticks(range(n), [f">{t:.2f}" for t in d.thresholds], fontsize=6)
        right.tick_params(axis="y", length=0)
    for i in range(1, n):
        ax_events.axhline(i - 0.5, color="0.85", linewidth=0.5)

    ax_mel.set_xlim(start, end)
    for ax in (ax_mel, ax_scores):
        ax.tick_params(axis="x", labelbottom=False)
    ax_events.grid(axis="x", alpha=0.3)
    if d.minutes:
        ax_events.xaxis.set_major_locator(MultipleLocator(5.0))
        ax_events.xaxis.set_major_formatter(FuncFormatter(_clock))
        ax_events.set_xlabel("time (m:ss)", fontsize=8)
    else:
        ax_events.set_xlabel("time (s)", fontsize=8)
    ax_events.tick_params(axis="x", labelsize=7)
    if end > d.duration:  # the last row of a long file: blank past the end
        for ax in (ax_mel, ax_scores, ax_events):
            ax.axvspan(d.duration, end, color="0.93", zorder=3)
    _label_events(ax_events, renderer, d, {c: i for i, c in enumerate(d.names)}, (start, min(end, d.duration)))


def detection_figures(
    data: PlotInput,
    *,
    max_classes: int = DEFAULT_MAX_CLASSES,
    seconds_per_inch: float = SECONDS_PER_INCH,
    rows_per_page: int = ROWS_PER_PAGE,
) -> list:
    """The pages of a detection picture as matplotlib ``Figure`` objects (no pyplot state): at most
    ``max_classes`` lanes, rows at ``seconds_per_inch`` for a long recording (:func:`page_rows`)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    duration, classes = data.duration, data.classes
    shown, kept = data.lanes(max_classes)
    names = [classes[i] for i in shown]
    pages = page_rows(duration, seconds_per_inch, rows_per_page)
    mels = [[_row_mel(data.audio, span, duration, data.frontend) for span in rows] for rows in pages]
    every = [m.image for rows in mels for m in rows]
    d = _Drawing(
        probs=np.asarray(data.probs)[:, shown], events=kept, names=names,
        thresholds=None if data.thresholds is None else [float(data.thresholds[i]) for i in shown],
        frame_seconds=data.frame_seconds, duration=duration, minutes=duration > ROW_INCHES * seconds_per_inch,
        mel_range=(min(float(m.min()) for m in every), max(float(m.max()) for m in every)), frontend=data.frontend,
    )
    left = min(2.2, max(1.0, 0.3 + 0.058 * max((len(_short(c)) for c in names), default=4)))
    width = left + ROW_INCHES + _RIGHT_INCHES
    row_h = _row_inches(len(names))
    title = data.title or "detection"
    hidden = len(classes) - len(names)
    figures = []
    for number, (rows, row_mels) in enumerate(zip(pages, mels), start=1):
        fig = Figure(figsize=(width, _HEADER_INCHES + row_h * len(rows)), dpi=DPI)
        FigureCanvasAgg(fig)
        renderer = fig.canvas.get_renderer()
        height = fig.get_size_inches()[1]
        where = ""
        if len(pages) > 1:
            last = min(rows[-1][1], duration)
            where = f"page {number} of {len(pages)} · {_clock(rows[0][0])}–{_clock(last)} of {_clock(duration)}"
        elif d.minutes:
            where = f"{_clock(duration)}"
        shown_text = SHOWN_CLASSES_NOTE.format(shown=len(names), total=len(classes)) if hidden else ""
        fig.text(left / width, 1.0 - 0.3 / height, title, fontsize=11, weight="bold", va="baseline")
        fig.text(left / width, 1.0 - 0.52 / height, "   ".join(t for t in (where, shown_text) if t), fontsize=8,
                 va="baseline", color="0.3")
        _colorbar(fig, width, height, left)
        for k, (span, mel) in enumerate(zip(rows, row_mels)):
            _draw_row(fig, renderer, d, span, mel, _HEADER_INCHES + k * row_h, left)
        figures.append(fig)
    return figures


def _colorbar(fig, width: float, height: float, left: float) -> None:
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    cax = fig.add_axes(((left + ROW_INCHES - 2.5) / width, 1.0 - 0.42 / height, 2.5 / width, 0.1 / height))
    bar = fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), "viridis"), cax=cax, orientation="horizontal")
    bar.ax.tick_params(labelsize=6, length=2)
    cax.set_title("score", fontsize=7, loc="left", pad=2)


def page_paths(path: Path, n_pages: int) -> list[Path]:
    """``x.png`` for one page; ``x_p1.png`` … ``x_pN.png`` (zero-padded to sort) for more."""
    if n_pages == 1:
        return [path]
    width = len(str(n_pages))
    return [path.with_name(f"{path.stem}_p{i:0{width}d}{path.suffix}") for i in range(1, n_pages + 1)]


def plot_detection(
    path: str | PathLike[str],
    data: PlotInput,
    *,
    max_classes: int = DEFAULT_MAX_CLASSES,
    seconds_per_inch: float = SECONDS_PER_INCH,
    rows_per_page: int = ROWS_PER_PAGE,
) -> list[Path]:
    """Write the detection picture of one recording as PNG page(s) (:func:`detection_figures`;
    :func:`page_paths` names the pages; the title defaults to the file name). Each page is written
    atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not data.title:
        data = replace(data, title=path.stem)
    figures = detection_figures(data, max_classes=max_classes, seconds_per_inch=seconds_per_inch,
                                rows_per_page=rows_per_page)
    paths = page_paths(path, len(figures))
    for fig, page in zip(figures, paths):
        with open_output(page) as handle:
            fig.savefig(handle, format="png", dpi=DPI)
    return paths
