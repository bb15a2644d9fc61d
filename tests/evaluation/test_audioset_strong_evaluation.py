"""Evaluation in the AudioSet-strong setting: Google's TSV header (``segment_id start_time_seconds
end_time_seconds label``, MIDs as labels), PSDS with α_st = 0 as the ATST papers score it (equal to
psds_eval / sed_scores_eval called by hand with α_st = 0), and threshold-free PSDS2, whose
cross-trigger statistics grow with classes², left out with a reason when they would not fit in memory."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from evaluation_helpers import CLASSES, DURATIONS, make_operating_points, make_scores
from psds_eval import PSDSEval
from sed_scores_eval import intersection_based

from atst_sed.cli.main import main
from atst_sed.evaluation import evaluate_operating_points, evaluate_scores, score_dataframe
from atst_sed.evaluation import metrics as metrics_module
from atst_sed.evaluation.psds import cross_trigger_bytes, scenarios
from atst_sed.events import read_strong_tsv

# MIDs of the three test classes (Cat, Dog, Speech)
MID = {"Cat": "/m/01yrx", "Dog": "/m/0bt9lr", "Speech": "/m/09x0r"}
PSDS1_ALPHA_ST0 = dict(dtc=0.7, gtc=0.7, cttc=0.3, alpha_ct=0.0, alpha_st=0.0, max_efpr=100)
PSDS2_ALPHA_ST0 = dict(dtc=0.1, gtc=0.1, cttc=0.3, alpha_ct=0.5, alpha_st=0.0, max_efpr=100)


@pytest.fixture()
def mid_gt(gt) -> pd.DataFrame:
    return gt.assign(event_label=gt["event_label"].map(MID), filename=gt["filename"].str.removesuffix(".wav"))


def _psds_eval_by_hand(ops, gt, sc, clips=None) -> float:
    clips = clips or [k.removesuffix(".wav") for k in DURATIONS]
    meta = pd.DataFrame({"filename": clips, "duration": [DURATIONS[c + ".wav"] for c in clips]})
    evaluator = PSDSEval(dtc_threshold=sc["dtc"], gtc_threshold=sc["gtc"], cttc_threshold=sc["cttc"],
                         ground_truth=gt.dropna().reset_index(drop=True), metadata=meta)
    for t in sorted(ops):
        evaluator.add_operating_point(ops[t][ops[t]["filename"].isin(clips)].reset_index(drop=True))
    return evaluator.psds(alpha_ct=sc["alpha_ct"], alpha_st=sc["alpha_st"], max_efpr=sc["max_efpr"]).value


def _mid_ops(gt):
    return {t: df.assign(event_label=df["event_label"].map(MID), filename=df["filename"].str.removesuffix(".wav"))
            for t, df in make_operating_points(gt, seed=3).items()}


def test_google_audioset_strong_tsv_header_reads_as_a_strong_tsv(tmp_path, mid_gt):
    path = tmp_path / "audioset_eval_strong.tsv"
    rows = mid_gt.dropna()
    path.write_text("segment_id\tstart_time_seconds\tend_time_seconds\tlabel\n" + "".join(
        f"{f}\t{on:.3f}\t{off:.3f}\t{label}\n" for f, on, off, label in rows.itertuples(index=False, name=None)))
    table = read_strong_tsv(path)
    pd.testing.assert_frame_equal(table.reset_index(drop=True), rows.reset_index(drop=True), check_dtype=False)


def test_alpha_st_zero_equals_the_reference_libraries_with_alpha_st_zero(gt, mid_gt):
    ops = _mid_ops(gt)
    durations = {k.removesuffix(".wav"): v for k, v in DURATIONS.items()}
    result = evaluate_operating_points(ops, mid_gt, durations, n_jobs=1, alpha_st=0.0)
    default = evaluate_operating_points(ops, mid_gt, durations, n_jobs=1)
    assert result["alpha_st"] == 0.0 and default["alpha_st"] == 1.0
    assert result["psds1"] == pytest.approx(_psds_eval_by_hand(ops, mid_gt, PSDS1_ALPHA_ST0), abs=1e-12)
    assert result["psds2"] == pytest.approx(_psds_eval_by_hand(ops, mid_gt, PSDS2_ALPHA_ST0), abs=1e-12)
    assert result["psds1"] > default["psds1"]  # the across-class spread no longer costs anything

    frames = {k.removesuffix(".wav"): score_dataframe(v, [MID[c] for c in CLASSES], 0.04)
              for k, v in make_scores(gt, seed=2).items()}
    scored = evaluate_scores(frames, mid_gt, durations, n_jobs=1, alpha_st=0.0)
    ground = {k: [(on, off, label) for f, on, off, label in mid_gt.dropna().itertuples(index=False, name=None) if f == k]
              for k in durations}
    for name, sc in (("psds1", PSDS1_ALPHA_ST0), ("psds2", PSDS2_ALPHA_ST0)):
        expected = intersection_based.psds(
            scores=frames, ground_truth=ground, audio_durations=durations, dtc_threshold=sc["dtc"],
            gtc_threshold=sc["gtc"], cttc_threshold=sc["cttc"] if sc["alpha_ct"] else None, alpha_ct=sc["alpha_ct"],
            alpha_st=0.0, max_efpr=100)[0]
        assert 0.01 < expected < 0.99 and scored[f"{name}_threshold_free"] == pytest.approx(expected, abs=1e-12)


def test_alpha_st_must_not_be_negative():
    with pytest.raises(ValueError, match="alpha_st must be >= 0"):
        scenarios(-0.5)


def test_threshold_free_psds2_is_left_out_with_a_reason_when_its_cross_triggers_would_not_fit(gt, mid_gt, monkeypatch):
    frames = {k.removesuffix(".wav"): score_dataframe(v, [MID[c] for c in CLASSES], 0.04)
              for k, v in make_scores(gt, seed=2).items()}
    frames_total = sum(len(f) for f in frames.values())
    assert cross_trigger_bytes(frames) == 8 * 3 * 2 * frames_total  # classes × other classes × frames
    monkeypatch.setattr(metrics_module, "MAX_CROSS_TRIGGER_BYTES", cross_trigger_bytes(frames) - 1)
    durations = {k.removesuffix(".wav"): v for k, v in DURATIONS.items()}
    result = evaluate_scores(frames, mid_gt, durations, n_jobs=1, alpha_st=0.0)
    assert result["psds2_threshold_free"] is None and "GB in sed_scores_eval" in result["threshold_free_skipped"]["psds2"]
    assert 0 < result["psds1_threshold_free"] < 1 and 0 < result["psds2"] < 1  # the rest is still computed


def test_evaluate_cli_scores_mid_files_with_alpha_st_zero(tmp_path, gt, mid_gt, capsys):
    ops = _mid_ops(gt)
    folder = tmp_path / "ops"
    folder.mkdir()
    for t, df in ops.items():
        df.to_csv(folder / f"predictions_th_{t:.2f}.tsv", sep="\t", index=False)
    truth = tmp_path / "gt.tsv"
    rows = mid_gt.dropna()
    truth.write_text("segment_id\tstart_time_seconds\tend_time_seconds\tlabel\n" + "".join(
        f"{f}\t{on}\t{off}\t{label}\n" for f, on, off, label in rows.itertuples(index=False, name=None)))
    durations = tmp_path / "durations.tsv"
    durations.write_text("filename\tduration\n" + "".join(f"{k[:-4]}\t{v}\n" for k, v in DURATIONS.items()))
    out = tmp_path / "metrics.json"
    rc = main(["evaluate", "--predictions", str(folder), "--ground-truth", str(truth), "--durations", str(durations),
               "--alpha-st", "0", "--json", str(out), "--jobs", "1"])
    assert rc == 0, capsys.readouterr().err
    result = json.loads(out.read_text())
    assert result["alpha_st"] == 0.0 and set(result["classes"]) == set(MID.values())
    # e.wav has no event: Google's file lists events only, so the evaluated clips are the other five
    expected = _psds_eval_by_hand(ops, rows.reset_index(drop=True), PSDS1_ALPHA_ST0, sorted(set(rows["filename"])))
    assert np.isfinite(result["psds1"]) and result["psds1"] == pytest.approx(expected, abs=1e-12)
    assert "α_st 0" in capsys.readouterr().out


def _many_class_case(n_classes=25, n_clips=40, seed=0):
    """A random evaluation with many classes and cross-triggers: (ground truth, {threshold: detections}, durations)."""
    rng = np.random.default_rng(seed)
    labels = [f"/m/{i:04x}" for i in range(n_classes)]
    gt_rows, pool = [], []
    for k in range(n_clips):
        clip = f"Y{k:03d}"
        for _ in range(rng.integers(1, 5)):
            on = rng.uniform(0, 8)
            label, off = labels[rng.integers(n_classes)], on + rng.uniform(0.3, 2)
            gt_rows.append((clip, round(on, 2), round(off, 2), label))
            pool.append((clip, round(on + rng.normal(0, 0.1), 2), round(min(off + rng.normal(0, 0.1), 10), 2), label,
                         rng.uniform(0.2, 1)))  # a hit, found above its confidence
        for _ in range(rng.integers(2, 8)):  # detections of any class: hits, cross-triggers, false alarms
            on = rng.uniform(0, 9)
            pool.append((clip, round(on, 2), round(min(on + rng.uniform(0.2, 2.5), 10), 2), labels[rng.integers(n_classes)],
                         rng.uniform()))
    gt = pd.DataFrame(gt_rows, columns=["filename", "onset", "offset", "event_label"])
    gt = gt.sort_values(["filename", "event_label", "onset"]).reset_index(drop=True)
    overlap = (gt["filename"] == gt["filename"].shift()) & (gt["event_label"] == gt["event_label"].shift()) & (
        gt["onset"] <= gt["offset"].shift())
    gt = gt[~overlap].reset_index(drop=True)
    det = pd.DataFrame(pool, columns=["filename", "onset", "offset", "event_label", "conf"])
    det = det.assign(onset=det["onset"].clip(lower=0))
    det = det[det["event_label"].isin(set(gt["event_label"]))]
    ops = {}
    for t in np.round(np.linspace(0.05, 0.95, 10), 2):
        kept = det[det["conf"] > t].sort_values(["filename", "event_label", "onset"]).reset_index(drop=True)
        clash = (kept["filename"] == kept["filename"].shift()) & (kept["event_label"] == kept["event_label"].shift()) & (
            kept["onset"] <= kept["offset"].shift())
        ops[float(t)] = kept[~clash][["filename", "onset", "offset", "event_label"]].reset_index(drop=True)
    return gt, ops, {f"Y{k:03d}": 10.0 for k in range(n_clips)}


@pytest.mark.parametrize("scenario", [PSDS1_ALPHA_ST0, PSDS2_ALPHA_ST0, dict(PSDS2_ALPHA_ST0, alpha_st=1.0)])
def test_the_fast_psds_eval_gives_psds_evals_own_numbers(scenario):
    from atst_sed.evaluation.psds import make_psds_eval

    gt, ops, durations = _many_class_case()
    meta = pd.DataFrame({"filename": list(durations), "duration": list(durations.values())})
    reference = PSDSEval(dtc_threshold=scenario["dtc"], gtc_threshold=scenario["gtc"], cttc_threshold=scenario["cttc"],
                         ground_truth=gt, metadata=meta)
    fast = make_psds_eval(gt, durations, scenario["dtc"], scenario["gtc"], scenario["cttc"])
    assert type(fast) is not PSDSEval and isinstance(fast, PSDSEval)
    for t in sorted(ops):
        reference.add_operating_point(ops[t])
        fast.add_operating_point(ops[t])
    for key in ("counts", "tpr", "fpr", "ctr"):  # per operating point: the confusion matrix and every rate
        for mine, theirs in zip(fast.operating_points[key], reference.operating_points[key]):
            np.testing.assert_array_equal(mine, theirs)
    assert np.nansum(np.stack(list(reference.operating_points["ctr"]))) > 0  # cross-triggers were counted
    kwargs = dict(alpha_ct=scenario["alpha_ct"], alpha_st=scenario["alpha_st"], max_efpr=scenario["max_efpr"])
    expected = reference.psds(**kwargs)
    got = fast.psds(**kwargs)
    assert 0.05 < expected.value < 0.95 and got.value == expected.value, expected.value
    np.testing.assert_array_equal(got.plt.yp, expected.plt.yp)
    assert fast.compute_macro_f_score(ops[0.45]) == reference.compute_macro_f_score(ops[0.45])
