"""Evaluation speed at AudioSet-strong scale: 1,000 clips x 407 classes, PSDS with alpha_st = 0.

A seeded synthetic system on a synthetic AudioSet-strong-like ground truth (10-s clips, a Poisson
number of events per clip, classes drawn from a long-tailed (Zipf) distribution over 407 MIDs, as in
the real release where a few classes hold most events). Frame scores on the 40 ms grid: each true
event becomes a bump of a random confidence, plus false-alarm bumps and a low background.

Times, each on its own (one process) and then the whole ``evaluate_scores`` (what ``atst-sed
evaluate --predictions SCORES/ --alpha-st 0`` runs):
* decoding 50 operating points (0.01 ... 0.99) from the scores;
* threshold-free PSDS1 and PSDS2 (sed_scores_eval; PSDS2's cross-triggers need O(classes² × frames)
  memory there — ~330 GB here — so it is skipped above ``MAX_CROSS_TRIGGER_BYTES``, as ``evaluate`` does);
* PSDS1 and PSDS2 from the 50 operating points (psds_eval);
* the F1 scores at 0.5 (sed_eval event / segment, psds_eval intersection).

Usage: ``.venv/bin/python benchmarks/evaluate_speed_as_strong.py [--clips 1000] [--jobs 2] [--out table.md]
[--skip-whole] [--skip-psds-eval]``
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd

from atst_sed.decoding import DCASE2022_THRESHOLDS, scores_to_operating_points
from atst_sed.evaluation.metrics import _f1_job, evaluate_scores
from atst_sed.evaluation.psds import (
    MAX_CROSS_TRIGGER_BYTES,
    cross_trigger_bytes,
    psds_from_operating_points,
    scenarios,
    threshold_free_psds,
)
from atst_sed.events import merge_overlapping_events
from atst_sed.fileio import atomic_write_text
from atst_sed.score_files import score_dataframe
from atst_sed.timegrid import ATST_GRID

N_CLASSES = 407
CLIP_SECONDS = 10.0


def synthetic_set(n_clips: int, seed: int = 0) -> tuple[pd.DataFrame, dict[str, float], dict[str, pd.DataFrame], list[str]]:
    """(ground truth, durations, score DataFrames, classes) of a seeded synthetic evaluation set."""
    rng = np.random.default_rng(seed)
    classes = [f"/m/{i:05x}" for i in range(N_CLASSES)]
    popularity = 1.0 / np.arange(1, N_CLASSES + 1) ** 0.9
    popularity /= popularity.sum()
    frame = ATST_GRID.frame_seconds
    n_frames = int(round(CLIP_SECONDS / frame))
    rows, scores, durations = [], {}, {}
    smooth = np.ones(5) / 5
    for k in range(n_clips):
        clip = f"Y{k:06d}_0.000_10.000"
        durations[clip] = CLIP_SECONDS
        s = rng.uniform(0.0, 0.008, (n_frames, N_CLASSES))  # a low background, below the lowest threshold
        for _ in range(max(1, rng.poisson(6))):
            c = int(rng.choice(N_CLASSES, p=popularity))
            length = rng.uniform(0.2, 4.0)
            onset = rng.uniform(0.0, CLIP_SECONDS - length)
            rows.append((clip, round(onset, 3), round(onset + length, 3), classes[c]))
            a, b = int(onset / frame), int(np.ceil((onset + length) / frame))
            s[a:b, c] = np.maximum(s[a:b, c], rng.beta(4, 2))
        for _ in range(rng.poisson(8)):  # false alarms
            c = int(rng.choice(N_CLASSES, p=popularity))
            a = int(rng.integers(0, n_frames))
            s[a:a + int(rng.integers(5, 60)), c] += rng.beta(1.5, 4)
        s = np.clip(np.apply_along_axis(lambda x: np.convolve(x, smooth, mode="same"), 0, s), 0, 1)
        scores[clip] = score_dataframe(s.astype(np.float32), classes, frame)
    # one event per class and clip at a time, as the release's merged labels
    gt = merge_overlapping_events(pd.DataFrame(rows, columns=["filename", "onset", "offset", "event_label"]))
    return gt, durations, scores, classes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    parser.add_argument("--skip-whole", action="store_true", help="time the parts only")
    parser.add_argument("--skip-psds-eval", action="store_true",
                        help="leave out psds_eval's operating-point PSDS (minutes per scenario at 407 classes)")
    args = parser.parse_args()

    start = time.perf_counter()
    gt, durations, scores, classes = synthetic_set(args.clips)
    print(f"synthetic set: {len(scores)} clips, {len(gt)} events, {gt['event_label'].nunique()} classes with events "
          f"({time.perf_counter() - start:.1f} s to build)", flush=True)
    settings = scenarios(alpha_st=0.0)
    rows = []

    def cpu() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def timed(label, fn):
        start, start_cpu = time.perf_counter(), cpu()
        result = fn()
        wall, used = time.perf_counter() - start, cpu() - start_cpu
        rows.append((label, wall, used, result))
        print(f"{label}: {wall:.1f} s wall, {used:.1f} s CPU", flush=True)
        return result

    ops = timed("decode 50 operating points from the scores",
                lambda: scores_to_operating_points(scores, DCASE2022_THRESHOLDS))
    needed = cross_trigger_bytes(scores)
    for name, sc in settings.items():
        if sc.alpha_ct > 0 and needed > MAX_CROSS_TRIGGER_BYTES:
            print(f"{name} threshold-free: not run (cross-triggers would need ~{needed / 1e9:.0f} GB)", flush=True)
            rows.append((f"{name} threshold-free (sed_scores_eval)", float("nan"), float("nan"),
                         f"not computed: ~{needed / 1e9:.0f} GB of cross-trigger statistics"))
            continue
        timed(f"{name} threshold-free (sed_scores_eval)", lambda sc=sc: threshold_free_psds(scores, gt, durations, sc))
    for name, sc in settings.items() if not args.skip_psds_eval else ():
        timed(f"{name}, 50 operating points (psds_eval)",
              lambda sc=sc: psds_from_operating_points(ops, gt, durations, sc))
    timed("F1 at 0.5 (sed_eval event + segment, psds_eval intersection)",
          lambda: _f1_job(ops[min(ops, key=lambda t: abs(t - 0.49))], gt, durations, classes))
    if not args.skip_whole:
        timed(f"whole `evaluate_scores` (all of the above), {args.jobs} processes",
              lambda: evaluate_scores(scores, gt, durations, classes, n_jobs=args.jobs, alpha_st=0.0))

    def value(r) -> str:
        if isinstance(r, str):
            return r
        if hasattr(r, "value"):
            return f"{r.value:.4f}"
        if isinstance(r, dict) and "psds1" in r:
            return (f"PSDS1 {r['psds1']:.4f}, PSDS2 {r['psds2']:.4f}; threshold-free PSDS1 "
                    f"{r['psds1_threshold_free']:.4f}")
        return "—"

    lines = [
        "## Evaluation speed at AudioSet-strong scale (`benchmarks/evaluate_speed_as_strong.py`)", "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, Python "
        f"{platform.python_version()}; load average {os.getloadavg()[0]:.1f} while measuring. Data: a seeded "
        f"synthetic set of {len(scores):,} 10-s clips × {N_CLASSES} classes (MIDs), {len(gt):,} ground-truth events "
        f"over {gt['event_label'].nunique()} classes (long-tailed), 40 ms frame scores; PSDS with α_st = 0.", "",
        "| what | wall s | CPU s | value |", "|---|---:|---:|---|",
    ]
    lines += [f"| {label} | {'—' if wall != wall else f'{wall:.1f}'} | {'—' if used != used else f'{used:.1f}'} | {value(r)} |"
              for label, wall, used, r in rows]
    table = "\n".join(lines) + "\n"
    if args.out is not None:
        atomic_write_text(args.out, table)
    print(table)


if __name__ == "__main__":
    main()
