"""How far `atst-sed detect`'s speed options move a trained model's output from the reference
(float32, hop 5 s), beside how far the reference moves when only its window grid is shifted.

    .venv/bin/python benchmarks/detect_equivalence.py --checkpoint best.ckpt --recording long.wav [--minutes 10]
    .venv/bin/python benchmarks/detect_equivalence.py --checkpoint best.ckpt --test-set DIR --ground-truth gt.tsv
    .venv/bin/python benchmarks/detect_equivalence.py --checkpoint best.ckpt --test-set DIR --ground-truth gt.tsv \
        --save-joined test_1h.wav --minutes 60       # the test set end to end, repeated to an hour

For each variant: the largest, mean and 99th-percentile change of the frame probabilities, the frame
decisions (median-filtered score above the class's threshold) that changed with the largest margin
the reference had on any of them, and the events (onset, offset, class at the checkpoint's
thresholds) that are not in the reference's list. The first row is the reference itself; the last
is the reference with its windows started 62 frames later (2.48 s on ATST's 40 ms grid, 3.97 s on
ATST-SED's 64 ms): the change a user would see from nothing but where the 10 s windows happen to
fall. Prints a Markdown table.

``--test-set``: a folder of test clips (16 kHz WAVs, e.g. the synthetic validation set) joined end to
end, in name order, into one long recording, with their ground truth (a DESED TSV: filename, onset,
offset, event_label) moved to the joined time line; every row then also gets its PSDS1 and PSDS2
(DCASE 2022 settings, psds_eval from the 50 operating points of the post-processed scores, as
``atst-sed evaluate --predictions SCORES/`` computes them) and their change from the reference.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import torch

from atst_sed.events import clip_id
from atst_sed.evaluation import DCASE2022_THRESHOLDS, psds_from_operating_points, score_dataframe, scores_to_operating_points
from atst_sed.inference.detector import Detector

#: (label, precision, hop seconds) compared with the reference (fp32, 5 s).
VARIANTS = [("default (bf16 on this CPU), hop 5 s", "auto", 5.0), ("fp32, hop 8 s", "fp32", 8.0),
            ("fp32, hop 10 s", "fp32", 10.0), ("default, hop 10 s", "auto", 10.0)]
GRID_SHIFT_FRAMES = 62  # about half a hop (2.48 s on ATST's 40 ms grid)
RATE = 16000
JOINED = "joined"


def _read(path: Path, frames: int = -1) -> np.ndarray:
    rate = sf.info(str(path)).samplerate
    if rate != RATE:
        raise SystemExit(f"{path}: {rate} Hz; this script reads {RATE // 1000} kHz recordings")
    audio = sf.read(str(path), dtype="float32", frames=frames)[0]
    return audio.mean(axis=1) if audio.ndim > 1 else audio


def join_test_set(folder: Path, ground_truth: Path) -> tuple[np.ndarray, pd.DataFrame]:
    """The clips of ``folder`` end to end (name order) and their strong labels on the joined time line
    (filename :data:`JOINED`; clips the TSV does not name and rows without an onset are left out)."""
    clips = sorted(folder.glob("*.wav"))
    if not clips:
        raise SystemExit(f"{folder}: no .wav clips")
    labels = pd.read_csv(ground_truth, sep="\t").dropna(subset=["onset"])
    labels["clip"] = labels["filename"].map(clip_id)
    audio, start, rows = [], 0, []
    for path in clips:
        clip = _read(path)
        mine = labels[labels["clip"] == clip_id(path.name)]
        rows += [(JOINED, start / RATE + on, start / RATE + off, label)
                 for on, off, label in mine[["onset", "offset", "event_label"]].itertuples(index=False)]
        audio.append(clip)
        start += len(clip)
    return np.concatenate(audio), pd.DataFrame(rows, columns=["filename", "onset", "offset", "event_label"])


def psds(detector: Detector, probs: np.ndarray, truth: pd.DataFrame, from_seconds: float) -> tuple[float, float]:
    """PSDS1, PSDS2 of a track whose frame 0 is at ``from_seconds`` of the joined recording, over the
    classes of the ground truth (all ten on a DESED or synthetic test set)."""
    frame = detector.spec.grid.frame_seconds
    shifted = truth.assign(onset=truth["onset"] - from_seconds, offset=truth["offset"] - from_seconds)
    shifted = shifted[shifted["offset"] > 0].assign(onset=lambda d: d["onset"].clip(lower=0.0))
    labelled = set(truth["event_label"])
    scored = [i for i, c in enumerate(detector.classes) if c in labelled]
    filtered = detector.decoding.filtered(probs)[:, scored]
    scores = {JOINED: score_dataframe(filtered, [detector.classes[i] for i in scored], frame)}
    operating_points = scores_to_operating_points(scores, DCASE2022_THRESHOLDS)
    durations = {JOINED: len(probs) * frame}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # psds_eval's pandas warnings
        return tuple(psds_from_operating_points(operating_points, shifted, durations, scenario).value
                     for scenario in ("psds1", "psds2"))


def changed_decisions(detector: Detector, probs: np.ndarray, reference: np.ndarray) -> tuple[int, float]:
    """Frame × class decisions (median-filtered score above the class's threshold) that differ from
    the reference's, and the largest distance of the reference's own score from the threshold among
    them: how close to a coin toss the decisions that changed were."""
    thresholds = np.asarray(detector.decoding.thresholds, dtype=np.float64)
    ours, theirs = detector.decoding.filtered(probs), detector.decoding.filtered(reference)
    flipped = (ours > thresholds) != (theirs > thresholds)
    margin = np.abs(theirs - thresholds)[flipped]
    return int(flipped.sum()), float(margin.max()) if margin.size else 0.0


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True, help="a trained SED checkpoint")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--recording", type=Path, help="a long 16 kHz recording")
    source.add_argument("--test-set", type=Path, metavar="DIR", help="a folder of 16 kHz test clips (needs --ground-truth)")
    p.add_argument("--ground-truth", type=Path, metavar="TSV", help="strong labels of the --test-set clips")
    p.add_argument("--minutes", type=float, default=None,
                   help="use the first N minutes (default: 10 of a --recording, all of a --test-set)")
    p.add_argument("--save-joined", type=Path, metavar="WAV",
                   help="only write the joined --test-set, repeated to --minutes, as a 16-bit WAV (a long input for "
                        "detect_speed.py) and stop")
    args = p.parse_args(argv)

    minutes = args.minutes if args.minutes is not None else (None if args.test_set is not None else 10.0)
    truth = None
    if args.test_set is not None:
        if args.ground_truth is None:
            p.error("--test-set needs --ground-truth")
        audio, truth = join_test_set(args.test_set, args.ground_truth)
        source_name = f"{args.test_set.name}/ ({len(list(args.test_set.glob('*.wav')))} clips joined)"
    else:
        audio, source_name = _read(args.recording, int(minutes * 60 * RATE)), args.recording.name
    if args.save_joined is not None:
        if truth is None:
            p.error("--save-joined needs --test-set")
        n = int((minutes or len(audio) / RATE / 60) * 60 * RATE)
        sf.write(str(args.save_joined), np.resize(audio, n), RATE, subtype="PCM_16")
        print(f"{args.save_joined}: {n / RATE:g} s")
        return
    if minutes is not None:
        audio = audio[: int(minutes * 60 * RATE)]

    def scores(precision: str, hop: float, start_frame: int = 0) -> tuple[Detector, np.ndarray]:
        detector = Detector.from_checkpoint(args.checkpoint, device="cpu", precision=precision, hop_seconds=hop)
        hop_samples = detector.spec.grid.hop_samples
        return detector, detector.scores_audio(audio[start_frame * hop_samples :], "x").probs

    reference_detector, reference = scores("fp32", 5.0)
    grid = reference_detector.spec.grid
    # Compare from frame GRID_SHIFT_FRAMES on, where every row (the shifted one included) has scores.
    reference = reference[GRID_SHIFT_FRAMES:]
    from_seconds = GRID_SHIFT_FRAMES * grid.frame_seconds

    def events(probs: np.ndarray) -> set[tuple]:
        table = reference_detector.decoding.events(probs, "x", grid=grid)
        return set(map(tuple, table[["onset", "offset", "event_label"]].round(3).to_numpy().tolist()))

    rows = [("reference: fp32, hop 5 s", reference)]
    for label, precision, hop in VARIANTS:
        detector, probs = scores(precision, hop)
        rows.append((f"{label} [{detector.precision}]", probs[GRID_SHIFT_FRAMES:]))
    rows.append((f"reference with its windows started {from_seconds:g} s later",
                 scores("fp32", 5.0, GRID_SHIFT_FRAMES)[1]))
    wanted = events(reference)
    print(f"{args.checkpoint} on {source_name}, {len(audio) / RATE:g} s, compared from {from_seconds:g} s on; "
          f"torch {torch.__version__}; reference: fp32, hop 5 s, {len(wanted)} events.\n")
    header = ("| variant | max \\|Δp\\| | mean \\|Δp\\| | 99th pct \\|Δp\\| | frame decisions changed "
              "(largest fp32 margin among them) | events not in the reference | reference events missing |")
    rule = "|---|---:|---:|---:|---:|---:|---:|"
    if truth is not None:
        header, rule = header + " PSDS1 (Δ) | PSDS2 (Δ) |", rule + "---:|---:|"
        reference_psds = psds(reference_detector, reference, truth, from_seconds)
    print(header)
    print(rule)
    for label, probs in rows:
        n = min(len(probs), len(reference))
        diff = np.abs(probs[:n] - reference[:n])
        got, want = events(probs[:n]), events(reference[:n])
        flips, margin = changed_decisions(reference_detector, probs[:n], reference[:n])
        line = (f"| {label} | {diff.max():.4f} | {diff.mean():.5f} | {np.quantile(diff, 0.99):.4f} | "
                f"{flips} of {diff.size} ({margin:.4f}) | {len(got - want)} of {len(got)} | {len(want - got)} of {len(want)} |")
        if truth is not None:
            values = psds(reference_detector, probs[:n], truth, from_seconds)
            line += "".join(f" {v:.4f} ({v - r:+.4f}) |" for v, r in zip(values, reference_psds))
        print(line)


if __name__ == "__main__":
    main()
