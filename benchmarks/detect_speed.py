"""Speed of ``atst-sed detect``: real-time factor on CPU, files/s on GPU.

    .venv/bin/python benchmarks/detect_speed.py [--seconds 60] [--threads 2] [--repeats 3] [--gpu-files 256]

CPU: a frame_base SED model (random weights: speed does not depend on them) on ``--seconds`` of
audio, end to end (frontend + encoder + head + overlap-add + decoding), for hop 5 s (default) and
hop 10 s, in float32 and with bf16 autocast (accuracy against float32 reported). GPU (when CUDA is
available): files/s for 10 s clips in bf16 at batch 64. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from atst_sed.inference.detector import Detector
from atst_sed.labels import DESED_CLASSES
from atst_sed.models.encoder import EncoderConfig
from atst_sed.models.sed import SEDModel


def _model(size: str = "base") -> SEDModel:
    torch.manual_seed(0)
    model = SEDModel(EncoderConfig.named(f"frame_{size}"), DESED_CLASSES).eval()
    with torch.no_grad():
        model.head.linear.weight.normal_(0.0, 0.05)
    return model


def _time(fn, repeats: int) -> tuple[float, float, object]:
    """Median wall-clock seconds, median CPU seconds of this process, last result."""
    fn()  # warm-up
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        out = fn()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), out


def cpu_rows(seconds: float, threads: int, repeats: int) -> list[str]:
    torch.set_num_threads(threads)
    audio = (np.random.default_rng(0).standard_normal(int(seconds * 16000)) * 0.1).astype(np.float32)
    model = _model()
    rows = []
    reference = None
    for hop in (5.0, 10.0):
        for precision in ("fp32", "bf16"):
            det = Detector(model, device="cpu", batch_size=4, hop_seconds=hop, precision=precision)

            def run(det=det):
                scores = det.scores_audio(audio, "bench")
                det.events(scores)
                return scores.probs

            elapsed, cpu, probs = _time(run, repeats)
            if hop == 5.0 and precision == "fp32":
                reference = probs
            err = float(np.abs(probs - reference).max()) if reference is not None and hop == 5.0 else float("nan")
            rows.append(
                f"| CPU {threads} threads | frame_base | {seconds:.0f} s | hop {hop:g} s | {precision} | "
                f"{elapsed:.2f} s | {elapsed / seconds:.4f} | {cpu:.2f} s | **{cpu / threads / seconds:.4f}** | "
                f"{'' if np.isnan(err) else f'{err:.4f}'} |"
            )
    # The frontend alone (one batch of 10 s windows), to show where the time goes.
    fe = model.frontend
    batch = torch.from_numpy(audio[: 4 * 160000].copy()).view(-1, 160000) if len(audio) >= 640000 else torch.zeros(4, 160000)
    with torch.inference_mode():
        fe_time, fe_cpu, _ = _time(lambda: fe(batch), repeats)
        feats = fe(batch)
        enc_time, enc_cpu, _ = _time(lambda: model(feats), repeats)
    for part, wall, cpu in (("frontend only", fe_time, fe_cpu), ("encoder + head only", enc_time, enc_cpu)):
        rows.append(
            f"| CPU {threads} threads | {part} | 4 × 10 s | | fp32 | {wall:.3f} s | {wall / 40:.4f} | {cpu:.3f} s | "
            f"**{cpu / threads / 40:.4f}** | |"
        )
    return rows


def gpu_rows(n_files: int, repeats: int) -> list[str]:
    if not torch.cuda.is_available():
        return ["| GPU | not available in this session | | | | | | | | |"]
    torch.backends.cuda.matmul.allow_tf32 = True
    det = Detector(_model(), device="cuda", batch_size=64)
    clips = (np.random.default_rng(0).standard_normal((n_files, 160000)) * 0.1).astype(np.float32)

    def run():
        for clip in clips:
            det.events(det.scores_audio(clip, "x"))
        torch.cuda.synchronize()

    def run_batched():  # files batched together (64 clips per forward pass)
        wav = torch.from_numpy(clips)
        for i in range(0, n_files, 64):
            det._run_batch(wav[i : i + 64], None)
        torch.cuda.synchronize()

    one, _, _ = _time(run, repeats)
    many, _, _ = _time(run_batched, repeats)
    name = torch.cuda.get_device_name()
    return [
        f"| GPU {name} | frame_base | {n_files} × 10 s | per file | bf16 | {one:.2f} s | {n_files / one:.1f} files/s | | | |",
        f"| GPU {name} | frame_base | {n_files} × 10 s | 64 files per batch | bf16 | {many:.2f} s | {n_files / many:.1f} files/s | | | |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gpu-files", type=int, default=256)
    parser.add_argument("--skip-cpu", action="store_true")
    args = parser.parse_args()
    import os

    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("| device | model / part | audio | windows | precision | wall | RTF (wall) | CPU time | RTF (CPU time / threads) | max abs diff vs fp32 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows = [] if args.skip_cpu else cpu_rows(args.seconds, args.threads, args.repeats)
    rows += gpu_rows(args.gpu_files, args.repeats)
    print("\n".join(rows))
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
