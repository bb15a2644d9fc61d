"""What `atst-sed detect` costs before and after the model runs: the precision rule, the modules it
imports, how it reads the checkpoint, the batch size per device."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from atst_sed.errors import AtstSedError
from atst_sed.inference.detector import Detector, default_batch_size, resolve_precision
from atst_sed.models.checkpoint import checkpoint_dict
from inference_helpers import CLASSES, loud_model, noise_with_bursts

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("features, expected", [
    ({"avx512_bf16": True, "amx_bf16": False}, "bf16"),  # AMD Zen 4+, Intel Cooper Lake
    ({"avx512_bf16": False, "amx_bf16": True}, "bf16"),  # Intel Sapphire Rapids+
    ({"avx512_bf16": False, "amx_bf16": False, "avx512f": True}, "fp32"),  # bf16 would be emulated: slower
    ({}, "fp32"),  # e.g. ARM or an old x86
])
def test_auto_precision_is_bf16_exactly_where_the_cpu_multiplies_bf16_natively(monkeypatch, features, expected):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: dict(features))
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == expected
    assert Detector(loud_model(), device="cpu").precision == expected
    assert resolve_precision("fp32", cpu) == "fp32" and resolve_precision("bf16", cpu) == "bf16"  # asked for: kept


def test_detect_help_states_the_precision_rule(capsys):
    from atst_sed.cli.main import main

    with pytest.raises(SystemExit):
        main(["detect", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "auto (default): bf16 autocast where the hardware multiplies bf16 natively" in text
    assert "AVX-512 BF16 or AMX" in text and "fp32 elsewhere" in text


def test_unknown_precision_is_a_clear_error():
    with pytest.raises(AtstSedError, match="unknown precision 'fp16'"):
        Detector(loud_model(), device="cpu", precision="fp16")


def test_bf16_probabilities_keep_float32_resolution():
    """The encoder runs in bf16 but the head in float32: probabilities near 1 are not rounded to the
    bf16 grid (steps of 2⁻⁸ there), so 0.9999 and 1.0 stay apart and thresholds keep their meaning."""
    wave = noise_with_bursts(12.0, [(1.0, 2.5), (8.0, 9.0)])
    bf16 = Detector(loud_model(), device="cpu", precision="bf16").scores_audio(wave, "x").probs
    fp32 = Detector(loud_model(), device="cpu", precision="fp32").scores_audio(wave, "x").probs
    loud = bf16[:, 0]
    assert 0.999 < loud.max() < 1.0
    on_the_bf16_grid = torch.from_numpy(bf16).bfloat16().float().numpy() == bf16
    assert not on_the_bf16_grid.all()  # a bf16 sigmoid would give only bf16 values
    np.testing.assert_allclose(bf16, fp32, atol=0.01)


def test_bf16_weights_are_cast_once_and_give_what_autocast_gives(monkeypatch):
    """The detector's cached bf16 weights give bit-identical scores to plain autocast on the model."""
    model = loud_model()
    wave = noise_with_bursts(27.0, [(3.0, 4.0), (15.0, 21.0)])
    det = Detector(model, device="cpu", precision="bf16", batch_size=2)
    cached = det.scores_audio(wave, "x").probs
    # the first pass found which layers autocast runs in bf16: the encoder's, not the float32 head
    bf16_layers = {name.rsplit(".", 1)[0] for name in det._bf16_cache}
    assert "encoder.blocks.0.attn.qkv" in bf16_layers and "encoder.patch_embed" in bf16_layers
    assert not any(name.startswith("head.") for name in bf16_layers)
    casts = []
    real = torch.Tensor.to
    monkeypatch.setattr(torch.Tensor, "to", lambda self, *a, **k: (casts.append(a), real(self, *a, **k))[1])
    det.scores_audio(wave, "x")
    assert not [a for a in casts if torch.bfloat16 in a]  # the second file casts no weight again
    monkeypatch.undo()

    def plain_autocast(self, waves, lengths):
        with torch.inference_mode():
            inputs = self.model.features(waves, lengths)
            with torch.autocast("cpu", dtype=torch.bfloat16):
                return self.model(*inputs).frame_probs.float().numpy()

    monkeypatch.setattr(Detector, "_run_batch", plain_autocast)
    np.testing.assert_array_equal(det.scores_audio(wave, "x").probs, cached)


def test_checkpoints_are_memory_mapped_and_still_read_weights_only(monkeypatch, tmp_path):
    calls = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: (calls.append(k), real_load(*a, **k))[1])
    path = tmp_path / "loud.ckpt"
    torch.save(checkpoint_dict(loud_model(), classes=CLASSES), path)
    det = Detector.from_checkpoint(path, device="cpu")
    assert calls[-1]["mmap"] is True and calls[-1]["weights_only"] is True
    # an old-format (non-zip) file cannot be mapped: it is read whole, with the same result
    legacy = tmp_path / "legacy.ckpt"
    torch.save(checkpoint_dict(loud_model(), classes=CLASSES), legacy, _use_new_zipfile_serialization=False)
    old = Detector.from_checkpoint(legacy, device="cpu")
    assert calls[-1]["mmap"] is False and calls[-1]["weights_only"] is True
    wave = noise_with_bursts(3.0, [(1.0, 2.0)])
    np.testing.assert_array_equal(det.scores_audio(wave, "x").probs, old.scores_audio(wave, "x").probs)


def test_batch_size_follows_the_device():
    assert default_batch_size(torch.device("cpu")) == 8 and default_batch_size(torch.device("cuda")) == 64
    assert Detector(loud_model(), device="cpu").batch_size == 8
    assert Detector(loud_model(), device="cpu", batch_size=3).batch_size == 3


#: Runs ``atst-sed ARGS`` in this fresh interpreter, then writes the names of the modules it imported.
_LIST_IMPORTS = """
import json, sys
from atst_sed.cli.main import main
try:
    code = main(sys.argv[2:])
except SystemExit as stop:
    code = stop.code
with open(sys.argv[1], "w") as out:
    json.dump({"code": code, "modules": sorted(sys.modules)}, out)
"""


def _imported(args: list[str], tmp_path: Path) -> set[str]:
    """Modules a fresh Python process running ``atst-sed ARGS`` has imported when it is done."""
    listing = tmp_path / "modules.json"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", _LIST_IMPORTS, str(listing), *args],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(listing.read_text())
    assert result["code"] in (0, None), done.stderr[-2000:]
    return set(result["modules"])


def test_detect_help_imports_no_numerics(tmp_path):
    imported = _imported(["detect", "--help"], tmp_path)
    assert "atst_sed.cli.detect" in imported
    assert not imported & {"torch", "numpy", "pandas", "scipy", "soundfile", "torchaudio", "rich"}


def test_detecting_one_short_file_imports_only_the_detection_path(tmp_path, write_wav, loud_ckpt):
    """No training, evaluation, plotting, configuration or resampling code for a 16 kHz clip."""
    wav = write_wav("clip.wav", noise_with_bursts(10.0, [(2.0, 3.0)]))
    imported = _imported(["detect", str(wav), "-c", str(loud_ckpt), "-o", str(tmp_path / "out.csv")], tmp_path)
    assert {"torch", "atst_sed.inference.detector", "atst_sed.decoding"} <= imported
    not_needed = {"lightning", "pytorch_lightning", "matplotlib", "psds_eval", "sed_scores_eval", "sklearn", "yaml",
                  "scipy.signal", "atst_sed.training", "atst_sed.evaluation", "atst_sed.inference.plot",
                  "atst_sed.data", "atst_sed.submission"}
    assert not imported & not_needed
    assert (tmp_path / "out.csv").read_text().count("clip.wav") == 1


def test_only_a_process_running_its_own_command_line_freezes_its_objects_for_a_fast_exit(monkeypatch, loud_ckpt, write_wav, tmp_path):
    """`atst-sed` (argv None) calls gc.freeze() when done, so the interpreter's exit skips collecting
    torch's objects; a program calling main([...]) keeps its garbage collector as it was."""
    import gc

    from atst_sed.cli.main import main

    wav = write_wav("clip.wav", noise_with_bursts(3.0, [(1.0, 2.0)]))
    frozen = []
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(True))
    assert main(["detect", str(wav), "-c", str(loud_ckpt), "-o", str(tmp_path / "a.csv")]) == 0
    assert frozen == []
    monkeypatch.setattr(sys, "argv", ["atst-sed", "detect", str(wav), "-c", str(loud_ckpt), "-o", str(tmp_path / "b.csv")])
    assert main() == 0
    assert frozen == [True] and (tmp_path / "b.csv").read_text() == (tmp_path / "a.csv").read_text()
