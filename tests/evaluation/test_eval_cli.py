"""``atst-sed evaluate`` on the three kinds of PATH, its JSON, PNGs and input checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from evaluation_helpers import (
    CLASSES,
    make_operating_points,
    make_scores,
    psds_eval_by_hand,
    sed_eval_by_hand,
    sed_scores_eval_by_hand,
)

from atst_sed.cli.main import main
from atst_sed.evaluation import score_dataframe, write_score_files
from atst_sed.events import write_durations_tsv, write_events_tsv

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


@pytest.fixture()
def files(tmp_path, gt, durations):
    write_events_tsv(tmp_path / "gt.tsv", gt)
    write_durations_tsv(tmp_path / "dur.tsv", durations)
    return tmp_path / "gt.tsv", tmp_path / "dur.tsv"


def _run(files, predictions, *extra):
    gt_path, dur_path = files
    return main(["evaluate", "--ground-truth", str(gt_path), "--durations", str(dur_path),
                 "--predictions", str(predictions), "--jobs", "1", *extra])


def _png_ok(path: Path) -> None:
    import matplotlib.image

    assert path.is_file() and path.stat().st_size > 20_000
    image = matplotlib.image.imread(path)
    assert image.shape[0] > 300 and image.shape[1] > 600
    assert float(np.std(image[..., :3])) > 0.05  # not a blank canvas


def test_operating_point_folder(tmp_path, files, gt, durations):
    ops = make_operating_points(gt, seed=3)
    folder = tmp_path / "ops"
    for t, df in ops.items():
        write_events_tsv(folder / f"predictions_th_{t:.2f}.tsv", df)
    out = tmp_path / "m.json"
    assert _run(files, folder, "--json", str(out), "--plots", str(tmp_path / "plots")) == 0
    result = json.loads(out.read_text())
    assert result["kind"] == "operating_points" and result["n_operating_points"] == 5
    for name in ("psds1", "psds2"):
        assert result[name] == pytest.approx(psds_eval_by_hand(ops, gt, durations, name))
    event, segment = sed_eval_by_hand(ops[0.5], gt)
    assert result["event_f1"]["micro"] == pytest.approx(event["overall"]["f_measure"]["f_measure"])
    assert result["segment_f1"]["macro"] == pytest.approx(
        segment["class_wise_average"]["f_measure"]["f_measure"])
    assert set(result["event_f1"]["class_wise"]) == set(CLASSES)
    assert {"n_clips_evaluated", "n_clips_missing", "intersection_f1", "f1_threshold",
            "classes", "evaluators"} <= set(result)
    assert len(result["plots"]) == 2
    for p in result["plots"]:
        _png_ok(Path(p))


def test_score_folder(tmp_path, files, gt, durations):
    scores = make_scores(gt, seed=5)
    write_score_files(tmp_path / "scores", scores, CLASSES, 0.04)
    out = tmp_path / "m.json"
    assert _run(files, tmp_path / "scores", "--json", str(out), "--plots",
                str(tmp_path / "plots")) == 0
    result = json.loads(out.read_text())
    assert result["kind"] == "scores" and result["n_operating_points"] == 50
    frames = {k[:-4]: score_dataframe(v, CLASSES, 0.04) for k, v in scores.items()}
    for name in ("psds1", "psds2"):
        assert result[f"{name}_threshold_free"] == pytest.approx(
            sed_scores_eval_by_hand(frames, gt, durations, name))
        assert 0 <= result[name] <= 1
    assert result["n_clips_evaluated"] == 6 and result["n_clips_missing"] == 0
    assert len(result["plots"]) == 4
    for p in result["plots"]:
        _png_ok(Path(p))


def test_event_table_and_nan_rows(tmp_path, files, gt):
    pred = make_operating_points(gt, seed=8)[0.3]
    with_empty = pd.concat([pred, pd.DataFrame([{"filename": "e.wav"}])], ignore_index=True)
    write_events_tsv(tmp_path / "pred.tsv", with_empty)
    out = tmp_path / "m.json"
    assert _run(files, tmp_path / "pred.tsv", "--json", str(out)) == 0
    result = json.loads(out.read_text())
    event, _ = sed_eval_by_hand(pred, gt)
    assert result["kind"] == "events" and "psds1" not in result
    assert result["event_f1"]["macro"] == pytest.approx(
        event["class_wise_average"]["f_measure"]["f_measure"])


def test_missing_clips_warned_and_excluded(tmp_path, files, gt, durations, capsys, caplog):
    ops = {t: df[df["filename"] != "a.wav"] for t, df in make_operating_points(gt, seed=3).items()}
    folder = tmp_path / "ops"
    for t, df in ops.items():
        write_events_tsv(folder / f"predictions_th_{t:.2f}.tsv", df)
    out = tmp_path / "m.json"
    assert _run(files, folder, "--json", str(out)) == 0
    result = json.loads(out.read_text())
    assert result["n_clips_missing"] == 1 and result["missing_clips"] == ["a"]
    assert result["n_clips_evaluated"] == 6  # counted as "nothing detected"
    assert "have no prediction" in caplog.text
    assert _run(files, folder, "--json", str(out), "--exclude-missing") == 0
    result = json.loads(out.read_text())
    assert result["n_clips_evaluated"] == 5 and result["n_clips_missing"] == 1
    sub = {k: v for k, v in durations.items() if k != "a.wav"}
    assert result["psds1"] == pytest.approx(
        psds_eval_by_hand(ops, gt[gt["filename"] != "a.wav"], sub, "psds1"))


def test_overlapping_events_of_one_class_are_refused(tmp_path, files, gt, capsys):
    """psds_eval refuses them in the ground truth and in predictions: one line naming the file."""
    gt_path, dur_path = files
    pred = make_operating_points(gt, seed=8)[0.3]
    write_events_tsv(tmp_path / "pred.tsv", pd.concat(
        [pred, pd.DataFrame([("b.wav", 0.5, 1.5, "Dog"), ("b.wav", 1.0, 2.0, "Dog")],
                            columns=pred.columns)], ignore_index=True))
    assert _run(files, tmp_path / "pred.tsv") == 2
    assert "pred.tsv: clip 'b.wav': Dog events" in capsys.readouterr().err
    with gt_path.open("a") as handle:
        handle.write("a.wav\t1.500\t2.500\tCat\n")  # overlaps a.wav Cat 0.5-2.0
    assert _run(files, tmp_path / "pred.tsv") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "gt.tsv: clip 'a.wav': Cat events 0.5-2 s and 1.5-2.5 s overlap" in err[0]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("a.wav\t1\t2\tUnicorn\n", r"pred.tsv:3: unknown class 'Unicorn'"),
        ("zz.wav\t1\t2\tCat\n", r"pred.tsv:3: file 'zz.wav' is not in the durations table"),
        ("a.wav\t3\t2\tCat\n", r"pred.tsv:3: onset 3 s is not before offset 2 s"),
        ("a.wav\tx\t2\tCat\n", r"pred.tsv:3: onset 'x' is not a number"),
    ],
)
def test_bad_predictions_exit_2(tmp_path, files, capsys, body, message):
    (tmp_path / "pred.tsv").write_text("filename\tonset\toffset\tevent_label\n"
                                       "b.wav\t0\t1\tDog\n" + body)
    assert _run(files, tmp_path / "pred.tsv") == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len([line for line in err.splitlines() if "error" in line]) == 1
    import re
    assert re.search(message, err)


def test_bad_inputs_exit_2(tmp_path, files, capsys):
    gt_path, dur_path = files
    bad_gt = tmp_path / "bad_gt.tsv"
    bad_gt.write_text("filename\tonset\tevent_label\na.wav\t0\tCat\n")
    assert main(["evaluate", "--ground-truth", str(bad_gt), "--durations", str(dur_path),
                 "--predictions", str(gt_path)]) == 2
    assert "bad_gt.tsv:1: missing column(s) offset" in capsys.readouterr().err
    assert _run(files, tmp_path / "nothing_here") == 2
    assert "predictions path not found" in capsys.readouterr().err
    (tmp_path / "weird").mkdir()
    (tmp_path / "weird" / "x.tsv").write_text("a\tb\n1\t2\n")
    assert _run(files, tmp_path / "weird") == 2
    assert "x.tsv:1: neither a predictions_th" in capsys.readouterr().err
    write_score_files(tmp_path / "scores", {"a.wav": np.zeros((10, 2))}, ["Cat", "Unicorn"], 0.04)
    assert _run(files, tmp_path / "scores") == 2
    assert "unknown class column(s) Unicorn" in capsys.readouterr().err
    write_score_files(tmp_path / "scores2", {"zz.wav": np.zeros((10, 3))}, CLASSES, 0.04)
    assert _run(files, tmp_path / "scores2") == 2
    assert "clip 'zz' is not in the durations table" in capsys.readouterr().err


def test_desed_classes_option(tmp_path, files, gt, capsys):
    pred = make_operating_points(gt, seed=8)[0.3]
    write_events_tsv(tmp_path / "pred.tsv", pred)
    out = tmp_path / "m.json"
    assert _run(files, tmp_path / "pred.tsv", "--classes", "desed", "--json", str(out)) == 0
    result = json.loads(out.read_text())
    assert len(result["classes"]) == 10 and "Vacuum_cleaner" in result["classes"]
    assert _run(files, tmp_path / "pred.tsv", "--classes", "Cat,Dog") == 2
    assert "unknown class 'Speech'" in capsys.readouterr().err


def test_f1_names_the_operating_point_it_used_when_none_is_at_the_threshold(tmp_path, files, gt, capsys, caplog):
    """DCASE 2022 writes thresholds 0.01, 0.03, …, 0.49, 0.51, …: none is 0.5. The F1 scores then come
    from the nearest file, and the log, the table and the JSON say which one."""
    ops = make_operating_points(gt, seed=3)
    folder = tmp_path / "ops"
    for t, df in ops.items():
        if t == 0.5:
            write_events_tsv(folder / "predictions_th_0.49.tsv", df)
        else:
            write_events_tsv(folder / f"predictions_th_{t:.2f}.tsv", df)
    out = tmp_path / "m.json"
    with caplog.at_level("INFO", logger="atst_sed.evaluation.files"):
        assert _run(files, folder, "--json", str(out), "--threshold", "0.5") == 0
    result = json.loads(out.read_text())
    assert result["f1_threshold"] == 0.49 and result["f1_threshold_requested"] == 0.5
    assert result["f1_operating_point"] == str(folder / "predictions_th_0.49.tsv")
    event, _ = sed_eval_by_hand(ops[0.5], gt)  # the table written as 0.49
    assert result["event_f1"]["micro"] == pytest.approx(event["overall"]["f_measure"]["f_measure"])
    said = [r.getMessage() for r in caplog.records if "predictions_th_0.49.tsv" in r.getMessage()]
    assert said == ["F1 at threshold 0.49: predictions_th_0.49.tsv is the operating point nearest to --threshold 0.5"]
    table = capsys.readouterr().out
    assert "F1 operating point" in table and "predictions_th_0.49.tsv" in table and "nearest to 0.5" in table
    # a threshold that has its own file: named in the JSON, nothing to say in the log
    caplog.clear()
    with caplog.at_level("INFO", logger="atst_sed.evaluation.files"):
        assert _run(files, folder, "--json", str(out), "--threshold", "0.3") == 0
    result = json.loads(out.read_text())
    assert result["f1_operating_point"] == str(folder / "predictions_th_0.30.tsv") and result["f1_threshold"] == 0.3
    assert not [r for r in caplog.records if "nearest" in r.getMessage()]
