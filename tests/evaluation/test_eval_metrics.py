"""Evaluation wrappers against the reference libraries called by hand on tiny hand-made sets."""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from psds_eval import PSDSEval
from sed_scores_eval.base_modules.detection import scores_to_event_list
from sed_scores_eval.base_modules.io import read_sed_scores

from atst_sed.errors import InputError
from atst_sed.evaluation import (
    DCASE2022_THRESHOLDS,
    SCENARIOS,
    evaluate_event_table,
    evaluate_operating_points,
    evaluate_scores,
    event_based_f1,
    intersection_f1,
    nearest_threshold,
    psds_from_operating_points,
    read_score_files,
    score_dataframe,
    scores_to_operating_points,
    segment_based_f1,
    threshold_free_psds,
    write_score_files,
)

from evaluation_helpers import (
    CLASSES,
    THRESHOLDS,
    make_operating_points,
    make_scores,
    psds_eval_by_hand,
    sed_eval_by_hand,
    sed_scores_eval_by_hand,
)

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


# ------------------------------------------------------------------------------------ constants
def test_dcase2022_constants():
    assert len(DCASE2022_THRESHOLDS) == 50
    assert DCASE2022_THRESHOLDS[:3] == (0.01, 0.03, 0.05) and DCASE2022_THRESHOLDS[-1] == 0.99
    assert (SCENARIOS["psds1"].dtc, SCENARIOS["psds1"].gtc, SCENARIOS["psds1"].alpha_ct,
            SCENARIOS["psds1"].alpha_st) == (0.7, 0.7, 0.0, 1.0)
    assert (SCENARIOS["psds2"].dtc, SCENARIOS["psds2"].gtc, SCENARIOS["psds2"].cttc,
            SCENARIOS["psds2"].alpha_ct) == (0.1, 0.1, 0.3, 0.5)
    assert nearest_threshold(DCASE2022_THRESHOLDS, 0.5) == 0.49
    assert nearest_threshold([0.1, 0.7], 0.5) == 0.7


# ----------------------------------------------------------------------------- perfect / none
def test_perfect_detection(gt, durations):
    ops = {t: gt.dropna().reset_index(drop=True) for t in THRESHOLDS}
    result = evaluate_operating_points(ops, gt, durations, CLASSES, n_jobs=1)
    assert result["event_f1"]["micro"] == pytest.approx(1.0)
    assert result["event_f1"]["macro"] == pytest.approx(1.0)
    assert result["segment_f1"]["micro"] == pytest.approx(1.0)
    assert result["intersection_f1"]["macro"] == pytest.approx(1.0)
    assert all(v == pytest.approx(1.0) for v in result["event_f1"]["class_wise"].values())
    for name in ("psds1", "psds2"):
        assert result[name] == pytest.approx(psds_eval_by_hand(ops, gt, durations, name))
        assert result[name] > 0.99  # psds_eval gives ~1 (one operating point, no FP)
    assert result["n_clips_evaluated"] == 6
    assert result["n_clips_missing"] == 1 and result["missing_clips"] == ["e"]  # no events, none predicted


def test_no_detection(gt, durations):
    empty = pd.DataFrame(columns=["filename", "onset", "offset", "event_label"])
    ops = {t: empty for t in THRESHOLDS}
    result = evaluate_operating_points(ops, gt, durations, CLASSES, n_jobs=1)
    assert result["psds1"] == 0.0 and result["psds2"] == 0.0
    assert result["event_f1"]["micro"] == 0.0 and result["event_f1"]["macro"] == 0.0
    assert result["intersection_f1"]["macro"] == 0.0
    assert result["n_clips_missing"] == 6


def test_partial_matches_libraries_by_hand(gt, durations):
    ops = make_operating_points(gt, seed=3)
    snapshot = {t: df.copy() for t, df in ops.items()}
    result = evaluate_operating_points(ops, gt, durations, CLASSES, n_jobs=1)
    for name in ("psds1", "psds2"):
        expected = psds_eval_by_hand(ops, gt, durations, name)
        assert 0.05 < expected < 0.95  # a real partial case
        assert result[name] == pytest.approx(expected, abs=1e-12)
    event, segment = sed_eval_by_hand(ops[0.5], gt)
    assert result["f1_threshold"] == 0.5
    assert result["event_f1"]["micro"] == pytest.approx(event["overall"]["f_measure"]["f_measure"])
    assert result["event_f1"]["macro"] == pytest.approx(
        event["class_wise_average"]["f_measure"]["f_measure"])
    assert result["segment_f1"]["micro"] == pytest.approx(segment["overall"]["f_measure"]["f_measure"])
    for c in CLASSES:
        assert result["event_f1"]["class_wise"][c] == pytest.approx(
            event["class_wise"][c]["f_measure"]["f_measure"], nan_ok=True)
    meta = pd.DataFrame({"filename": list(durations), "duration": list(durations.values())})
    by_hand = PSDSEval(0.5, 0.5, 0.3, ground_truth=gt.dropna(), metadata=meta)
    macro, per_class = by_hand.compute_macro_f_score(ops[0.5])
    assert result["intersection_f1"]["macro"] == pytest.approx(macro)
    assert result["intersection_f1"]["class_wise"] == pytest.approx(per_class)
    # Inputs are not mutated (DESED_task's wrapper adds an index column in place).
    for t in ops:
        pd.testing.assert_frame_equal(ops[t], snapshot[t])


def test_single_metric_functions_agree(gt, durations):
    pred = make_operating_points(gt, seed=1)[0.3]
    event, segment = sed_eval_by_hand(pred, gt)
    assert event_based_f1(pred, gt, CLASSES)["macro"] == pytest.approx(
        event["class_wise_average"]["f_measure"]["f_measure"])
    assert segment_based_f1(pred, gt, CLASSES)["micro"] == pytest.approx(
        segment["overall"]["f_measure"]["f_measure"])
    assert 0 < intersection_f1(pred, gt, durations, CLASSES)["macro"] < 1


def test_filenames_with_or_without_extension(gt, durations):
    ops = make_operating_points(gt, seed=2)
    stripped = {t: df.assign(filename=df["filename"].str.removesuffix(".wav")) for t, df in ops.items()}
    a = evaluate_operating_points(ops, gt, durations, CLASSES, n_jobs=1)
    b = evaluate_operating_points(stripped, gt, {k[:-4]: v for k, v in durations.items()}, CLASSES,
                                  n_jobs=1)
    for key in ("psds1", "psds2", "event_f1", "segment_f1", "intersection_f1"):
        assert a[key] == b[key]


def test_parallel_equals_serial(gt, durations):
    ops = make_operating_points(gt, seed=4)
    serial = evaluate_operating_points(ops, gt, durations, CLASSES, n_jobs=1)
    parallel = evaluate_operating_points(ops, gt, durations, CLASSES, n_jobs=2)
    assert serial == parallel


def test_restricting_clips(gt, durations):
    ops = make_operating_points(gt, seed=5)
    result = evaluate_operating_points(ops, gt, durations, CLASSES, n_jobs=1,
                                       clips=["a.wav", "b", "c.wav", "d.wav", "f.wav"])
    sub_gt = gt[gt["filename"] != "e.wav"]
    sub_dur = {k: v for k, v in durations.items() if k != "e.wav"}
    sub_ops = {t: df[df["filename"] != "e.wav"] for t, df in ops.items()}
    assert result["n_clips_evaluated"] == 5 and result["n_clips_missing"] == 1
    assert result["psds1"] == pytest.approx(psds_eval_by_hand(sub_ops, sub_gt, sub_dur, "psds1"))


def test_event_table_f1(gt, durations):
    pred = make_operating_points(gt, seed=6)[0.5]
    result = evaluate_event_table(pred, gt, durations, CLASSES)
    event, _ = sed_eval_by_hand(pred, gt)
    assert result["event_f1"]["macro"] == pytest.approx(
        event["class_wise_average"]["f_measure"]["f_measure"])
    assert "psds1" not in result


# --------------------------------------------------------------------------------- score files
def test_score_files_round_trip(tmp_path, gt):
    scores = make_scores(gt, seed=0)
    offsets = {"b.wav": 10.0}
    paths = write_score_files(tmp_path, scores, CLASSES, 0.04, offset_seconds=offsets)
    assert sorted(p.name for p in paths) == [f"{c}.tsv" for c in "abcdef"]
    back, classes = read_score_files(tmp_path)
    assert classes == CLASSES and sorted(back) == list("abcdef")
    for name, values in scores.items():
        key = name[:-4]
        expected = score_dataframe(values, CLASSES, 0.04, offsets.get(name, 0.0))
        pd.testing.assert_frame_equal(back[key], expected)
        np.testing.assert_array_equal(back[key][CLASSES].to_numpy(), values)  # bit-exact
        pd.testing.assert_frame_equal(read_sed_scores(tmp_path / f"{key}.tsv"), expected,
                                      check_exact=False, rtol=1e-15)
    assert back["b"]["onset"].iloc[0] == 10.0 and back["a"]["offset"].iloc[-1] == 10.0
    assert back["a"]["onset"].iloc[100] == 4.0  # integer frame arithmetic, no drift


def test_score_decoding_matches_sed_scores_eval(gt):
    frames = {k[:-4]: score_dataframe(v, CLASSES, 0.04) for k, v in make_scores(gt, seed=1).items()}
    thresholds = [0.05, 0.3, 0.5, 0.77, 0.99]
    decoded = scores_to_operating_points(frames, thresholds)
    for t in thresholds:
        expected = sorted((k, *e) for k, v in frames.items() for e in scores_to_event_list(v, t))
        got = sorted(decoded[t].itertuples(index=False, name=None))
        assert got == expected and len(expected) > 0


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("x.tsv", "onset\toffset\tCat\n0\t0.04\t0.5\n0.04\t0.08\tnan\n",
         r"x.tsv:3: column 'Cat': value nan is not a finite number$"),
        ("x.tsv", "onset\toffset\tCat\n0\t0.04\t0.5\n0.04\t0.08\thigh\n",
         r"x.tsv:3: column 'Cat': value 'high' is not a finite number"),
        ("x.tsv", "start\tend\tCat\n0\t1\t0.5\n", r"x.tsv:1: score files need the header"),
        ("x.tsv", "onset\toffset\tCat\n0\t0.04\t0.5\n0.05\t0.08\t0.1\n",
         r"x.tsv:3: frame onset 0.05 s differs from the previous frame's offset 0.04 s"),
        # decreasing times that still chain (sed_scores_eval's own check lets these through)
        ("x.tsv", "onset\toffset\tCat\n0.08\t0.04\t0.5\n0.04\t0\t0.1\n",
         r"x.tsv:2: frame offset 0.04 s is not after its onset 0.08 s"),
        ("x.tsv", "onset\toffset\tCat\n", r"x.tsv:2: no frames"),
        ("x.tsv", "onset\toffset\tCat\tCat\n0\t1\t0.5\t0.1\n",
         r"x.tsv:1: column name 'Cat' appears more than once in the header"),
    ],
)
def test_score_file_checks(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(InputError, match=message):
        read_score_files(tmp_path)


def test_score_file_class_mismatch_and_empty(tmp_path):
    with pytest.raises(InputError, match="no score files"):
        read_score_files(tmp_path)
    (tmp_path / "a.tsv").write_text("onset\toffset\tCat\tDog\n0\t1\t0.5\t0.1\n")
    (tmp_path / "b.tsv").write_text("onset\toffset\tDog\tCat\n0\t1\t0.5\t0.1\n")
    with pytest.raises(InputError, match=r"b.tsv:1: class columns"):
        read_score_files(tmp_path)


# -------------------------------------------------------------------------------- threshold-free
def test_threshold_free_matches_sed_scores_eval(gt, durations):
    frames = {k[:-4]: score_dataframe(v, CLASSES, 0.04) for k, v in make_scores(gt, seed=2).items()}
    from atst_sed.evaluation import canonical_events

    for name in ("psds1", "psds2"):
        result = threshold_free_psds(frames, canonical_events(gt), {k[:-4]: v for k, v in
                                                                    durations.items()}, name)
        expected = sed_scores_eval_by_hand(frames, gt, durations, name)
        assert 0.01 < expected < 0.99  # a real partial case
        assert result.value == pytest.approx(expected, abs=1e-12)
        assert result.evaluator == "sed_scores_eval" and set(result.per_class) == set(CLASSES)


def test_threshold_free_psds2_with_one_labelled_class_counts_no_cross_triggers(gt, durations):
    # Cross-triggers are counted on the other classes' ground truth; with one class there is none
    # (sed_scores_eval 0.0.4 crashes on the empty statistics): PSDS2 is then its alpha_ct = 0 value.
    one = gt[gt["event_label"] == "Speech"]
    clips = sorted(set(one["filename"]))
    frames = {k[:-4]: score_dataframe(v, CLASSES, 0.04) for k, v in make_scores(gt, seed=2).items()
              if k in clips}
    dur = {k[:-4]: durations[k] for k in clips}
    from atst_sed.evaluation import canonical_events

    result = threshold_free_psds(frames, canonical_events(one), dur, "psds2")
    no_ct = replace(SCENARIOS["psds2"], alpha_ct=0.0)
    assert result.value == pytest.approx(threshold_free_psds(frames, canonical_events(one), dur,
                                                             no_ct).value, abs=1e-12)
    assert result.value > 0.0 and set(result.per_class) == {"Speech"}


def test_perfect_scores_threshold_free(gt, durations):
    frames = {k: score_dataframe(v, CLASSES, 0.04) for k, v in make_scores(gt, perfect=True).items()}
    result = evaluate_scores(frames, gt, durations, CLASSES, thresholds=THRESHOLDS, n_jobs=1)
    assert result["psds1_threshold_free"] == pytest.approx(
        sed_scores_eval_by_hand({k[:-4]: v for k, v in frames.items()}, gt, durations, "psds1"))
    assert result["psds1_threshold_free"] > 0.99
    assert result["psds1"] > 0.99 and result["event_f1"]["macro"] == pytest.approx(1.0)
    assert result["n_clips_missing"] == 0 and result["f1_threshold"] == 0.5


def test_evaluate_scores_missing_clip_left_out(gt, durations):
    frames = {k: score_dataframe(v, CLASSES, 0.04) for k, v in make_scores(gt, seed=3).items()
              if k != "c.wav"}
    result = evaluate_scores(frames, gt, durations, CLASSES, thresholds=THRESHOLDS, n_jobs=1)
    assert result["n_clips_evaluated"] == 5 and result["missing_clips"] == ["c"]
    sub_gt = gt[gt["filename"] != "c.wav"]
    sub_dur = {k: v for k, v in durations.items() if k != "c.wav"}
    assert result["psds2_threshold_free"] == pytest.approx(sed_scores_eval_by_hand(
        {k[:-4]: v for k, v in frames.items()}, sub_gt, sub_dur, "psds2"))
    ops = scores_to_operating_points({k[:-4]: v for k, v in frames.items()}, THRESHOLDS)
    assert result["psds1"] == pytest.approx(psds_eval_by_hand(ops, sub_gt, sub_dur, "psds1"))


def test_psds_result_curves(gt, durations):
    from atst_sed.evaluation import canonical_events

    ops = {t: canonical_events(df) for t, df in make_operating_points(gt, seed=7).items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = psds_from_operating_points(ops, canonical_events(gt),
                                            {k[:-4]: v for k, v in durations.items()}, "psds2")
    assert result.n_operating_points == len(THRESHOLDS)
    assert set(result.per_class) == set(CLASSES)
    assert result.efpr.shape == result.etpr.shape and np.all(np.diff(result.efpr) >= 0)
