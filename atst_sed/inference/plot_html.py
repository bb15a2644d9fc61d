"""Interactive detection view: one self-contained HTML file per recording (Bokeh, BokehJS inlined).

Three panels share one time axis — log-mel spectrogram (Hz ticks), a score curve per class with its
threshold, event boxes in one lane per class — with wheel zoom, pan, box zoom, reset and hover
(class, times, score). Clicking a legend entry hides that class's curve. The file needs no network:
the JavaScript library is inlined, never loaded from a CDN.

What is embedded is bounded so that an hour stays a few megabytes: the spectrogram is averaged to at
most ``MAX_MEL_COLUMNS`` time columns (uint8), each score curve is reduced to at most ``MAX_POINTS``
points by the maximum over groups of frames (peaks survive), events are embedded exactly.
"""

from __future__ import annotations

import math
from dataclasses import replace
from os import PathLike
from pathlib import Path

import numpy as np

from atst_sed.fileio import atomic_write_text
from atst_sed.inference.plot import (
    DEFAULT_MAX_CLASSES,
    SHOWN_CLASSES_NOTE,
    PlotInput,
    hz_ticks,
    log_mel_frames,
    pool_columns,
)

__all__ = ["MAX_MEL_COLUMNS", "MAX_POINTS", "detection_html", "write_detection_html"]

MAX_MEL_COLUMNS = 8192  # spectrogram columns embedded: 80 ms each for 10.5 min, every 10 ms frame up to 82 s
MAX_POINTS = 4096  # points per score curve: every 40 ms frame up to 164 s
_WIDTH = 1300  # initial width in CSS pixels (the layout stretches to the window)


def _palette(n: int) -> list[str]:
    from bokeh.palettes import Category10_10, Category20_20

    colors = Category10_10 if n <= 10 else Category20_20
    return [colors[i % len(colors)] for i in range(n)]


def detection_html(data: PlotInput, *, max_classes: int = DEFAULT_MAX_CLASSES) -> str:
    """The HTML text of the interactive view of one recording, with at most ``max_classes``
    classes (:meth:`~atst_sed.inference.plot.PlotInput.lanes`)."""
    from bokeh.embed import file_html
    from bokeh.layouts import gridplot
    from bokeh.models import (
        ColumnDataSource,
        FactorRange,
        FixedTicker,
        HoverTool,
        Legend,
        LegendItem,
        LinearColorMapper,
        Range1d,
        Title,
    )
    from bokeh.palettes import Magma256
    from bokeh.plotting import figure
    from bokeh.resources import INLINE

    audio, classes, duration, title, frame_seconds = data.audio, data.classes, data.duration, data.title, data.frame_seconds
    shown, shown_events = data.lanes(max_classes)
    names = [classes[i] for i in shown]
    colors = _palette(len(names))
    x_range = Range1d(0.0, duration, bounds=(0.0, duration), min_interval=0.05)
    tools = "xpan,xwheel_zoom,box_zoom,reset,save"

    def panel(height: int, **kwargs):
        p = figure(height=height, width=_WIDTH, x_range=x_range, tools=tools, active_scroll="xwheel_zoom",
                   active_drag="xpan", sizing_mode="stretch_width", **kwargs)
        p.xaxis.axis_label = "time (s)"
        p.min_border_left = 190  # the three panels' plot areas line up whatever their labels
        return p

    # Spectrogram: every frame, or the mean of groups of frames, as uint8 (256 colour steps over its range).
    frontend = data.frontend
    hop = frontend.hop_length / frontend.sample_rate
    n_frames = len(audio) // frontend.hop_length + 1
    factor = math.ceil(n_frames / MAX_MEL_COLUMNS)
    mel = pool_columns(log_mel_frames(audio, 0, n_frames, config=frontend), factor)
    low, high = float(mel.min()), float(mel.max())
    image = np.round((mel - low) / max(high - low, 1e-6) * 255.0).astype(np.uint8)
    mel_source = ColumnDataSource({"image": [image]}, name="mel")
    p_mel = panel(230, y_range=Range1d(0, image.shape[0]))
    p_mel.image(image="image", source=mel_source, x=-0.5 * hop, y=0, dw=image.shape[1] * factor * hop, dh=image.shape[0],
                color_mapper=LinearColorMapper(Magma256, low=0, high=255))
    positions, labels = hz_ticks(frontend)
    p_mel.yaxis.ticker = FixedTicker(ticks=[float(t) for t in positions])
    p_mel.yaxis.major_label_overrides = {float(t): label for t, label in zip(positions, labels)}
    p_mel.yaxis.axis_label = "Hz"
    p_mel.xaxis.visible = False

    # Score curves: every frame, or the maximum of groups of frames, plotted at the group's centre.
    frames = np.asarray(data.probs, dtype=np.float32)[:, shown]
    group = max(1, math.ceil(len(frames) / MAX_POINTS))
    curves = pool_columns(frames.T, group, "max")
    starts = np.arange(0, len(frames), group)
    ends = np.minimum(starts + group, len(frames))
    columns = {"time": ((starts + ends) / 2.0 * frame_seconds).astype(np.float64)}
    columns.update({f"class_{k}": curves[k] for k in range(len(names))})
    score_source = ColumnDataSource(columns, name="scores")
    p_scores = panel(260, y_range=Range1d(-0.02, 1.02))
    p_scores.yaxis.axis_label = "score"
    p_scores.xaxis.visible = False
    items = []
    for k, (name, color) in enumerate(zip(names, colors)):
        renderers = [p_scores.line("time", f"class_{k}", source=score_source, color=color, line_width=1.5, name=name)]
        if data.thresholds is not None:
            renderers.append(p_scores.line([0.0, duration], [float(data.thresholds[shown[k]])] * 2, color=color,
                                           line_dash="dashed", line_alpha=0.6))
        items.append(LegendItem(label=name, renderers=renderers))
    legend = Legend(items=items, click_policy="hide", label_text_font_size="8pt", spacing=0)
    p_scores.add_layout(legend, "right")
    p_scores.add_tools(HoverTool(tooltips=[("class", "$name"), ("time", "@time{0.00} s"), ("score", "$y{0.000}")],
                                 mode="mouse", renderers=[it.renderers[0] for it in items]))

    # Event lanes: one per shown class, top to bottom in model order; exact times and scores.
    lanes = list(reversed(names))
    event_data = {
        "label": [str(v) for v in shown_events.get("event_label", [])],
        "onset": np.asarray(shown_events.get("onset", []), dtype=np.float64),
        "offset": np.asarray(shown_events.get("offset", []), dtype=np.float64),
        "score": np.asarray(shown_events["score"], dtype=np.float64) if "score" in shown_events else np.full(len(shown_events), np.nan),
    }
    event_data["color"] = [colors[names.index(label)] for label in event_data["label"]]
    event_source = ColumnDataSource(event_data, name="events")
    p_events = panel(max(120, 26 * len(names) + 60), y_range=FactorRange(*lanes))
    p_events.hbar(y="label", left="onset", right="offset", height=0.7, fill_color="color", line_color=None,
                  source=event_source, fill_alpha=0.85)
    p_events.add_tools(HoverTool(tooltips=[("event", "@label"), ("onset", "@onset{0.000} s"),
                                           ("offset", "@offset{0.000} s"), ("score", "@score{0.00}")]))
    p_events.yaxis.axis_label = "events"
    p_events.ygrid.grid_line_color = None

    hidden = len(classes) - len(names)
    notes = [f"{duration:.1f} s", f"{len(shown_events)} events"]
    if hidden:
        notes.append(SHOWN_CLASSES_NOTE.format(shown=len(names), total=len(classes)))
    if group > 1 or factor > 1:
        notes.append(f"embedded at {group * frame_seconds * 1000:.0f} ms per score point (maximum) and "
                     f"{factor * hop * 1000:.0f} ms per spectrogram column (mean)")
    # Titles, not a Div: a Div would inline BokehJS's widget bundle too (+0.4 MB).
    p_mel.add_layout(Title(text=" · ".join(notes) + " — wheel: zoom in time, drag: pan, click a legend entry: "
                           "hide that class", text_font_size="9pt", text_font_style="normal", text_color="#555"), "above")
    p_mel.add_layout(Title(text=title, text_font_size="13pt"), "above")
    layout = gridplot([[p_mel], [p_scores], [p_events]], merge_tools=True, toolbar_location="right",
                      sizing_mode="stretch_width")
    return file_html(layout, INLINE, title=title or "detection")


def write_detection_html(path: str | PathLike[str], data: PlotInput, *, max_classes: int = DEFAULT_MAX_CLASSES) -> Path:
    """Write :func:`detection_html` to ``path`` (atomically, through :mod:`atst_sed.fileio`; the
    title defaults to the file name)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not data.title:
        data = replace(data, title=path.stem)
    atomic_write_text(path, detection_html(data, max_classes=max_classes))
    return path
