"""``atst-sed embed -o`` into a device or a pipe: the node stays what it is and a pipe receives
the same .npz as a file would."""

from __future__ import annotations

import io

import numpy as np
import soundfile as sf

from atst_sed.cli.main import main
from atst_sed.models.checkpoint import save_checkpoint
from atst_sed.models.encoder import ATSTEncoder, EncoderConfig


def test_embed_into_a_device_or_pipe(device_output, tmp_path):
    ckpt = save_checkpoint(tmp_path / "frame_tiny.ckpt", ATSTEncoder(EncoderConfig.named("frame_tiny")))
    audio = tmp_path / "a.wav"
    sf.write(audio, np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1, 16000)
    args = ["embed", str(audio), "--checkpoint", str(ckpt), "--device", "cpu", "-o"]
    assert main([*args, str(tmp_path / "a.npz")]) == 0
    assert main([*args, str(device_output.path)]) == 0
    received = device_output.finish()
    if device_output.kind == "named pipe":
        with np.load(io.BytesIO(received)) as got, np.load(tmp_path / "a.npz") as expected:
            assert sorted(got.files) == sorted(expected.files)
            np.testing.assert_array_equal(got["embeddings"], expected["embeddings"])
