"""Detection pictures: a 10.5-minute recording reads like a 10 s clip (pages of rows at a fixed time
scale, labels that never overlap, a mel axis in Hz, a bounded number of class lanes), and the
interactive HTML view is self-contained and embeds the scores and events it shows."""

from __future__ import annotations

import base64
import gzip
import itertools
import json
import re
import shutil
import subprocess
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import librosa
import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from atst_sed.cli.main import main
from atst_sed.frontend import FrontendConfig
from atst_sed.inference.plot import EVENT_LABEL_GID, PlotInput, detection_figures, plot_detection, select_classes
from atst_sed.inference.plot_html import MAX_POINTS, detection_html, write_detection_html
from inference_helpers import CLASSES, noise_with_bursts

FRAME = 0.04  # seconds per score frame of these synthetic tracks
LONG_SECONDS = 630.0


def _scores(seconds: float, n_classes: int, seed: int = 0) -> np.ndarray:
    """(T, C) smooth random scores in [0, 1], one row per 40 ms frame."""
    rng = np.random.default_rng(seed)
    t = round(seconds / FRAME)
    walk = np.cumsum(rng.standard_normal((t, n_classes)) * 0.15, axis=0)
    return (1.0 / (1.0 + np.exp(-np.sin(walk) * 4.0))).astype(np.float32)


def _crowded_events(seconds: float, classes: list[str], seed: int = 0) -> pd.DataFrame:
    """Many events, short and long, side by side in every lane; some touch, one pair overlaps."""
    rng = np.random.default_rng(seed)
    rows = []
    for label in classes:
        t = float(rng.uniform(0.0, 2.0))
        while t < seconds - 0.2:
            length = float(rng.choice([0.12, 0.4, 1.0, 3.0, 9.0]))
            rows.append(("long.wav", t, min(t + length, seconds), label, float(rng.uniform(0.5, 1.0))))
            t += length + float(rng.choice([0.0, 0.05, 0.5, 4.0]))
    rows.append(("long.wav", 30.0, 50.0, classes[0], 0.9))  # overlaps others of its class
    return pd.DataFrame(rows, columns=["filename", "onset", "offset", "event_label", "score"])


@pytest.fixture(scope="module")
def long_recording() -> PlotInput:
    audio = noise_with_bursts(LONG_SECONDS, [(s, s + 3.0) for s in range(5, 620, 37)])
    return PlotInput(audio, _scores(LONG_SECONDS, len(CLASSES)), _crowded_events(LONG_SECONDS, CLASSES), CLASSES, FRAME,
                     "long.wav", [0.5] * len(CLASSES))


@pytest.fixture(scope="module")
def long_pages(long_recording) -> list:
    return detection_figures(long_recording)


def _clip(events: pd.DataFrame, classes=CLASSES, probs=None) -> PlotInput:
    """A 10 s recording with a loud burst at 2–4 s."""
    probs = _scores(10.0, len(classes)) if probs is None else probs
    return PlotInput(noise_with_bursts(10.0, [(2.0, 4.0)]), probs, events, classes, FRAME)


def _time_axes(fig) -> list:
    """The event panel of each row (the one with the time axis), top to bottom."""
    axes = [ax for ax in fig.axes if ax.get_xlabel().startswith("time")]
    return sorted(axes, key=lambda ax: -ax.get_position().y0)


def _seconds_per_inch(fig, ax) -> float:
    lo, hi = ax.get_xlim()
    return (hi - lo) / (ax.get_position().width * fig.get_size_inches()[0])


# ------------------------------------------------------------------------------------ PNG pages
def test_a_long_recording_gives_pages_of_one_minute_rows_at_five_seconds_per_inch(long_recording, tmp_path):
    paths = plot_detection(tmp_path / "long.png", long_recording)
    assert [p.name for p in paths] == ["long_p1.png", "long_p2.png", "long_p3.png"]
    images = [matplotlib.image.imread(p) for p in paths]
    widths = {im.shape[1] for im in images}
    assert len(widths) == 1 and 1300 <= widths.pop() <= 1600  # every page as wide as a 10 s picture
    heights = [im.shape[0] for im in images]
    assert heights[0] == heights[1] > heights[2]  # 4 + 4 + 3 rows of 60 s for 630 s
    assert heights[0] < 2500  # a page fits a few screens, not 630 s in one band


def test_every_row_has_the_same_time_scale_and_the_rows_cover_the_recording(long_pages):
    spans = []
    for fig in long_pages:
        for ax in _time_axes(fig):
            assert _seconds_per_inch(fig, ax) == pytest.approx(5.0)
            spans.append(ax.get_xlim())
    assert [len(_time_axes(fig)) for fig in long_pages] == [4, 4, 3]
    assert spans[0][0] == 0.0 and spans[-1][1] >= LONG_SECONDS
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start == pytest.approx(end)


def test_a_ten_second_clip_fills_one_row_as_wide_as_before(tmp_path):
    events = pd.DataFrame([("a.wav", 2.0, 4.0, CLASSES[0], 0.9)], columns=["filename", "onset", "offset", "event_label", "score"])
    (fig,) = detection_figures(_clip(events))
    (ax,) = _time_axes(fig)
    assert ax.get_xlim() == (0.0, 10.0)
    assert ax.get_position().width * fig.get_size_inches()[0] >= 12.0  # today's 12 in figure
    labels = [t.get_text().strip() for t in fig.findobj(lambda a: a.get_gid() == EVENT_LABEL_GID)]
    assert labels == [f"{CLASSES[0]} 0.90"]
    paths = plot_detection(tmp_path / "a.png", _clip(events))
    assert [p.name for p in paths] == ["a.png"]


def test_event_labels_never_overlap_and_stay_inside_their_boxes(long_pages):
    drawn = 0
    for fig in long_pages:
        renderer = fig.canvas.get_renderer()
        for ax in _time_axes(fig):
            texts = [t for t in ax.texts if t.get_gid() == EVENT_LABEL_GID]
            boxes = [t.get_window_extent(renderer) for t in texts]
            frame = ax.get_window_extent(renderer)
            for a, b in itertools.combinations(boxes, 2):
                assert not a.overlaps(b), "two event labels overlap"
            for box in boxes:
                assert frame.x0 - 1 <= box.x0 and box.x1 <= frame.x1 + 1
            drawn += len(texts)
            # every label sits inside one drawn event box of its lane
            bars = [(x0, x1, lane) for coll in ax.collections for (x0, x1, lane) in _bar_spans(ax, coll, renderer)]
            for text, box in zip(texts, boxes):
                lane = text.get_position()[1]
                assert any(lane_y == lane and x0 - 1 <= box.x0 and box.x1 <= x1 + 1 for x0, x1, lane_y in bars)
    assert drawn > 50  # the crowded recording still gets many labels


def _bar_spans(ax, collection, renderer) -> list[tuple[float, float, float]]:
    """(left px, right px, lane) of each event box of a broken_barh collection."""
    out = []
    for path in collection.get_paths():
        v = path.vertices
        (x0, _), (x1, _) = ax.transData.transform([(v[:, 0].min(), 0), (v[:, 0].max(), 0)])
        out.append((x0, x1, round(float(v[:, 1].mean()))))
    return out


def test_the_mel_axis_is_labelled_in_hz_at_the_band_centre_frequencies(long_pages):
    config = FrontendConfig()
    # librosa's HTK mel scale, independently: band i of the 64 peaks at centres[i]
    centres = librosa.mel_frequencies(n_mels=config.n_mels + 2, fmin=config.f_min, fmax=config.f_max, htk=True)[1:-1]
    mel_axes = [ax for ax in long_pages[0].axes if ax.get_ylabel() == "Hz"]
    assert len(mel_axes) == 4
    ax = mel_axes[0]
    ticks = ax.get_yticks()
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["100", "500", "1k", "2k", "4k", "7k"]
    for position, label in zip(ticks, labels):
        hz = float(label.removesuffix("k")) * (1000 if label.endswith("k") else 1)
        # a position p on the image is band p - 0.5: interpolate the band centres on the mel scale
        mels = librosa.hz_to_mel(centres, htk=True)
        at = librosa.mel_to_hz(np.interp(position - 0.5, np.arange(len(centres)), mels), htk=True)
        assert at == pytest.approx(hz, rel=1e-3)


def test_many_classes_draw_lanes_only_for_those_that_fire_else_the_highest_peaks():
    classes = [f"class_{i:03d}" for i in range(407)]
    probs = np.full((250, 407), 0.01, np.float32)
    probs[:, 200], probs[:, 300] = 0.3, 0.35  # fire (have events) with low peaks
    probs[:, 17], probs[:, 5] = 0.9, 0.7  # the highest peaks, without events
    columns = ["filename", "onset", "offset", "event_label", "score"]
    events = pd.DataFrame([("a.wav", 1.0, 2.0, "class_200", 0.3), ("a.wav", 3.0, 4.0, "class_300", 0.35)], columns=columns)
    assert select_classes(probs, events, classes, 4) == [200, 300]
    assert select_classes(probs, events, classes, 1) == [300]  # more fire than fit: the highest peaks of those
    assert select_classes(probs, events.iloc[:0], classes, 2) == [5, 17]  # none fires: what came closest
    assert select_classes(probs[:, :10], events.iloc[:0], classes[:10], 10) == list(range(10))  # a small model: all
    (fig,) = detection_figures(_clip(events, classes, probs), max_classes=4)
    (ax,) = _time_axes(fig)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["class_200", "class_300"]
    assert any("2 of 407 classes" in t.get_text() for t in fig.texts)


# ------------------------------------------------------------------------------------ HTML view
class _Refs(HTMLParser):
    """Every src/href attribute and every script's type."""

    def __init__(self):
        super().__init__()
        self.refs: list[str] = []
        self.scripts: list[dict] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.refs += [v for k, v in attrs.items() if k in ("src", "href") and v]
        if tag == "script":
            self.scripts.append(attrs)


def _embedded_sources(text: str) -> dict[str, dict]:
    """Bokeh's document JSON → {ColumnDataSource name: {column: numpy array or list}}."""
    (doc,) = re.findall(r'<script type="application/json" id="[^"]+">\s*(.*?)\s*</script>', text, re.S)

    def decode(value):
        if isinstance(value, dict) and value.get("type") == "ndarray":
            raw = base64.b64decode(value["array"]["data"])
            if raw[:2] == b"\x1f\x8b":
                raw = gzip.decompress(raw)
            return np.frombuffer(raw, dtype=value["dtype"]).reshape(value["shape"])
        if isinstance(value, list):
            return [decode(v) for v in value]
        return value

    found: dict[str, dict] = {}

    def walk(node):
        if isinstance(node, dict):
            attributes = node.get("attributes", {})
            if node.get("name") == "ColumnDataSource" and "data" in attributes and attributes.get("name"):
                found[attributes["name"]] = {k: decode(v) for k, v in attributes["data"]["entries"]}
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(json.loads(doc))
    return found


def test_the_html_view_is_self_contained(tmp_path):
    data = replace(_clip(_crowded_events(10.0, CLASSES)), title="a <b>.wav")
    path = write_detection_html(tmp_path / "a.html", data)
    text = path.read_text(encoding="utf-8")
    parser = _Refs()
    parser.feed(text)
    assert parser.refs == []  # no script, stylesheet or image is fetched from anywhere
    assert all("src" not in attrs for attrs in parser.scripts)
    assert "BEGIN bokeh.min.js" in text  # the library itself is inlined
    assert "<title>a &lt;b&gt;.wav</title>" in text


def test_the_html_view_embeds_the_scores_and_events_it_shows(tmp_path):
    data = _clip(_crowded_events(10.0, CLASSES[:3]))
    probs, events = data.probs, data.events
    text = detection_html(data, max_classes=10)
    sources = _embedded_sources(text)
    scores = sources["scores"]
    np.testing.assert_allclose(scores["time"], (np.arange(len(probs)) + 0.5) * FRAME)
    for k in range(len(CLASSES)):
        np.testing.assert_array_equal(scores[f"class_{k}"], probs[:, k])  # every frame, exactly
    shown = sources["events"]
    assert shown["label"] == list(events["event_label"])
    np.testing.assert_array_equal(shown["onset"], events["onset"].to_numpy())
    np.testing.assert_array_equal(shown["offset"], events["offset"].to_numpy())
    np.testing.assert_array_equal(shown["score"], events["score"].to_numpy())
    (image,) = sources["mel"]["image"]
    assert image.shape == (64, 10 * 100 + 1) and image.dtype == np.uint8


def test_a_ten_minute_html_view_stays_small_and_keeps_every_peak(long_recording, tmp_path):
    path = write_detection_html(tmp_path / "long.html", long_recording)
    probs = long_recording.probs
    assert path.stat().st_size < 3_000_000
    sources = _embedded_sources(path.read_text(encoding="utf-8"))
    scores = sources["scores"]
    group = -(-len(probs) // MAX_POINTS)
    assert len(scores["time"]) <= MAX_POINTS
    for k in range(len(CLASSES)):
        expected = [probs[i : i + group, k].max() for i in range(0, len(probs), group)]
        np.testing.assert_array_equal(scores[f"class_{k}"], expected)
        assert scores[f"class_{k}"].max() == probs[:, k].max()
    assert len(sources["events"]["label"]) == len(long_recording.events)


def _browser() -> str | None:
    return next((p for p in map(shutil.which, ("chromium-headless-shell", "chromium", "chromium-browser",
                                                "google-chrome")) if p), None)


@pytest.mark.skipif(_browser() is None, reason="no headless Chromium installed (apt-get install chromium-headless-shell)")
def test_the_html_view_renders_in_a_headless_browser_without_network(tmp_path):
    page = write_detection_html(tmp_path / "a.html", _clip(_crowded_events(10.0, CLASSES[:3])))
    shot = tmp_path / "shot.png"
    run = subprocess.run(
        [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1400,900",
         "--virtual-time-budget=10000", "--proxy-server=http://127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
         "--enable-logging=stderr", "--v=0", f"--screenshot={shot}", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    assert any("document idle" in line for line in console), run.stderr[-2000:]  # BokehJS rendered the document
    assert not [line for line in console if "error" in line.lower()]
    assert "net::ERR" not in run.stderr  # nothing was fetched
    pixels = matplotlib.image.imread(shot)[..., :3]
    coloured = np.ptp(pixels, axis=2) > 0.15  # the spectrogram, curves and boxes (not white, grey or black)
    assert coloured.mean() > 0.1
    assert len(np.unique((pixels[coloured] * 255).astype(np.uint8), axis=0)) > 100


# ------------------------------------------------------------------------------------------ CLI
def test_detect_writes_png_pages_and_html_with_at_most_n_classes(loud_ckpt, write_wav, tmp_path, capsys):
    wav = write_wav("rec.wav", noise_with_bursts(12.0, [(1.0, 2.5), (8.0, 9.0)]))
    out = tmp_path / "plots"
    rc = main(["detect", str(wav), "-c", str(loud_ckpt), "-o", str(tmp_path / "e.csv"), "--plot", str(out),
               "--plot-format", "both", "--plot-classes", "3"])
    capsys.readouterr()
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["rec.html", "rec.png"]
    sources = _embedded_sources((out / "rec.html").read_text(encoding="utf-8"))
    lanes = [k for k in sources["scores"] if k.startswith("class_")]  # one score curve per lane
    fired = set(sources["events"]["label"])
    assert fired and len(lanes) == len(fired) <= 3  # more classes than lanes: only those that fire


@pytest.mark.parametrize("option", [["--plot-format", "html"], ["--plot-classes", "5"]])
def test_plot_options_without_a_plot_folder_are_refused(option, loud_ckpt, write_wav, capsys):
    wav = write_wav("rec.wav", noise_with_bursts(3.0, []))
    assert main(["detect", str(wav), "-c", str(loud_ckpt), *option]) == 2
    assert f"{option[0]} needs --plot DIR" in capsys.readouterr().err


def test_a_real_recording_gives_a_readable_picture(shared_audio, loud_ckpt, tmp_path, capsys):
    """The real 10 s speech recording beside the repository (skipped when absent)."""
    out = tmp_path / "plots"
    assert main(["detect", str(Path(shared_audio) / "speech_en_10s.wav"), "-c", str(loud_ckpt), "-o",
                 str(tmp_path / "e.csv"), "--plot", str(out), "--plot-format", "both"]) == 0
    capsys.readouterr()
    image = matplotlib.image.imread(out / "speech_en_10s.png")
    assert image.shape[1] >= 1300 and np.ptp(image[..., :3]) > 0.5
    assert (out / "speech_en_10s.html").stat().st_size < 2_000_000
