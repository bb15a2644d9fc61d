"""``atst-sed detect -o events.csv`` feeds ``atst-sed evaluate --predictions events.csv`` (F1 metrics).

The CSV is scored exactly as the same events written as a DESED TSV, and as sed_eval scores them by
hand; its file names (folder-relative, with extension, quoted when they hold a comma) are matched to
the ground truth by clip id, as a TSV's are.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import sed_eval
import soundfile as sf

from atst_sed.cli.main import main
from atst_sed.events import clip_id, write_durations_tsv, write_events_tsv
from inference_helpers import ALWAYS, CLASSES, LOUD, noise_with_bursts

# clip name in the ground truth → (duration s, loud bursts (s)); sub/ checks folder-relative names,
# the comma checks a quoted CSV field.
RECORDINGS = {"a.wav": (12.0, [(1.0, 2.5), (8.0, 9.0)]), "sub/b.wav": (10.0, [(2.0, 4.0)]),
              "c,d.wav": (8.0, [(5.0, 6.5)])}


@pytest.fixture
def detected(tmp_path, loud_ckpt, capsys):
    """(events.csv written by ``atst-sed detect``, ground truth TSV, durations TSV)."""
    folder = tmp_path / "in"
    for i, (name, (seconds, bursts)) in enumerate(RECORDINGS.items()):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(folder / name, noise_with_bursts(seconds, bursts, seed=i), 16000)
    csv = tmp_path / "events.csv"
    assert main(["detect", str(folder), "-c", str(loud_ckpt), "-o", str(csv)]) == 0
    capsys.readouterr()
    # The ground truth names clips without folders, as DESED does; it misses the first burst's
    # start by 0.3 s so the scores are not trivially perfect.
    rows = [(name.split("/")[-1], on + (0.3 if k == 0 else 0.0), off, LOUD)
            for name, (_, bursts) in RECORDINGS.items() for k, (on, off) in enumerate(bursts)]
    gt = tmp_path / "gt.tsv"
    write_events_tsv(gt, pd.DataFrame(rows, columns=["filename", "onset", "offset", "event_label"]))
    durations = tmp_path / "durations.tsv"
    write_durations_tsv(durations, {name.split("/")[-1]: seconds for name, (seconds, _) in RECORDINGS.items()})
    return csv, gt, durations


def _evaluate(predictions, gt, durations, out, capsys) -> dict:
    rc = main(["evaluate", "--ground-truth", str(gt), "--durations", str(durations),
               "--predictions", str(predictions), "--classes", ",".join(CLASSES), "--json", str(out)])
    err = capsys.readouterr().err
    assert rc == 0, err
    return json.loads(out.read_text())


def test_evaluate_scores_detects_csv_as_the_same_events_in_a_tsv(detected, tmp_path, capsys):
    csv, gt, durations = detected
    events = pd.read_csv(csv)
    assert list(events.columns) == ["filename", "onset", "offset", "event_label", "score"]
    assert {"a.wav", "sub/b.wav", "c,d.wav"} <= set(events["filename"])  # what detect wrote
    tsv = tmp_path / "events.tsv"
    write_events_tsv(tsv, events.assign(filename=events["filename"].map(lambda n: n.split("/")[-1])))

    from_csv = _evaluate(csv, gt, durations, tmp_path / "csv.json", capsys)
    from_tsv = _evaluate(tsv, gt, durations, tmp_path / "tsv.json", capsys)
    assert from_csv["kind"] == "events"
    assert from_csv["n_clips_evaluated"] == 3 and from_csv["n_clips_missing"] == 0
    for key in ("event_f1", "segment_f1", "intersection_f1"):
        assert from_csv[key] == from_tsv[key]
    assert 0.0 < from_csv["event_f1"]["micro"] < 1.0


def test_detects_csv_scores_what_sed_eval_gives_by_hand(detected, tmp_path, capsys):
    csv, gt, durations = detected
    result = _evaluate(csv, gt, durations, tmp_path / "m.json", capsys)

    events = pd.read_csv(csv).assign(filename=lambda d: d["filename"].map(clip_id))
    truth = pd.read_csv(gt, sep="\t").assign(filename=lambda d: d["filename"].map(clip_id))
    metric = sed_eval.sound_event.EventBasedMetrics(
        event_label_list=CLASSES, t_collar=0.2, percentage_of_length=0.2, empty_system_output_handling="zero_score")
    for clip in truth["filename"].unique():
        ref = truth[truth["filename"] == clip].to_dict("records")
        est = events[events["filename"] == clip].drop(columns="score").to_dict("records") or [{"filename": clip}]
        metric.evaluate(ref, est)
    by_hand = metric.results()
    assert result["event_f1"]["micro"] == pytest.approx(by_hand["overall"]["f_measure"]["f_measure"])
    assert result["event_f1"]["class_wise"][LOUD] == pytest.approx(
        by_hand["class_wise"][LOUD]["f_measure"]["f_measure"])
    assert not np.isnan(result["event_f1"]["micro"])


def test_a_csv_without_the_event_columns_names_the_file_and_the_separator(detected, tmp_path, capsys):
    _, gt, durations = detected
    bad = tmp_path / "bad.csv"
    bad.write_text("file,start,end\na.wav,1,2\n")
    rc = main(["evaluate", "--ground-truth", str(gt), "--durations", str(durations), "--predictions", str(bad)])
    err = capsys.readouterr().err
    assert rc == 2
    assert f"{bad}:1: missing column(s) filename, onset, offset, event_label" in err
    assert "comma-separated header" in err


def test_the_scores_dir_holds_the_scores_the_csv_was_decoded_from(tmp_path, loud_ckpt, capsys):
    """--scores-dir: the post-processed scores (the checkpoint's 7-frame median filter), so evaluating
    them at the CSV's threshold scores exactly the CSV's events; --raw-scores-dir: the model's own
    scores, in which a click too short for the median filter is still an event."""
    import scipy.ndimage

    from atst_sed.score_files import read_score_files

    folder = tmp_path / "in"
    folder.mkdir()
    # a 1.5 s burst the filter keeps, a 60 ms click it removes
    sf.write(folder / "x.wav", noise_with_bursts(10.0, [(2.0, 3.5), (6.0, 6.06)]), 16000)
    sf.write(folder / "y.wav", noise_with_bursts(8.0, [(1.0, 4.0)], seed=1), 16000)
    csv, filtered, raw = tmp_path / "events.csv", tmp_path / "scores", tmp_path / "scores_raw"
    assert main(["detect", str(folder), "-c", str(loud_ckpt), "--thresholds", "0.5", "-o", str(csv),
                 "--scores-dir", str(filtered), "--raw-scores-dir", str(raw)]) == 0
    summary = capsys.readouterr().err.strip()
    assert f"→ {csv}, post-processed scores in {filtered}, raw scores in {raw} (" in summary, summary
    (got, _), (plain, _) = read_score_files(filtered), read_score_files(raw)
    assert sorted(got) == sorted(plain) == ["x", "y"]
    for clip in ("x", "y"):
        np.testing.assert_allclose(
            got[clip][CLASSES].to_numpy(),
            scipy.ndimage.median_filter(plain[clip][CLASSES].to_numpy(), size=(7, 1), mode="reflect"), atol=1e-6)
        np.testing.assert_array_equal(got[clip][["onset", "offset"]], plain[clip][["onset", "offset"]])
    assert (plain["x"][LOUD] > 0.5).sum() > (got["x"][LOUD] > 0.5).sum()  # the click is in the raw scores only

    # every class has an event (sed_scores_eval's PSDS needs ground truth for each); the others are missed
    rows = [("x.wav", 2.0, 3.5, LOUD), ("y.wav", 1.0, 4.0, LOUD), ("x.wav", 0.0, 10.0, ALWAYS),
            *(("y.wav", 5.0, 6.0, name) for name in CLASSES[2:])]
    gt = tmp_path / "gt.tsv"
    write_events_tsv(gt, pd.DataFrame(rows, columns=["filename", "onset", "offset", "event_label"]))
    durations = tmp_path / "durations.tsv"
    write_durations_tsv(durations, {"x.wav": 10.0, "y.wav": 8.0})
    from_csv = _evaluate(csv, gt, durations, tmp_path / "csv.json", capsys)
    from_scores = _evaluate(filtered, gt, durations, tmp_path / "scores.json", capsys)
    from_raw = _evaluate(raw, gt, durations, tmp_path / "raw.json", capsys)
    assert from_scores["kind"] == "scores" and from_scores["f1_threshold"] == 0.5
    for key in ("event_f1", "segment_f1", "intersection_f1"):
        assert from_scores[key] == from_csv[key], key
    assert from_raw["event_f1"]["class_wise"][LOUD] < from_csv["event_f1"]["class_wise"][LOUD]


def test_the_help_says_which_scores_each_folder_gets(capsys):
    with pytest.raises(SystemExit):
        main(["detect", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--scores-dir DIR write per-file frame score TSVs (sed_scores_eval format) after the median filter" in text
    assert "--raw-scores-dir DIR write per-file frame score TSVs before the median filter" in text
    assert "--scores-dir writes the post-processed scores" in text
