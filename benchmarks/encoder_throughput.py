"""Throughput of the ATST encoder on 10 s clips: inference (frontend + encoder) and a last-block fine-tune step.

Usage::

    python benchmarks/encoder_throughput.py                       # CPU (fp32) and, if present, CUDA (bf16)
    python benchmarks/encoder_throughput.py --device cuda --batch-size 256 --iters 20 --compile
    python benchmarks/encoder_throughput.py --device cpu --batch-size 8 --iters 3 --models frame_small
    python benchmarks/encoder_throughput.py --device cuda --models frame_base --official-audiossl /tmp/audiossl

``--official-audiossl DIR`` (a folder holding the ``audiossl`` package of Audio-WestlakeU/audiossl) adds
the official ``FrameAST`` of the same size, timed in the same run with the same inputs, precision and
steps (its masking helper, which needs fairseq and only serves pretraining, is replaced by an empty
module). Nothing of it is copied into atst-sed: it is imported from DIR at run time.

Inference = waveform (B, 160000) → LogMelFrontend → ATSTEncoder (last block), under ``torch.inference_mode``.
Fine-tune = the paper's DESED setting: ``SEDModel.freeze_all_but_last(1)`` (last block + final norm + head
trainable, frozen blocks run without autograd), BCE on frame and clip probabilities, SGD momentum 0.9;
features are computed by the frontend inside the timed step. Inference runs in the precision `atst-sed
detect` picks for the device (``--precision``: bf16 autocast on CUDA GPUs and on CPUs with native bf16,
fp32 elsewhere); fine-tuning in bf16 autocast on CUDA and fp32 on CPU, as training does. Attention is
``scaled_dot_product_attention`` (flash kernels when no padding mask is needed). Prints a markdown table;
``--profile N`` adds torch.profiler's top N operators of one inference pass (where the time goes).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from dataclasses import dataclass

import torch

from atst_sed.frontend import LogMelFrontend
from atst_sed.inference.detector import resolve_precision
from atst_sed.models.encoder import ATSTEncoder, EncoderConfig
from atst_sed.models.sed import SEDModel

CLIP_SAMPLES = 160000  # 10 s at 16 kHz


@dataclass
class Result:
    model: str
    device: str
    precision: str
    mode: str
    batch: int
    clips_per_s: float
    ms_per_batch: float
    cpu_s_per_batch: float  # process CPU time (all threads): the cost independent of other load on the machine


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(step, device: torch.device, warmup: int, iters: int) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) per call of ``step`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        step()
    _sync(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    for _ in range(iters):
        step()
    _sync(device)
    return (time.perf_counter() - start) / iters, (time.process_time() - cpu_start) / iters


def linear_weights_to_bf16(module: torch.nn.Module) -> None:
    """Cast every Linear layer's weights to bf16 once, as the detector does before bf16 autocast (which
    would otherwise cast them again on every pass)."""
    for layer in module.modules():
        if isinstance(layer, torch.nn.Linear):
            layer.to(torch.bfloat16)


def inference_step(name: str, device: torch.device, batch: int, precision: str, compile_: bool):
    """One inference pass over ``batch`` random 10 s clips, as ``atst-sed detect`` runs it: in bf16 the
    Linear weights are cast once and the encoder runs under autocast (LayerNorm, softmax statistics
    and the residual sums in float32)."""
    encoder = ATSTEncoder(EncoderConfig.named(name)).to(device).eval()
    if precision == "bf16":
        linear_weights_to_bf16(encoder)
    frontend = LogMelFrontend().to(device)
    run = torch.compile(encoder) if compile_ else encoder
    wave = torch.randn(batch, CLIP_SAMPLES, device=device) * 0.1

    def step() -> None:
        with torch.inference_mode():
            features = frontend(wave)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                run(features)

    return step


def bench_inference(name: str, device: torch.device, batch: int, warmup: int, iters: int, compile_: bool,
                    precision: str) -> Result:
    step = inference_step(name, device, batch, precision, compile_)
    seconds, cpu = _timed(step, device, warmup, iters)
    return Result(name, device.type, precision, "inference", batch, batch / seconds, 1000 * seconds, cpu)


def profile_inference(name: str, device: torch.device, batch: int, precision: str, rows: int) -> str:
    """torch.profiler's table of the operators of one inference pass (after one untimed pass), by own time."""
    from torch.profiler import ProfilerActivity, profile

    step = inference_step(name, device, batch, precision, False)
    step()
    _sync(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities, acc_events=True) as prof:
        step()
        _sync(device)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    return prof.key_averages().table(sort_by=key, row_limit=rows)


def bench_finetune(name: str, device: torch.device, batch: int, warmup: int, iters: int, compile_: bool) -> Result:
    model = SEDModel(EncoderConfig.named(name), [f"class_{i}" for i in range(10)]).to(device)
    model.freeze_all_but_last(1)
    model.train()
    run = torch.compile(model) if compile_ else model
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    wave = torch.randn(batch, CLIP_SAMPLES, device=device) * 0.1
    frame_targets = (torch.rand(batch, 250, 10, device=device) > 0.8).float()
    clip_targets = frame_targets.amax(dim=1)
    bf16 = device.type == "cuda"
    bce = torch.nn.functional.binary_cross_entropy

    def step() -> None:
        inputs = model.features(wave)  # the model's own frontend, no autograd
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out = run(*inputs)
        loss = bce(out.frame_probs.float(), frame_targets) + bce(out.clip_probs.float(), clip_targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(optimizer.param_groups[0]["params"], 3.0)
        optimizer.step()

    seconds, cpu = _timed(step, device, warmup, iters)
    return Result(name, device.type, "bf16" if bf16 else "fp32", "fine-tune (last block)", batch, batch / seconds,
                  1000 * seconds, cpu)


def official_frame_ast(audiossl: str, name: str) -> torch.nn.Module:
    """The official FrameAST of ``name``'s size (``frame_small`` / ``frame_base``), imported from DIR."""
    import importlib
    import sys
    import types

    if audiossl not in sys.path:
        sys.path.insert(0, audiossl)
    masking = "audiossl.methods.atstframe.random_mask"  # imports fairseq; only pretraining uses it
    sys.modules.setdefault(masking, types.ModuleType(masking))
    module = importlib.import_module("audiossl.methods.atstframe.audio_transformer")
    return getattr(module, {"frame_small": "FrameAST_small", "frame_base": "FrameAST_base"}[name])()


class OfficialSED(torch.nn.Module):
    """Official FrameAST (last block, ``norm_frame``) + a frame-wise linear head: the official DESED
    fine-tuning's shape, fed our frontend's features as (B, 1, 64, T)."""

    def __init__(self, encoder: torch.nn.Module, n_classes: int = 10):
        super().__init__()
        self.encoder = encoder
        self.linear = torch.nn.Linear(encoder.norm_frame.normalized_shape[0], n_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        lengths = torch.full((features.shape[0],), features.shape[-1], device=features.device)
        tokens = self.encoder.get_intermediate_layers(features[:, None], lengths, n=1, scene=False)
        return torch.sigmoid(self.linear(tokens).float())


def bench_official(name: str, audiossl: str, mode: str, device: torch.device, batch: int, warmup: int,
                   iters: int, precision: str) -> Result:
    """The official FrameAST timed like :func:`bench_inference` (in ``precision``, its Linear weights
    cast once in bf16) / :func:`bench_finetune` (mode)."""
    model = OfficialSED(official_frame_ast(audiossl, name)).to(device)
    frontend = LogMelFrontend().to(device)
    wave = torch.randn(batch, CLIP_SAMPLES, device=device) * 0.1
    bf16 = device.type == "cuda"
    label = f"official FrameAST ({name})"
    if mode == "inference":
        model.eval()
        if precision == "bf16":
            linear_weights_to_bf16(model.encoder)

        def step() -> None:
            with torch.inference_mode():
                features = frontend(wave)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                    model(features)

        seconds, cpu = _timed(step, device, warmup, iters)
        return Result(label, device.type, precision, "inference", batch, batch / seconds, 1000 * seconds, cpu)
    for p in model.parameters():  # last block + final norm + head trainable, as freeze_all_but_last(1)
        p.requires_grad_(False)
    trainable = [*model.encoder.blocks[-1].parameters(), *model.encoder.norm_frame.parameters(), *model.linear.parameters()]
    for p in trainable:
        p.requires_grad_(True)
    model.train()
    optimizer = torch.optim.SGD(trainable, lr=0.1, momentum=0.9)
    targets = (torch.rand(batch, 250, 10, device=device) > 0.8).float()

    def step() -> None:
        with torch.no_grad():
            features = frontend(wave)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            probs = model(features)
        loss = torch.nn.functional.binary_cross_entropy(probs, targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 3.0)
        optimizer.step()

    seconds, cpu = _timed(step, device, warmup, iters)
    return Result(label, device.type, "bf16" if bf16 else "fp32", "fine-tune (last block)", batch, batch / seconds,
                  1000 * seconds, cpu)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def markdown(results: list[Result]) -> str:
    lines = ["| model | device | precision | mode | batch | clips/s | ms / batch | CPU s / batch |",
             "|---|---|---|---|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r.model} | {r.device} | {r.precision} | {r.mode} | {r.batch} | {r.clips_per_s:,.1f} | "
                     f"{r.ms_per_batch:,.1f} | {r.cpu_s_per_batch:,.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["frame_small", "frame_base"],
                   help="encoder names (frame|clip _ tiny|small|base)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: CPU, plus CUDA when available")
    p.add_argument("--batch-size", type=int, default=None, help="clips per batch (default 8 on CPU, 256 on CUDA)")
    p.add_argument("--iters", type=int, default=None, help="timed iterations (default 3 on CPU, 20 on CUDA)")
    p.add_argument("--warmup", type=int, default=None, help="untimed iterations (default 1 on CPU, 5 on CUDA)")
    p.add_argument("--modes", nargs="+", choices=("inference", "finetune"), default=["inference", "finetune"])
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--compile", action="store_true", help="torch.compile the encoder / model first")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                   help="inference precision; auto: what atst-sed detect uses on the device (bf16 on CUDA GPUs "
                        "with bf16 and on CPUs with native bf16, fp32 elsewhere). Fine-tuning: bf16 on CUDA, "
                        "fp32 on CPU, as training runs")
    p.add_argument("--profile", type=int, default=0, metavar="ROWS",
                   help="also print torch.profiler's top ROWS operators of one inference pass per model")
    p.add_argument("--official-audiossl", metavar="DIR",
                   help="also time the official FrameAST of each frame model, imported from DIR/audiossl")
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    else:
        if args.device == "cuda" and not torch.cuda.is_available():
            raise SystemExit("no CUDA device available")
        devices = [torch.device(args.device)]
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True

    results: list[Result] = []
    profiles: list[str] = []
    for device in devices:
        gpu = device.type == "cuda"
        batch = args.batch_size or (256 if gpu else 8)
        iters = args.iters or (20 if gpu else 3)
        warmup = args.warmup if args.warmup is not None else (5 if gpu else 1)
        precision = resolve_precision(args.precision, device)
        for name in args.models:
            torch.manual_seed(0)
            if "inference" in args.modes:
                results.append(bench_inference(name, device, batch, warmup, iters, args.compile, precision))
            if args.profile:
                profiles.append(f"{name}, {device.type}, {precision}, batch {batch}:\n"
                                f"{profile_inference(name, device, batch, precision, args.profile)}")
            if "finetune" in args.modes:
                results.append(bench_finetune(name, device, batch, warmup, iters, args.compile))
            if args.official_audiossl and name in ("frame_small", "frame_base"):
                for mode in args.modes:  # interleaved with ours, same inputs and settings
                    torch.manual_seed(0)
                    results.append(bench_official(name, args.official_audiossl, mode, device, batch, warmup, iters,
                                                  precision))
            if gpu:
                torch.cuda.empty_cache()
    where = torch.cuda.get_device_name(0) if any(d.type == "cuda" for d in devices) else _cpu_name()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {where}, {torch.get_num_threads()} CPU threads, "
          f"{os.cpu_count()} cores, load average {load:.1f}\n")
    print(markdown(results))
    for text in profiles:
        print(f"\n{text}")


if __name__ == "__main__":
    main()
