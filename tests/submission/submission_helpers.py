"""Fake run folders per the run-folder contract and a META.yaml for the submission tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from atst_sed.labels import DESED_CLASSES

CLIPS = ("Y00aaaaaaaaa_0.000_10.000", "Y11bbbbbbbbb_30.000_40.000", "Y-2ccccccccc_5.000_15.000")


def write_scores(folder: Path, seed: int, classes=DESED_CLASSES, clips=CLIPS, frames_per_clip: int = 250,
                 frame_seconds: float = 0.04) -> dict[str, pd.DataFrame]:
    """sed_scores_eval score files written by sed_scores_eval itself (the reference format); ATST's
    40 ms frames by default (ATST-SED: 156 frames of 64 ms)."""
    from sed_scores_eval.base_modules.io import create_score_dataframe, write_sed_scores

    rng = np.random.default_rng(seed)
    frames = {}
    for clip in clips:
        n = frames_per_clip
        timestamps = np.arange(n + 1) * frame_seconds
        frames[clip] = create_score_dataframe(rng.random((n, len(classes))), timestamps, list(classes))
    write_sed_scores(frames, folder)
    return frames


def make_run(root: Path, name: str, seed: int = 0, psds=(0.41, 0.63), n_parameters=1_234_567,
             events: bool = True, scores: bool = True, unprocessed: bool = False,
             stages: tuple[str, ...] = ("finetune_frame", "test"), frames_per_clip: int = 250, frame_seconds: float = 0.04) -> Path:
    """A mini-recipe-like run folder: manifest, dev metrics, eval detections and scores (``stages``:
    the run's stages, the last a test stage; recipes/atst_sed: stage1, stage2, test on 64 ms frames)."""
    run = root / name
    for stage in stages[:-1]:
        (run / stage / "checkpoints").mkdir(parents=True)
        (run / stage / "checkpoints" / "best.ckpt").write_bytes(b"")  # only its path matters here
    manifest = {
        "atst_sed_version": "0.1.0",
        "git_commit": "abc1234",
        "created": "2026-11-23T12:00:00Z",
        "seed": seed,
        "versions": {"torch": "2.11.0", "pytorch_lightning": "2.6.6"},
        "dataset": {"root": "/data/synth", "fingerprint": "f00d", "missing_files": 0},
        "classes": list(DESED_CLASSES),
        "frontend": {"sample_rate": 16000, "n_mels": 64, "hop_length": 160},
        "model": {"encoder": {"variant": "frame", "width": 64}, "n_parameters": n_parameters,
                  "n_trainable_parameters": 4321},
        "training_data": ["synthetic21_train", "weak", "unlabel_in_domain"],
        "stages": list(stages),
    }
    (run / "manifest.json").write_text(json.dumps(manifest))
    (run / "test" / "student").mkdir(parents=True)
    (run / "test" / "student" / "metrics.json").write_text(
        json.dumps({"psds1": psds[0], "psds2": psds[1], "f1_event": 0.5, "n_thresholds": 50,
                    "psds1_sed_scores_eval": None if psds[0] is None else psds[0] + 0.01,
                    "psds2_sed_scores_eval": None if psds[1] is None else psds[1] + 0.01}))
    (run / "eval").mkdir()
    if events:
        (run / "eval" / "events.tsv").write_text(
            "filename\tonset\toffset\tevent_label\n"
            f"{CLIPS[0]}.wav\t0.120\t2.560\tDog\n"
            f"{CLIPS[0]}.wav\t3.000\t9.960\tSpeech\n"
            f"{CLIPS[1]}.wav\t\t\t\n"
            f"{CLIPS[2]}.wav\t1.000\t1.400\tAlarm_bell_ringing\n"
        )
    if scores:
        write_scores(run / "eval" / "scores", seed, frames_per_clip=frames_per_clip, frame_seconds=frame_seconds)
    if unprocessed:
        write_scores(run / "eval" / "scores_raw", seed + 100, frames_per_clip=frames_per_clip, frame_seconds=frame_seconds)
    return run


META = {
    "submission": {
        "name": "ATST-Frame fine-tuned",
        "abbreviation": "ATST-F",
        "authors": [
            {"lastname": "Doe", "firstname": "Jane", "email": "jane@uni.org", "corresponding": True,
             "affiliation": {"abbreviation": "UNI", "institute": "University", "location": "City"}},
            {"lastname": "Roe", "firstname": "Rick", "email": "rick@uni.org",
             "affiliation": {"abbreviation": "UNI", "institute": "University", "location": "City"}},
        ],
    },
    "system": {
        "description": {"machine_learning_method": "transformer", "data_augmentation": "mixup"},
        "source_code": "https://example.org/atst-sed",
    },
}
