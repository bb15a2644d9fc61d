"""Test-stage outputs: operating points, post-processed and unprocessed score files, and their PSDS
equal to what the reference libraries compute from the written files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sed_scores_eval import intersection_based

from atst_sed.data.corpus import SETS
from atst_sed.events import read_durations_tsv, read_strong_tsv
from atst_sed.labels import DESED_CLASSES, ClassMap, events_to_frames
from atst_sed.timegrid import ATST_GRID
from atst_sed.training.scoring import write_test_outputs

PSDS = {
    "psds1": dict(dtc_threshold=0.7, gtc_threshold=0.7, cttc_threshold=None, alpha_ct=0.0),
    "psds2": dict(dtc_threshold=0.1, gtc_threshold=0.1, cttc_threshold=0.3, alpha_ct=0.5),
}


def test_threshold_free_psds_of_processed_and_raw_scores_match_sed_scores_eval(tiny_corpus, tmp_path):
    labels, durations_tsv = tiny_corpus / SETS["test"].labels, tiny_corpus / SETS["test"].durations
    gt, durations = read_strong_tsv(labels, DESED_CLASSES), read_durations_tsv(durations_tsv)
    rng = np.random.default_rng(0)
    scores = {}
    for name, duration in durations.items():  # the truth with flickering noise; keyed by clip id
        n = int(round(duration / 0.04))
        truth = events_to_frames(gt[gt["filename"] == name], ClassMap(DESED_CLASSES), n, grid=ATST_GRID)
        scores[name.removesuffix(".wav")] = np.clip(0.15 + 0.6 * truth + rng.normal(0, 0.13, truth.shape), 0, 1).astype(np.float32)
    out = tmp_path / "student"
    metrics = write_test_outputs(out, scores, gt, durations, list(DESED_CLASSES), 9, ATST_GRID)
    written = json.loads((out / "metrics.json").read_text())
    assert {k: v for k, v in written.items() if "psds" in k} == {k: v for k, v in metrics.items() if "psds" in k}
    for folder, suffix in (("scores", ""), ("scores_raw", "_raw")):
        for scenario, params in PSDS.items():
            want = intersection_based.psds(
                scores=str(out / folder), ground_truth=str(labels), audio_durations=str(durations_tsv),
                alpha_st=1.0, unit_of_time="hour", max_efpr=100.0, **params)[0]
            assert metrics[f"{scenario}_sed_scores_eval{suffix}"] == pytest.approx(want, abs=1e-9)
            assert (out / "plots" / f"psd_roc_{scenario}_sed_scores_eval{suffix}.png").is_file()
    # the median filter removes the flicker: post-processing helps, and both are far from 0
    assert metrics["psds1_sed_scores_eval"] > metrics["psds1_sed_scores_eval_raw"] > 0.05
