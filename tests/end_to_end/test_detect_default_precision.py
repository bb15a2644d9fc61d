"""`atst-sed detect`'s default (bf16 autocast where the CPU has native bf16) gives what a user would
get from `--precision fp32 --hop 5` (the reference): checked on the session's mini run (tests/conftest.py)
and its synthetic test set."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from atst_sed.cli.main import main
from atst_sed.inference.detector import Detector, resolve_precision

REFERENCE = ["--precision", "fp32", "--hop", "5"]
pytestmark = pytest.mark.skipif(
    resolve_precision("auto", torch.device("cpu")) != "bf16",
    reason="the default is float32 on this CPU (no native bf16): nothing to compare",
)


def _test_audio(corpus: Path) -> Path:
    return corpus / "audio/validation/validation_16k"


def _events(path: Path) -> tuple[dict[tuple, float], list[str]]:
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    return {tuple(r[:4]): float(r[4]) for r in rows[1:]}, rows[0]


def _evaluate(corpus: Path, predictions: Path, out: Path) -> dict:
    meta = corpus / "metadata/validation"
    assert main(["evaluate", "--ground-truth", str(meta / "validation.tsv"), "--durations", str(meta / "validation_durations.tsv"),
                 "--predictions", str(predictions), "--json", str(out), "--jobs", "1"]) == 0
    return json.loads(out.read_text())


def test_default_detect_gives_the_reference_events_and_psds_on_the_trained_mini_model(tiny_corpus, mini_run, tmp_path):
    """The fine-tuned ATST-Frame of the mini run: the same events (file, onset, offset, class) at the
    checkpoint's thresholds, mean scores within 0.002, and PSDS1/PSDS2 (operating points and
    threshold-free) and F1 scores of the synthetic test set within 0.005 of the reference."""
    checkpoint = mini_run / "finetune_frame/checkpoints/best.ckpt"
    outputs = {}
    for name, extra in (("default", []), ("reference", REFERENCE)):
        csv_path, scores = tmp_path / f"{name}.csv", tmp_path / f"{name}_scores"
        assert main(["detect", str(_test_audio(tiny_corpus)), "-c", str(checkpoint), "-o", str(csv_path),
                     "--scores-dir", str(scores), *extra]) == 0
        outputs[name] = (_events(csv_path), _evaluate(tiny_corpus, scores, tmp_path / f"{name}.json"))
    (default, header), default_metrics = outputs["default"]
    (reference, _), reference_metrics = outputs["reference"]
    assert header == ["filename", "onset", "offset", "event_label", "score"] and len(reference) >= 20
    assert sorted(default) == sorted(reference)
    assert max(abs(default[k] - reference[k]) for k in reference) <= 0.002
    for key in ("psds1", "psds2", "psds1_threshold_free", "psds2_threshold_free"):
        assert default_metrics[key] == pytest.approx(reference_metrics[key], abs=0.005), key
    for key in ("event_f1", "segment_f1", "intersection_f1"):
        assert default_metrics[key]["macro"] == pytest.approx(reference_metrics[key]["macro"], abs=0.005), key
    assert reference_metrics["segment_f1"]["macro"] > 0  # the model gets some segments right: not 0 == 0


@pytest.mark.parametrize("stage", ["finetune_frame", "distill_c2f"])
def test_default_precision_moves_trained_probabilities_by_less_than_a_thousandth_on_a_long_recording(
        tiny_corpus, mini_run, stage):
    """The test clips joined into one 2-minute recording (24 overlapping windows): frame probabilities
    within 0.002 of the reference everywhere, for the frame model and the deployed ATST-C2F student.
    (The C2F student of this 4-batch run hovers within 0.001 of its 0.5 threshold for seconds at a
    time, so a few of its event edges move by one frame; a model trained to convergence is decisive.)"""
    checkpoint = mini_run / f"{stage}/checkpoints/best.ckpt"
    audio = np.concatenate([sf.read(p, dtype="float32")[0] for p in sorted(_test_audio(tiny_corpus).glob("*.wav"))])
    default = Detector.from_checkpoint(checkpoint, device="cpu")
    reference = Detector.from_checkpoint(checkpoint, device="cpu", precision="fp32", hop_seconds=5.0)
    assert (default.precision, reference.precision) == ("bf16", "fp32")
    got, want = default.scores_audio(audio, "long"), reference.scores_audio(audio, "long")
    assert got.probs.shape == want.probs.shape == (default.spec.grid.n_frames(len(audio)), len(default.classes))
    difference = np.abs(got.probs - want.probs)
    assert 0 < difference.max() <= 0.002  # > 0: bf16 really ran
    if stage == "finetune_frame":
        pd.testing.assert_frame_equal(default.events(got)[["onset", "offset", "event_label"]],
                                      reference.events(want)[["onset", "offset", "event_label"]])
