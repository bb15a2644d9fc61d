"""Real speech in the synthetic corpus only on request (``--speech-dir``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from atst_sed.data.synth import prepare_synth
from atst_sed.errors import InputError


def test_speech_dir_mixes_its_recordings_in_split_between_training_and_evaluation(tmp_path):
    speech = tmp_path / "speech"
    speech.mkdir()
    rng = np.random.default_rng(0)
    for name in ("talk_en.wav", "talk_de.wav"):
        sf.write(speech / name, rng.standard_normal(48000) * 0.1, 16000)
    prepare_synth(tmp_path / "corpus", seed=3, size="tiny", jobs=1, speech_dir=speech)
    params = json.loads((tmp_path / "corpus" / "synth.json").read_text())
    assert params["source_files"] == {"train": ["talk_en.wav"], "eval": ["talk_de.wav"]}
    assert "Speech events are real speech segments (`--speech-dir`)" in (tmp_path / "corpus" / "README.md").read_text()


def test_a_speech_dir_without_wav_files_is_refused_in_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="--speech-dir: no .wav file in this folder"):
        prepare_synth(tmp_path / "corpus", size="tiny", jobs=1, speech_dir=tmp_path / "empty")
    assert not (tmp_path / "corpus").exists()
