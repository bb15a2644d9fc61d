"""Every published SED layout, run from the WAVEFORM through our frontends, equals the official code's
test path (tests/golden, generated once with the official audiossl / ATST-SED code — see its README):
features to 1e-5, frame and clip probabilities to 1e-4 (fp32, CPU).

``short_clips="pad"`` is the official devtest path (zero-pad to 10 s, padding scored as audio);
``short_clips="mask"`` (our default) scores a short clip alone, as the official unpadded paths do
(ATST-SED's evaluation mode; audiossl's encoder on the clip's own frames)."""

from __future__ import annotations

import numpy as np
import pytest
from models_helpers import LAYOUTS, REAL, SHORT, SYNTHETIC, golden_arrays, max_abs, official, read_input, run

FEATURE_TOLERANCE = 1e-5
PROBABILITY_TOLERANCE = 1e-4
INPUTS = [*SYNTHETIC, *REAL]
CASES = [pytest.param(folder, role, id=f"{folder}-{role}" if role else folder) for folder, role in LAYOUTS]


@pytest.fixture
def wave(request, name):
    if name in SYNTHETIC:
        return read_input(name)
    return read_input(name, request.getfixturevalue("shared_audio"))


def _golden_key(role: str | None, what: str, short_clips: str, name: str) -> str:
    unpadded = "unpadded_" if short_clips == "mask" and name in SHORT else ""
    return f"{unpadded}{role + '_' if role else ''}{what}"


@pytest.mark.parametrize("short_clips", ["pad", "mask"])
@pytest.mark.parametrize("name", INPUTS)
@pytest.mark.parametrize("folder,role", CASES)
def test_probabilities_equal_the_official_test_path(folder, role, name, short_clips, wave):
    loaded = official(folder, role)
    golden = golden_arrays(folder, name)
    _, out = run(loaded.model, wave, short_clips)
    frame = out.frame_probs[0].T.numpy()  # ours (T, C) → official (C, T)
    if "class_rows" in golden:  # AudioSet-strong: the golden file keeps every 10th of its 407 classes
        frame = frame[golden["class_rows"]]
    assert max_abs(frame, golden[_golden_key(role, "frame_probs", short_clips, name)]) <= PROBABILITY_TOLERANCE
    clip_key = _golden_key(role, "clip_probs", short_clips, name)
    if clip_key in golden:
        assert max_abs(out.clip_probs[0], golden[clip_key]) <= PROBABILITY_TOLERANCE
    else:  # the AudioSet-strong file has no clip head: ours is the maximum over the frames
        assert loaded.spec.clip_pooling == "max"
        np.testing.assert_allclose(out.clip_probs[0].numpy(), out.frame_probs[0].max(dim=0).values.numpy())


@pytest.mark.parametrize("short_clips", ["pad", "mask"])
@pytest.mark.parametrize("name", INPUTS)
def test_features_equal_the_official_frontends(name, short_clips, wave):
    golden = golden_arrays("features", name)
    step = int(golden["frame_step"])  # the real recordings keep every 4th frame
    prefix = "unpadded_" if short_clips == "mask" and name in SHORT else ""
    audiossl, _ = run(official("audiossl_desed_frame", None).model, wave, short_clips)
    atst_sed, _ = run(official("atstsed_stage2", "teacher").model, wave, short_clips)
    assert max_abs(audiossl.features[0, :, ::step], golden[prefix + "audiossl_atst"]) <= FEATURE_TOLERANCE
    assert max_abs(atst_sed.atst[0, :, ::step], golden[prefix + "atstsed_atst"]) <= FEATURE_TOLERANCE
    assert max_abs(atst_sed.cnn[0, :, ::step], golden[prefix + "atstsed_cnn"]) <= FEATURE_TOLERANCE


@pytest.mark.parametrize("name", list(SHORT))
def test_short_clip_outputs_cover_the_padding_only_when_padded(name, request):
    wave = read_input(name, None if name in SYNTHETIC else request.getfixturevalue("shared_audio"))
    n = SHORT[name]
    for folder, role, per_10s in (("audiossl_desed_frame", None, 250), ("atstsed_stage2", "teacher", 156)):
        model = official(folder, role).model
        _, padded = run(model, wave, "pad")
        _, alone = run(model, wave, "mask")
        assert padded.frame_probs.shape[1] == per_10s
        assert alone.frame_probs.shape[1] == model.grid.n_frames(n) < per_10s
