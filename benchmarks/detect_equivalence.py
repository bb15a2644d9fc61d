"""How far `atst-sed detect`'s speed options move a trained model's output from the reference
(float32, hop 5 s), beside how far the reference moves when only its window grid is shifted.

    .venv/bin/python benchmarks/detect_equivalence.py --checkpoint best.ckpt --recording long.wav [--minutes 10]

For each variant: the largest, mean and 99th-percentile change of the frame probabilities, and the
events (onset, offset, class at the checkpoint's thresholds) that are not in the reference's list.
The last row is the reference itself with its windows started 2.48 s later (62 frames of 40 ms): the
change a user would see from nothing but where the 10 s windows happen to fall. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from atst_sed.inference.detector import Detector

#: (label, precision, hop seconds) compared with the reference (fp32, 5 s).
VARIANTS = [("default (bf16 on this CPU), hop 5 s", "auto", 5.0), ("fp32, hop 8 s", "fp32", 8.0),
            ("fp32, hop 10 s", "fp32", 10.0), ("default, hop 10 s", "auto", 10.0)]
GRID_SHIFT_FRAMES = 62  # 2.48 s: about half a hop


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, required=True, help="a trained SED checkpoint")
    p.add_argument("--recording", type=Path, required=True, help="a long 16 kHz recording")
    p.add_argument("--minutes", type=float, default=10.0, help="use the first N minutes (default 10)")
    args = p.parse_args(argv)

    rate = sf.info(str(args.recording)).samplerate
    if rate != 16000:
        raise SystemExit(f"{args.recording}: {rate} Hz; this script reads 16 kHz recordings")
    audio = sf.read(str(args.recording), dtype="float32", frames=int(args.minutes * 60 * rate))[0]
    if audio.ndim > 1:
        audio = audio.mean(axis=1)

    def scores(precision: str, hop: float, start_frame: int = 0) -> tuple[Detector, np.ndarray]:
        detector = Detector.from_checkpoint(args.checkpoint, device="cpu", precision=precision, hop_seconds=hop)
        hop_samples = detector.spec.grid.hop_samples
        return detector, detector.scores_audio(audio[start_frame * hop_samples :], "x").probs

    reference_detector, reference = scores("fp32", 5.0)
    grid = reference_detector.spec.grid
    # Compare from frame GRID_SHIFT_FRAMES on, where every row (the shifted one included) has scores.
    reference = reference[GRID_SHIFT_FRAMES:]

    def events(probs: np.ndarray) -> set[tuple]:
        table = reference_detector.decoding.events(probs, "x", grid=grid)
        return set(map(tuple, table[["onset", "offset", "event_label"]].round(3).to_numpy().tolist()))

    wanted = events(reference)
    rows = []
    for label, precision, hop in VARIANTS:
        detector, probs = scores(precision, hop)
        rows.append((f"{label} [{detector.precision}]", probs[GRID_SHIFT_FRAMES:]))
    rows.append((f"reference with its windows started {GRID_SHIFT_FRAMES * grid.frame_seconds:g} s later",
                 scores("fp32", 5.0, GRID_SHIFT_FRAMES)[1]))
    print(f"{args.checkpoint} on the first {args.minutes:g} min of {args.recording.name}; torch {torch.__version__}; "
          f"reference: fp32, hop 5 s, {len(wanted)} events.\n")
    print("| variant | max \\|Δp\\| | mean \\|Δp\\| | 99th pct \\|Δp\\| | events not in the reference | reference events missing |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, probs in rows:
        n = min(len(probs), len(reference))
        diff = np.abs(probs[:n] - reference[:n])
        got, want = events(probs[:n]), events(reference[:n])
        print(f"| {label} | {diff.max():.4f} | {diff.mean():.5f} | {np.quantile(diff, 0.99):.4f} | "
              f"{len(got - want)} of {len(got)} | {len(want - got)} of {len(want)} |")


if __name__ == "__main__":
    main()
