"""benchmarks/detect_equivalence.py runs against the detector as it is (a script outside the package
would otherwise drift from the API unnoticed) and prints one row per variant."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]


def _load_script():
    spec = importlib.util.spec_from_file_location("detect_equivalence", REPO / "benchmarks" / "detect_equivalence.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_detect_equivalence_prints_every_variant_against_the_reference(loud_ckpt, write_wav, capsys):
    rng = np.random.default_rng(0)
    audio = 0.01 * rng.standard_normal(16000 * 30).astype(np.float32)
    for start in (3, 11, 19, 26):  # loud bursts across window boundaries
        audio[start * 16000 : (start + 2) * 16000] *= 40
    recording = write_wav("long.wav", audio)

    script = _load_script()
    script.main(["--checkpoint", str(loud_ckpt), "--recording", str(recording), "--minutes", "0.5"])

    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| variant")]
    assert len(rows) == len(script.VARIANTS) + 1
    reference_events = int(out.split("reference: fp32, hop 5 s, ")[1].split(" events")[0])
    assert reference_events > 0
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        max_dp, mean_dp, p99 = map(float, cells[1:4])
        assert 0.0 <= mean_dp <= max_dp <= 1.0 and p99 <= max_dp  # printed to 5, 4 and 4 decimals
        assert cells[5].endswith(f"of {reference_events}")  # missing reference events, out of all of them
