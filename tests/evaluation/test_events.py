"""events.py: DESED TSV readers/writers, their input checks and the real DESED validation file."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from atst_sed.errors import InputError
from atst_sed.events import (
    clip_id,
    duplicated_events,
    events_past_end,
    first_overlap,
    lookup_duration,
    merge_overlapping_events,
    read_durations_tsv,
    read_strong_tsv,
    read_weak_tsv,
    write_durations_tsv,
    write_events_tsv,
)
from atst_sed.labels import DESED_CLASSES

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "desed_validation"
CLASSES = DESED_CLASSES


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def desed_validation():
    if not (SHARED / "validation.tsv").is_file():
        pytest.skip("../shared/reference/desed_validation is not beside the repository")
    return SHARED / "validation.tsv", SHARED / "validation_durations.tsv"


def test_real_desed_validation(desed_validation, caplog):
    gt_path, dur_path = desed_validation
    durations = read_durations_tsv(dur_path)
    assert len(durations) == 1168
    assert sum(d < 10.0 for d in durations.values()) == 102
    with caplog.at_level(logging.WARNING):
        gt = read_strong_tsv(gt_path, classes=CLASSES, durations=durations)
    assert list(gt.columns) == ["filename", "onset", "offset", "event_label"]
    assert gt["filename"].nunique() == 1168
    events = gt.dropna()
    assert len(events) == 4224
    assert gt["event_label"].isna().sum() == 15
    assert gt[gt["event_label"].isna()][["onset", "offset"]].isna().all().all()
    counts = events["event_label"].value_counts()
    assert counts["Speech"] == 1752 and counts["Dog"] == 570 and counts["Electric_shaver_toothbrush"] == 65
    # 16 offsets lie past their (0.1 s rounded) durations: read as written (what psds_eval
    # scores), clipped only on request (training labels).
    late, after = events_past_end(gt, durations)
    assert late.sum() == 16 and not after.any()
    assert gt["offset"].max() == pytest.approx(10.115)
    assert first_overlap(gt) is None and not duplicated_events(gt).any()
    with caplog.at_level(logging.WARNING):
        clipped = read_strong_tsv(gt_path, classes=CLASSES, durations=durations, clip_to_durations=True)
    assert "16 event offset(s) past the clip duration" in caplog.text
    clipped = clipped.dropna()
    assert (clipped["offset"] <= clipped["filename"].map(durations) + 1e-9).all()


def test_columns_any_order_extra_ignored(tmp_path):
    path = _write(tmp_path / "p.tsv", "event_label\tindex\toffset\tonset\tfilename\n"
                  "Dog\t1\t2.5\t1.0\ta.wav\nCat\t2\t4\t3\tb.wav\n")
    df = read_strong_tsv(path)
    assert df.to_dict("list") == {"filename": ["a.wav", "b.wav"], "onset": [1.0, 3.0],
                                  "offset": [2.5, 4.0], "event_label": ["Dog", "Cat"]}


def test_write_read_round_trip(tmp_path):
    df = pd.DataFrame({"filename": ["a.wav", "a.wav", "b.wav"], "onset": [0.1234, 2.0, np.nan],
                       "offset": [1.5, 3.25, np.nan], "event_label": ["Dog", "Cat", np.nan]})
    path = tmp_path / "sub" / "events.tsv"
    write_events_tsv(path, df)
    lines = path.read_text().splitlines()
    assert lines[0] == "filename\tonset\toffset\tevent_label"
    assert lines[1] == "a.wav\t0.123\t1.500\tDog"
    assert lines[3] == "b.wav\t\t\t"
    back = read_strong_tsv(path)
    expected = df.assign(onset=df["onset"].round(3))
    pd.testing.assert_frame_equal(back, expected)
    assert not list(path.parent.glob(".*tmp"))  # no temp file left behind


def test_write_extra_columns(tmp_path):
    df = pd.DataFrame({"filename": ["a.wav"], "onset": [0.0], "offset": [1.0],
                       "event_label": ["Dog"], "score": [0.8125]})
    write_events_tsv(tmp_path / "e.tsv", df, extra_columns=("score",))
    assert (tmp_path / "e.tsv").read_text().splitlines()[1] == "a.wav\t0.000\t1.000\tDog\t0.8125"


def test_durations_round_trip(tmp_path):
    durations = {"a.wav": 10.0, "b.wav": 9.971, "c": 4.0000625}
    write_durations_tsv(tmp_path / "d.tsv", durations)
    assert read_durations_tsv(tmp_path / "d.tsv") == durations


def test_weak(tmp_path):
    path = _write(tmp_path / "w.tsv", "filename\tevent_labels\na.wav\tDog,Cat\nb.wav\tSpeech\n"
                  "c.wav\t\n")
    df = read_weak_tsv(path, classes=CLASSES)
    assert df["event_labels"].tolist() == [["Dog", "Cat"], ["Speech"], []]
    bad = _write(tmp_path / "w2.tsv", "filename\tevent_labels\na.wav\tDog\nb.wav\tDog,Unicorn\n")
    with pytest.raises(InputError, match=r"w2.tsv:3: unknown class 'Unicorn'"):
        read_weak_tsv(bad, classes=CLASSES)
    with pytest.raises(InputError, match=r":1: missing column\(s\) event_labels"):
        read_weak_tsv(_write(tmp_path / "w3.tsv", "filename\tlabels\na.wav\tDog\n"))


def test_events_are_read_as_written_unless_merging_is_asked(tmp_path, caplog):
    path = _write(tmp_path / "o.tsv", "filename\tonset\toffset\tevent_label\n"
                  "a.wav\t0\t2\tDog\na.wav\t1\t3\tDog\na.wav\t2.5\t2.8\tDog\na.wav\t3\t4\tDog\n"
                  "a.wav\t1\t3\tCat\nb.wav\t0\t1\tDog\n")
    assert len(read_strong_tsv(path)) == 6
    with caplog.at_level(logging.WARNING):
        df = read_strong_tsv(path, merge_overlaps=True)
    assert "merged 2 overlapping" in caplog.text
    # [0,2]+[1,3]+[2.5,2.8] -> [0,3]; [3,4] only touches -> kept apart.
    assert df.values.tolist() == [["a.wav", 0.0, 3.0, "Dog"], ["a.wav", 3.0, 4.0, "Dog"],
                                  ["a.wav", 1.0, 3.0, "Cat"], ["b.wav", 0.0, 1.0, "Dog"]]


def test_first_overlap_follows_psds_eval(tmp_path):
    """Touching events and exact duplicates are not overlaps (psds_eval takes them); others are."""
    header = "filename\tonset\toffset\tevent_label\n"
    fine = read_strong_tsv(_write(tmp_path / "f.tsv", header + "a.wav\t0\t2\tDog\na.wav\t2\t3\tDog\n"
                                  "a.wav\t0\t2\tDog\na.wav\t1\t3\tCat\nb.wav\t1\t3\tDog\n"))
    assert first_overlap(fine) is None
    assert duplicated_events(fine).tolist() == [False, False, True, False, False]
    bad = read_strong_tsv(_write(tmp_path / "b.tsv", header + "a.wav\t5\t9\tDog\na.wav\t0\t1\tDog\n"
                                 "a.wav\t0\t1\tDog\na.wav\t8\t8.5\tDog\n"))
    assert first_overlap(bad) == (0, 3)


def test_merge_keeps_empty_rows():
    df = pd.DataFrame({"filename": ["e.wav", "a.wav", "a.wav"], "onset": [np.nan, 0.0, 0.5],
                       "offset": [np.nan, 1.0, 2.0], "event_label": [np.nan, "Dog", "Dog"]})
    out = merge_overlapping_events(df)
    assert out["filename"].tolist() == ["e.wav", "a.wav"]
    assert out.iloc[1].tolist() == ["a.wav", 0.0, 2.0, "Dog"]


HEADER = "filename\tonset\toffset\tevent_label\n"


@pytest.mark.parametrize(
    ("body", "kwargs", "message"),
    [
        ("a.wav\t0\t1\tDog\na.wav\tx\t2\tDog\n", {}, r":3: onset 'x' is not a number"),
        ("a.wav\t0\tabc\tDog\n", {}, r":2: offset 'abc' is not a number"),
        ("a.wav\t2\t1\tDog\n", {}, r":2: onset 2 s is not before offset 1 s"),
        ("a.wav\t1\t1\tDog\n", {}, r":2: onset 1 s is not before offset 1 s"),
        ("a.wav\t-0.5\t1\tDog\n", {}, r":2: negative onset -0.5 s"),
        ("a.wav\t0\t1\tUnicorn\n", {"classes": CLASSES}, r":2: unknown class 'Unicorn'"),
        ("a.wav\t0\t1\tDog\nz.wav\t0\t1\tDog\n", {"durations": {"a.wav": 10.0}},
         r":3: file 'z.wav' is not in the durations table"),
        ("a.wav\t0\t10.6\tDog\n", {"durations": {"a.wav": 10.0}, "clip_to_durations": True},
         r":2: offset 10.6 s is beyond the clip's duration 10 s"),
        ("a.wav\t\t1\tDog\n", {}, r":2: empty onset"),
        ("a.wav\t0\t1\t\n", {}, r":2: empty event_label"),
        ("\t0\t1\tDog\n", {}, r":2: empty filename"),
    ],
)
def test_strong_input_checks(tmp_path, body, kwargs, message):
    path = _write(tmp_path / "bad.tsv", HEADER + body)
    with pytest.raises(InputError, match=message) as info:
        read_strong_tsv(path, **kwargs)
    assert info.value.path == str(path)


def test_missing_column_and_missing_file(tmp_path):
    path = _write(tmp_path / "m.tsv", "filename\tonset\tevent_label\na.wav\t0\tDog\n")
    with pytest.raises(InputError, match=r"m.tsv:1: missing column\(s\) offset"):
        read_strong_tsv(path)
    with pytest.raises(InputError, match="file not found"):
        read_strong_tsv(tmp_path / "nope.tsv")
    with pytest.raises(InputError, match="empty file"):
        read_strong_tsv(_write(tmp_path / "empty.tsv", ""))


def test_line_numbers_count_blank_lines(tmp_path):
    path = _write(tmp_path / "b.tsv", HEADER + "a.wav\t0\t1\tDog\n\n\na.wav\t3\t2\tDog\n")
    with pytest.raises(InputError) as info:
        read_strong_tsv(path)
    assert info.value.line == 5


def test_offset_clipping_and_extension_matching(tmp_path, caplog):
    path = _write(tmp_path / "c.tsv", HEADER + "a.wav\t1\t10.3\tDog\na.wav\t9.9\t10.2\tCat\n"
                  "b.wav\t0\t1\tDog\n")
    with caplog.at_level(logging.WARNING):
        # Durations keyed by clip id (no extension) still match.
        df = read_strong_tsv(path, durations={"a": 9.8, "b": 5.0}, clip_to_durations=True)
    assert df.values.tolist() == [["a.wav", 1.0, 9.8, "Dog"], ["b.wav", 0.0, 1.0, "Dog"]]
    assert "dropped" in caplog.text
    as_written = read_strong_tsv(path, durations={"a": 9.8, "b": 5.0})
    assert as_written["offset"].tolist() == [10.3, 10.2, 1.0]
    late, after = events_past_end(as_written, {"a": 9.8, "b": 5.0})
    assert late.tolist() == [True, True, False] and after.tolist() == [False, True, False]


def test_duration_checks(tmp_path):
    with pytest.raises(InputError, match=r":3: duration 'ten' is not a number"):
        read_durations_tsv(_write(tmp_path / "d1.tsv", "filename\tduration\na\t1\nb\tten\n"))
    with pytest.raises(InputError, match=r":2: duration 0 s is not positive"):
        read_durations_tsv(_write(tmp_path / "d2.tsv", "filename\tduration\na\t0\n"))
    with pytest.raises(InputError, match=r":3: 'a' listed again"):
        read_durations_tsv(_write(tmp_path / "d3.tsv", "filename\tduration\na\t1\na\t2\n"))


def test_clip_id_and_lookup():
    assert clip_id("dir/Y1_0.000_10.000.wav") == "Y1_0.000_10.000"
    assert clip_id("x.FLAC") == "x" and clip_id("noext") == "noext"
    assert lookup_duration({"a.wav": 3.0}, "a") == 3.0
    assert lookup_duration({"a": 3.0}, "a.wav") == 3.0
    assert lookup_duration({"a": 3.0}, "b.wav") is None


@pytest.mark.parametrize("reader", [read_strong_tsv, read_durations_tsv, read_weak_tsv])
def test_a_repeated_column_name_is_an_error_naming_the_file(tmp_path, reader):
    """pandas would rename the second one (``onset.1``) and read the first: refuse instead."""
    path = _write(tmp_path / "twice.tsv", "filename\tonset\toffset\tevent_label\tduration\t"
                  "event_labels\tonset\na.wav\t0\t1\tDog\t10\tDog\t5\n")
    with pytest.raises(InputError, match=r"twice.tsv:1: column name 'onset' appears more than once"):
        reader(path)
