"""benchmarks/encoder_throughput.py runs against the encoder as it is: one row per model and mode, in
the precision asked for, and a profile of where an inference pass spends its time."""

from __future__ import annotations

import torch
from benchmark_scripts import load_benchmark


def _load_script():
    return load_benchmark("encoder_throughput")


def test_inference_and_fine_tune_rows_in_the_precision_asked_for_with_a_profile(capsys):
    _load_script().main(["--device", "cpu", "--models", "frame_tiny", "--batch-size", "2", "--iters", "1",
                         "--warmup", "0", "--precision", "bf16", "--profile", "5"])
    out = capsys.readouterr().out
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in out.splitlines()
            if line.startswith("| frame_tiny")]
    assert [r[1:4] for r in rows] == [["cpu", "bf16", "inference"], ["cpu", "fp32", "fine-tune (last block)"]]
    assert all(float(r[5].replace(",", "")) > 0 for r in rows)  # clips/s
    assert "frame_tiny, cpu, bf16, batch 2:" in out and "aten::" in out and "Self CPU" in out


def test_bf16_inference_runs_the_linear_layers_on_bf16_weights_as_the_detector_does(monkeypatch):
    step = _load_script().inference_step("frame_tiny", torch.device("cpu"), 1, "bf16", False)
    weights = []
    real = torch.nn.Linear.forward
    monkeypatch.setattr(torch.nn.Linear, "forward", lambda self, x: (weights.append(self.weight.dtype), real(self, x))[1])
    step()
    assert weights and set(weights) == {torch.bfloat16}
