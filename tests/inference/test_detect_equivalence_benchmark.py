"""benchmarks/detect_equivalence.py runs against the detector as it is (a script outside the package
would otherwise drift from the API unnoticed): one row per variant, the reference's own row unmoved,
and on a test set the ground truth carried onto the joined recording and PSDS per row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from benchmark_scripts import load_benchmark
from inference_helpers import ALWAYS, LOUD, noise_with_bursts

from atst_sed.inference.detector import Detector


def _load_script():
    return load_benchmark("detect_equivalence")


def _rows(out: str) -> list[list[str]]:
    lines = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| variant")]
    return [[c.strip() for c in line.strip("|").split("|")] for line in lines]


def _bursts(seconds: int, starts: tuple[int, ...], seed: int = 0) -> np.ndarray:
    audio = 0.01 * np.random.default_rng(seed).standard_normal(16000 * seconds).astype(np.float32)
    for start in starts:
        audio[start * 16000 : (start + 2) * 16000] *= 40
    return audio


def test_detect_equivalence_prints_every_variant_against_the_reference(loud_ckpt, write_wav, capsys):
    recording = write_wav("long.wav", _bursts(30, (3, 11, 19, 26)))  # loud bursts across window boundaries

    script = _load_script()
    script.main(["--checkpoint", str(loud_ckpt), "--recording", str(recording), "--minutes", "0.5"])

    out = capsys.readouterr().out
    rows = _rows(out)
    assert len(rows) == len(script.VARIANTS) + 2  # + the reference itself and its shifted grid
    reference_events = int(out.split("reference: fp32, hop 5 s, ")[1].split(" events")[0])
    assert reference_events > 0
    assert rows[0][1:4] == ["0.0000", "0.00000", "0.0000"] and rows[0][4].startswith("0 of ")
    assert rows[0][5:7] == [f"0 of {reference_events}", f"0 of {reference_events}"]
    for cells in rows:
        max_dp, mean_dp, p99 = map(float, cells[1:4])
        assert 0.0 <= mean_dp <= max_dp <= 1.0 and p99 <= max_dp  # printed to 5, 4 and 4 decimals
        assert cells[6].endswith(f"of {reference_events}")  # missing reference events, out of all of them


def test_a_test_set_is_joined_with_its_ground_truth_on_the_joined_time_line(write_wav, tmp_path):
    script = _load_script()
    for name, seconds in (("b.wav", 4), ("a.wav", 10), ("c.wav", 6)):
        write_wav(f"clips/{name}", np.full(16000 * seconds, 0.01 * seconds, dtype=np.float32))
    truth = tmp_path / "gt.tsv"
    truth.write_text("filename\tonset\toffset\tevent_label\n"
                     "a.wav\t1.0\t2.0\tdog\nb.wav\t0.5\t3.5\tcat\nb.wav\t\t\t\nc.wav\t5.0\t6.0\tdog\nz.wav\t0.0\t1.0\tcat\n")

    audio, joined = script.join_test_set(tmp_path / "clips", truth)

    assert len(audio) == 16000 * 20 and audio[0] == pytest.approx(0.1, abs=1e-4)
    assert audio[16000 * 10] == pytest.approx(0.04, abs=1e-4)  # a.wav, then b.wav: name order
    expected = pd.DataFrame({"filename": ["joined"] * 3, "onset": [1.0, 10.5, 19.0], "offset": [2.0, 13.5, 20.0],
                             "event_label": ["dog", "cat", "dog"]})
    pd.testing.assert_frame_equal(joined, expected)


def test_on_a_test_set_every_row_gets_psds_and_the_reference_its_own(loud_ckpt, write_wav, tmp_path, capsys):
    rows = ["filename\tonset\toffset\tevent_label"]
    for i in range(4):  # four 10 s clips, a 2 s burst in each: the loud model's two live classes to find
        start = 2 + 2 * i
        write_wav(f"clips/clip{i}.wav", noise_with_bursts(10, [(start, start + 2)], seed=i))
        rows += [f"clip{i}.wav\t{start}.0\t{start + 2}.0\t{LOUD}", f"clip{i}.wav\t0.0\t10.0\t{ALWAYS}"]
    (tmp_path / "gt.tsv").write_text("\n".join(rows) + "\n")
    script = _load_script()

    script.main(["--checkpoint", str(loud_ckpt), "--test-set", str(tmp_path / "clips"),
                 "--ground-truth", str(tmp_path / "gt.tsv")])

    table = _rows(capsys.readouterr().out)
    assert len(table) == len(script.VARIANTS) + 2
    psds1, psds2 = (float(cell.split(" ")[0]) for cell in table[0][7:9])
    assert psds1 > 0.5 and psds2 > 0.0  # the loud model finds the bursts
    assert table[0][7:9] == [f"{psds1:.4f} (+0.0000)", f"{psds2:.4f} (+0.0000)"]
    for cells in table:
        for cell in cells[7:9]:
            value, delta = cell.split(" ")
            assert 0.0 <= float(value) <= 1.0 and abs(float(delta.strip("()"))) <= 1.0


def test_changed_decisions_are_counted_after_the_median_filter_with_the_references_margin(loud_ckpt):
    detector = Detector.from_checkpoint(loud_ckpt, device="cpu")  # thresholds 0.5 (class 1: 0.8), median filter 7
    reference = np.full((100, len(detector.classes)), 0.3, dtype=np.float32)
    reference[10:31, 0] = 0.52  # 21 frames just above the threshold
    reference[60, 0] = 0.9  # one frame: the median filter removes it
    variant = reference.copy()
    variant[10:31, 0] = 0.49
    variant[60, 0] = 0.1
    variant[:, 2] += 0.001  # far from its threshold: no decision changes

    flips, margin = _load_script().changed_decisions(detector, variant, reference)

    assert flips == 21 and margin == pytest.approx(0.02, abs=1e-6)
    assert _load_script().changed_decisions(detector, reference, reference) == (0, 0.0)


def test_the_joined_test_set_is_saved_repeated_to_the_length_asked_for(loud_ckpt, write_wav, tmp_path):
    for i in range(2):
        write_wav(f"clips/c{i}.wav", np.full(16000 * 10, 0.1 * (i + 1), dtype=np.float32))
    (tmp_path / "gt.tsv").write_text("filename\tonset\toffset\tevent_label\n")
    out = tmp_path / "long.wav"

    _load_script().main(["--checkpoint", str(loud_ckpt), "--test-set", str(tmp_path / "clips"), "--ground-truth",
                         str(tmp_path / "gt.tsv"), "--save-joined", str(out), "--minutes", "0.75"])

    audio, rate = sf.read(out, dtype="float32")
    assert rate == 16000 and len(audio) == 16000 * 45
    starts = [audio[16000 * t] for t in (0, 10, 20, 30, 40)]  # c0, c1, c0, c1, c0
    np.testing.assert_allclose(starts, [0.1, 0.2, 0.1, 0.2, 0.1], atol=1e-4)
