"""``atst-sed evaluate`` takes system outputs as padded pipelines publish them and scores exactly
what the reference libraries score.

The DCASE baseline, audiossl and ATST-SED pad every clip to 10 s, so their operating-point tables
hold events that end past a short clip's end (9.984 s on the 64 ms grid) and even start after it;
the DESED ground truth itself has offsets a little past the durations. The files below are written
the way the ATST-SED repository stores its operating points (``event_label onset offset filename
index``), then scored twice: by ``atst-sed evaluate`` and by psds_eval / sed_eval /
sed_scores_eval called directly on the same files.
"""

from __future__ import annotations

import json
import logging
import warnings

import numpy as np
import pandas as pd
import pytest
import sed_eval
from psds_eval import PSDSEval, PSDSEvalError
from sed_scores_eval import intersection_based

from atst_sed.cli.main import main
from atst_sed.evaluation import write_score_files

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

CLASSES = ["Cat", "Dog", "Speech"]
DURATIONS = {  # two clips shorter than the 10 s the pipelines pad to
    "Yshort_0.000_6.500.wav": 6.5, "Ynine_30.000_39.000.wav": 9.0,
    "Yfull_0.000_10.000.wav": 10.0, "Ytalk_10.000_20.000.wav": 10.0,
    "Yquiet_0.000_10.000.wav": 10.0,
}
GT = """filename\tonset\toffset\tevent_label
Yshort_0.000_6.500.wav\t0.500\t2.000\tCat
Yshort_0.000_6.500.wav\t1.000\t6.530\tSpeech
Ynine_30.000_39.000.wav\t2.000\t4.500\tDog
Ynine_30.000_39.000.wav\t7.100\t9.060\tCat
Yfull_0.000_10.000.wav\t0.000\t10.000\tSpeech
Yfull_0.000_10.000.wav\t3.000\t3.800\tDog
Yfull_0.000_10.000.wav\t6.000\t7.200\tDog
Ytalk_10.000_20.000.wav\t0.200\t4.400\tSpeech
Ytalk_10.000_20.000.wav\t5.000\t9.600\tSpeech
Ytalk_10.000_20.000.wav\t4.000\t6.000\tCat
Yquiet_0.000_10.000.wav\t\t\t
"""
# (clip, onset, offset, label, confidence): kept at threshold t when confidence > t.
PREDICTIONS = [
    ("Yshort_0.000_6.500.wav", 0.448, 2.112, "Cat", 0.8),
    ("Yshort_0.000_6.500.wav", 0.960, 9.984, "Speech", 0.9),  # padded: past the 6.5 s end
    ("Yshort_0.000_6.500.wav", 7.040, 9.984, "Dog", 0.35),  # starts after the end
    ("Ynine_30.000_39.000.wav", 1.920, 4.608, "Dog", 0.7),
    ("Ynine_30.000_39.000.wav", 7.040, 9.984, "Cat", 0.6),  # past the 9 s end
    ("Ynine_30.000_39.000.wav", 9.856, 9.984, "Dog", 0.25),  # starts after the end
    ("Yfull_0.000_10.000.wav", 0.000, 9.984, "Speech", 0.95),
    ("Yfull_0.000_10.000.wav", 3.072, 3.712, "Dog", 0.55),
    ("Yfull_0.000_10.000.wav", 5.888, 7.360, "Dog", 0.45),
    ("Yfull_0.000_10.000.wav", 8.000, 8.512, "Cat", 0.2),
    ("Ytalk_10.000_20.000.wav", 0.128, 4.480, "Speech", 0.85),
    ("Ytalk_10.000_20.000.wav", 4.992, 9.984, "Speech", 0.65),
    ("Ytalk_10.000_20.000.wav", 3.840, 6.080, "Cat", 0.4),
    ("Ytalk_10.000_20.000.wav", 6.528, 8.000, "Dog", 0.75),  # false alarms
    ("Yquiet_0.000_10.000.wav", 2.000, 3.000, "Dog", 0.15),
    ("Yquiet_0.000_10.000.wav", 5.056, 9.984, "Speech", 0.6),
]
THRESHOLDS = (0.1, 0.3, 0.5, 0.7, 0.9)


def _write_atst_sed_operating_points(folder):
    """One ``predictions_th_<t>.tsv`` per threshold, columns in the ATST-SED repository's order."""
    folder.mkdir()
    table = pd.DataFrame(PREDICTIONS, columns=["filename", "onset", "offset", "event_label", "conf"])
    for t in THRESHOLDS:
        kept = table[table["conf"] > t][["event_label", "onset", "offset", "filename"]]
        kept = kept.reset_index(drop=True).assign(index=lambda d: np.arange(1, len(d) + 1))
        kept.to_csv(folder / f"predictions_th_{t:.2f}.tsv", sep="\t", index=False)
    return folder


@pytest.fixture()
def files(tmp_path):
    (tmp_path / "gt.tsv").write_text(GT)
    (tmp_path / "dur.tsv").write_text(
        "filename\tduration\n" + "".join(f"{k}\t{v}\n" for k, v in DURATIONS.items()))
    return tmp_path / "gt.tsv", tmp_path / "dur.tsv"


def _evaluate(files, predictions, out, *extra):
    gt, dur = files
    code = main(["evaluate", "--ground-truth", str(gt), "--durations", str(dur),
                 "--predictions", str(predictions), "--jobs", "1", "--json", str(out), *extra])
    return code, (json.loads(out.read_text()) if out.is_file() else None)


# ----------------------------------------------------- the reference libraries, called directly
def _psds_eval_directly(gt_path, dur_path, folder, dtc, gtc, cttc, alpha_ct, alpha_st):
    evaluator = PSDSEval(dtc_threshold=dtc, gtc_threshold=gtc, cttc_threshold=cttc,
                         ground_truth=pd.read_csv(gt_path, sep="\t"),
                         metadata=pd.read_csv(dur_path, sep="\t"))
    for path in sorted(folder.glob("predictions_th_*.tsv")):
        evaluator.add_operating_point(pd.read_csv(path, sep="\t"))
    return evaluator.psds(alpha_ct=alpha_ct, alpha_st=alpha_st, max_efpr=100).value


def _sed_eval_directly(gt_path, predictions_path):
    """DESED_task's event- and segment-based F1 loop over the ground-truth clips."""
    gt, est = pd.read_csv(gt_path, sep="\t"), pd.read_csv(predictions_path, sep="\t")
    event = sed_eval.sound_event.EventBasedMetrics(
        event_label_list=CLASSES, t_collar=0.2, percentage_of_length=0.2,
        empty_system_output_handling="zero_score")
    segment = sed_eval.sound_event.SegmentBasedMetrics(event_label_list=CLASSES, time_resolution=1.0)
    for clip in gt["filename"].unique():
        ref = gt[(gt["filename"] == clip) & gt["event_label"].notna()].to_dict("records")
        hyp = est[est["filename"] == clip].to_dict("records")
        event.evaluate(ref or [{"filename": clip}], hyp or [{"filename": clip}])
        segment.evaluate(ref or [{"filename": clip}], hyp or [{"filename": clip}])
    return event.results(), segment.results()


def _past_end_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "run past their clip's end" in r.getMessage()]


# ------------------------------------------------------------------------------------ the tests
def test_padded_operating_points_score_exactly_as_psds_eval_scores_them(tmp_path, files, caplog):
    folder = _write_atst_sed_operating_points(tmp_path / "ops")
    with caplog.at_level(logging.WARNING):
        code, result = _evaluate(files, folder, tmp_path / "m.json")
    assert code == 0
    gt, dur = files
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        psds1 = _psds_eval_directly(gt, dur, folder, 0.7, 0.7, 0.3, 0.0, 1.0)
        psds2 = _psds_eval_directly(gt, dur, folder, 0.1, 0.1, 0.3, 0.5, 1.0)
    assert result["psds1"] == pytest.approx(psds1, rel=1e-12, abs=1e-12)
    assert result["psds2"] == pytest.approx(psds2, rel=1e-12, abs=1e-12)
    assert 0 < psds1 < 1 and 0 < psds2 < 1
    # F1 at the 0.5 operating point, as DESED_task computes it with sed_eval
    event, segment = _sed_eval_directly(gt, folder / "predictions_th_0.50.tsv")
    assert result["f1_threshold"] == 0.5
    assert result["event_f1"]["macro"] == pytest.approx(event["class_wise_average"]["f_measure"]["f_measure"])
    assert result["event_f1"]["micro"] == pytest.approx(event["overall"]["f_measure"]["f_measure"])
    assert result["segment_f1"]["micro"] == pytest.approx(segment["overall"]["f_measure"]["f_measure"])
    # one warning for the 5 prediction files together, one for the ground truth, each with a count
    messages = _past_end_warnings(caplog)
    assert len(messages) == 2
    predicted = next(m for m in messages if m.startswith("operating points"))
    past = [p for p in PREDICTIONS if p[2] > DURATIONS[p[0]]]
    counted = [sum(1 for p in past if p[4] > t) for t in THRESHOLDS]
    assert f"{sum(counted)} of " in predicted
    assert f"in {sum(1 for c in counted if c)} of 5 files" in predicted
    assert "start at or after it" in predicted
    assert "ground truth: 2 of 10 events run past" in next(m for m in messages if m.startswith("ground truth"))


def _intersection_f1_directly(gt_path, dur_path, predictions_path):
    evaluator = PSDSEval(dtc_threshold=0.5, gtc_threshold=0.5, cttc_threshold=0.3,
                         ground_truth=pd.read_csv(gt_path, sep="\t"),
                         metadata=pd.read_csv(dur_path, sep="\t"))
    return evaluator.compute_macro_f_score(pd.read_csv(predictions_path, sep="\t"))[0]


def test_ground_truth_is_scored_as_written(tmp_path, files):
    """No clipping of offsets past the end, no merging of an exact duplicate: psds_eval counts both."""
    gt, dur = files
    duplicated = tmp_path / "gt_dup.tsv"
    duplicated.write_text(GT + "Yfull_0.000_10.000.wav\t3.000\t3.800\tDog\n")
    folder = _write_atst_sed_operating_points(tmp_path / "ops")
    code, result = _evaluate((duplicated, dur), folder, tmp_path / "m.json")
    assert code == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        psds1 = _psds_eval_directly(duplicated, dur, folder, 0.7, 0.7, 0.3, 0.0, 1.0)
        f1 = _intersection_f1_directly(duplicated, dur, folder / "predictions_th_0.50.tsv")
        f1_merged = _intersection_f1_directly(gt, dur, folder / "predictions_th_0.50.tsv")
    assert f1 != pytest.approx(f1_merged)  # the duplicate matters to psds_eval ...
    assert result["intersection_f1"]["macro"] == pytest.approx(f1, rel=1e-12)  # ... and counts here
    assert result["psds1"] == pytest.approx(psds1, rel=1e-12)


def test_overlapping_events_of_one_class_are_refused_like_psds_eval(tmp_path, files, capsys):
    gt, dur = files
    overlapping = tmp_path / "gt_overlap.tsv"
    overlapping.write_text(GT + "Yfull_0.000_10.000.wav\t3.500\t4.200\tDog\n")
    folder = _write_atst_sed_operating_points(tmp_path / "ops")
    with pytest.raises(PSDSEvalError, match="intersecting events"):
        PSDSEval(ground_truth=pd.read_csv(overlapping, sep="\t"), metadata=pd.read_csv(dur, sep="\t"))
    code, _ = _evaluate((overlapping, dur), folder, tmp_path / "m.json")
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and str(overlapping) in err[0]
    assert "Dog events 3-3.8 s and 3.5-4.2 s overlap" in err[0]


def test_one_event_table_follows_the_same_rule(tmp_path, files, caplog):
    folder = _write_atst_sed_operating_points(tmp_path / "ops")
    table = folder / "predictions_th_0.30.tsv"
    with caplog.at_level(logging.WARNING):
        code, result = _evaluate(files, table, tmp_path / "m.json")
    assert code == 0
    event, segment = _sed_eval_directly(files[0], table)
    assert result["event_f1"]["macro"] == pytest.approx(event["class_wise_average"]["f_measure"]["f_measure"])
    assert result["segment_f1"]["macro"] == pytest.approx(segment["class_wise_average"]["f_measure"]["f_measure"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        macro = _intersection_f1_directly(files[0], files[1], table)
    assert result["intersection_f1"]["macro"] == pytest.approx(macro)
    predicted = [m for m in _past_end_warnings(caplog) if m.startswith("predictions")]
    kept = [p for p in PREDICTIONS if p[4] > 0.3]
    past = [p for p in kept if p[2] > DURATIONS[p[0]]]
    assert len(predicted) == 1 and f"{len(past)} of {len(kept)} events run past" in predicted[0]


def test_padded_score_files_score_exactly_as_sed_scores_eval_scores_them(tmp_path, files, caplog):
    """Every clip scored on 156 frames of 64 ms (to 9.984 s), as ATST-SED writes them."""
    rng = np.random.default_rng(0)
    gt_table = pd.read_csv(files[0], sep="\t")
    scores = {}
    for clip in DURATIONS:
        s = rng.uniform(0, 0.3, (156, len(CLASSES)))
        for _, on, off, label in gt_table[(gt_table["filename"] == clip)].dropna().itertuples(
                index=False, name=None):
            s[int(on / 0.064):int(off / 0.064) + 1, CLASSES.index(label)] += rng.uniform(0.3, 0.7)
        scores[clip] = np.clip(s, 0, 1)
    folder = tmp_path / "scores"
    write_score_files(folder, scores, CLASSES, frame_seconds=0.064)
    with caplog.at_level(logging.WARNING):
        code, result = _evaluate(files, folder, tmp_path / "m.json")
    assert code == 0
    expected = intersection_based.psds(
        scores=str(folder), ground_truth=str(files[0]), audio_durations=str(files[1]),
        dtc_threshold=0.7, gtc_threshold=0.7, cttc_threshold=None, alpha_ct=0.0, alpha_st=1.0,
        unit_of_time="hour", max_efpr=100)[0]
    assert result["psds1_threshold_free"] == pytest.approx(expected, rel=1e-12)
    messages = [m for m in _past_end_warnings(caplog) if m.startswith("score files")]
    assert len(messages) == 1 and "2 of 5 run past" in messages[0]
