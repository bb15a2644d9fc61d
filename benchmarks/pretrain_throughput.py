"""Pretraining throughput: optimizer steps/s and clips/s of one training step (forward of student
and teacher on both views, symmetric loss, backward, AdamW step, EMA update).

GPU: bf16 autocast + scaled_dot_product_attention (the encoder's attention). Data loading is not
included (random normalised log-mel views), so the figure is the model's ceiling; the dataloader
needs ≈ batch/steps-per-second clips/s from its workers.

    python benchmarks/pretrain_throughput.py                       # ATST-Frame base on cuda if present
    python benchmarks/pretrain_throughput.py --device cpu --encoder frame_tiny --batch-size 8
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from atst_sed.training.ema import ema_update
from atst_sed.training.pretrain import PretrainModelConfig, PretrainModule, symmetric_byol_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--encoder", default="frame_base", help="frame_base, frame_small, clip_base, … or *_tiny")
    parser.add_argument("--batch-size", type=int, default=144, help="clips per step (per GPU); 144 = paper's base")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--precision", choices=["bf16", "fp32"], default=None, help="default: bf16 on GPU, fp32 on CPU")
    parser.add_argument("--compile", action="store_true", help="torch.compile the student and teacher encoders")
    args = parser.parse_args()

    device = torch.device(args.device)
    precision = args.precision or ("bf16" if device.type == "cuda" else "fp32")
    method = args.encoder.split("_")[0]
    frames = 1001 if method == "frame" else 601
    torch.manual_seed(0)
    module = PretrainModule(PretrainModelConfig(method=method, encoder=args.encoder), batch_size=args.batch_size).to(device).train()
    if args.compile:
        module.model.student.encoder = torch.compile(module.model.student.encoder)
        module.model.teacher.encoder = torch.compile(module.model.teacher.encoder)
    opt = module.configure_optimizers()
    for g in opt.param_groups:
        g["lr"] = 1e-4
        g["weight_decay"] = 0.04 if g["decayed"] else 0.0
    v1 = torch.randn(args.batch_size, 64, frames, device=device)
    v2 = torch.randn(args.batch_size, 64, frames, device=device)

    def step() -> float:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            t_out, s_out = module.forward_views(v1, v2)
            loss = symmetric_byol_loss(t_out, s_out)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema_update(module.model.teacher, module.model.student, 0.9996)
        return loss

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    float(loss.detach())
    if device.type == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "encoder": args.encoder,
        "precision": precision,
        "batch_size": args.batch_size,
        "steps_per_s": round(args.steps / elapsed, 3),
        "clips_per_s": round(args.steps * args.batch_size / elapsed, 1),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None,
        "torch": torch.__version__,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
