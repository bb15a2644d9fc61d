"""Independent references for the foundation tests, written from the facts file (atst.md §1–3).

Nothing here imports the code under test: the log-mel frontend is numpy/scipy, the encoder forward is
explicit matmuls in torch, and the checkpoint builders write the published key layouts by hand.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch
from scipy.signal import get_window

SR = 16000
N_FFT = 1024
HOP = 160
N_MELS = 64
F_MIN, F_MAX = 60.0, 7800.0
DB_MIN, DB_MAX = -79.6482, 50.6842


# --------------------------------------------------------------------------- frontend (numpy)
def hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def htk_mel_filterbank() -> np.ndarray:
    """(513, 64) triangles with peak 1 (norm=None), edges equally spaced in HTK mel from 60 to 7800 Hz."""
    freqs = np.linspace(0.0, SR / 2, N_FFT // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(F_MIN), hz_to_mel(F_MAX), N_MELS + 2))
    fb = np.zeros((freqs.size, N_MELS))
    for j in range(N_MELS):
        lo, centre, hi = edges[j], edges[j + 1], edges[j + 2]
        rising = (freqs - lo) / (centre - lo)
        falling = (hi - freqs) / (hi - centre)
        fb[:, j] = np.maximum(0.0, np.minimum(rising, falling))
    return fb


def reference_logmel(wave: np.ndarray) -> np.ndarray:
    """One clip (N,) → (64, N // 160 + 1) normalised log-mel, float64 (audiossl's frontend by hand)."""
    x = np.pad(np.asarray(wave, dtype=np.float64), N_FFT // 2, mode="reflect")
    n_frames = 1 + (x.size - N_FFT) // HOP
    idx = np.arange(N_FFT)[None, :] + HOP * np.arange(n_frames)[:, None]
    window = get_window("hann", N_FFT, fftbins=True)  # periodic Hann
    spec = np.fft.rfft(x[idx] * window, axis=1)  # (frames, 513)
    power = spec.real**2 + spec.imag**2
    mel = htk_mel_filterbank().T @ power.T  # (64, frames)
    db = 10.0 * np.log10(np.maximum(mel, 1e-10))
    db = np.maximum(db, db.max() - 80.0)  # top_db relative to this clip's own maximum
    return (db - DB_MIN) / (DB_MAX - DB_MIN) * 2.0 - 1.0


# --------------------------------------------------------------------------- encoder (torch, explicit)
def official_encoder_sd(width: int, depth: int, variant: str = "frame", old_frame: bool = False,
                        seed: int = 0, scale: float = 0.08) -> dict[str, torch.Tensor]:
    """A FrameAST (``variant='frame'``) or AST (``'clip'``) state dict with audiossl's names and shapes.

    ``old_frame``: the older FrameAST variant (``cls_token`` present, final norm named ``norm``).
    Weights are random and large enough that attention is far from uniform.
    """
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, s=scale):
        return torch.randn(*shape, generator=g) * s

    d, h = width, 4 * width
    sd: dict[str, torch.Tensor] = {"mask_embed": rnd(1, 1, d, s=0.5)}
    if variant == "clip" or old_frame:
        sd["cls_token"] = rnd(1, 1, d, s=0.5)
    sd["pos_embed"] = rnd(1, 251, d, s=0.5)
    sd["patch_embed.patch_embed.weight"] = rnd(d, 256)
    sd["patch_embed.patch_embed.bias"] = rnd(d)
    for i in range(depth):
        p = f"blocks.{i}."
        sd[p + "norm1.weight"] = 1.0 + rnd(d, s=0.1)
        sd[p + "norm1.bias"] = rnd(d, s=0.1)
        sd[p + "attn.qkv.weight"] = rnd(3 * d, d, s=2.0 / math.sqrt(d))
        sd[p + "attn.proj.weight"] = rnd(d, d)
        sd[p + "attn.proj.bias"] = rnd(d)
        sd[p + "norm2.weight"] = 1.0 + rnd(d, s=0.1)
        sd[p + "norm2.bias"] = rnd(d, s=0.1)
        sd[p + "mlp.fc1.weight"] = rnd(h, d)
        sd[p + "mlp.fc1.bias"] = rnd(h)
        sd[p + "mlp.fc2.weight"] = rnd(d, h)
        sd[p + "mlp.fc2.bias"] = rnd(d)
    final = "norm." if (variant == "clip" or old_frame) else "norm_frame."
    sd[final + "weight"] = 1.0 + rnd(d, s=0.1)
    sd[final + "bias"] = rnd(d, s=0.1)
    return sd


def _layer_norm(x, w, b):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-6) * w + b


def _gelu(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def reference_encoder(sd: dict[str, torch.Tensor], features: torch.Tensor, frame_lengths=None,
                      variant: str = "frame", blocks=(-1,), token_mask=None):
    """audiossl's ``get_intermediate_layers`` by hand. ``features`` (B, 64, T) → list (one per block in
    ``blocks``) of (frames (B, N, D), cls (B, D) or None), each after the final norm."""
    b, m, t = features.shape
    n = t // 4
    d = sd["pos_embed"].shape[-1]
    heads = d // 64
    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    x = features[:, :, : 4 * n]
    patches = torch.empty(b, n, m * 4, dtype=features.dtype)
    for mel in range(m):  # element m*4+k = mel bin m of frame 4t+k (mel-major)
        for k in range(4):
            patches[:, :, mel * 4 + k] = x[:, mel, k::4]
    tok = patches @ sd["patch_embed.patch_embed.weight"].T + sd["patch_embed.patch_embed.bias"]
    if token_mask is not None:
        mk = token_mask[..., None].to(tok.dtype)
        tok = (1 - mk) * tok + mk * sd["mask_embed"]
    lengths = torch.full((b,), t) if frame_lengths is None else torch.as_tensor(frame_lengths)
    patch_length = (lengths - lengths % 4) // 4
    clip = variant == "clip"
    if clip:
        seq = torch.cat([sd["cls_token"].expand(b, 1, d), tok], dim=1) + sd["pos_embed"][:, : n + 1]
        key_len = patch_length + 1
    else:
        seq = tok + sd["pos_embed"][:, 1 : n + 1]
        key_len = patch_length
    s = seq.shape[1]
    additive = torch.where(torch.arange(s)[None, :] < key_len[:, None], 0.0, -10000.0).to(seq.dtype)
    final = "norm." if clip or "norm.weight" in sd else "norm_frame."
    wanted = {i % depth for i in blocks}
    outs = {}
    h = seq
    for i in range(depth):
        p = f"blocks.{i}."
        y = _layer_norm(h, sd[p + "norm1.weight"], sd[p + "norm1.bias"])
        qkv = (y @ sd[p + "attn.qkv.weight"].T).reshape(b, s, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        att = (q @ k.transpose(-2, -1)) * (d // heads) ** -0.5 + additive[:, None, None, :]
        att = att.softmax(dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, s, d) @ sd[p + "attn.proj.weight"].T + sd[p + "attn.proj.bias"]
        h = h + y
        y = _layer_norm(h, sd[p + "norm2.weight"], sd[p + "norm2.bias"])
        y = _gelu(y @ sd[p + "mlp.fc1.weight"].T + sd[p + "mlp.fc1.bias"])
        h = h + y @ sd[p + "mlp.fc2.weight"].T + sd[p + "mlp.fc2.bias"]
        if i in wanted:
            outs[i] = _layer_norm(h, sd[final + "weight"], sd[final + "bias"])
    result = []
    for i in blocks:
        o = outs[i % depth]
        result.append((o[:, 1:], o[:, 0]) if clip else (o, None))
    return result


# --------------------------------------------------------------------------- published checkpoint layouts
def byol_mlp(in_dim: int, prefix: str, g: torch.Generator, out_dim: int = 256) -> dict[str, torch.Tensor]:
    """audiossl's projector/predictor: Linear(in, 4096, no bias) → BatchNorm1d(4096) → ReLU → Linear(4096, 256, no bias)."""
    return {
        prefix + "0.weight": torch.randn(4096, in_dim, generator=g) * 0.01,
        prefix + "1.weight": torch.ones(4096),
        prefix + "1.bias": torch.zeros(4096),
        prefix + "1.running_mean": torch.zeros(4096),
        prefix + "1.running_var": torch.ones(4096),
        prefix + "1.num_batches_tracked": torch.tensor(123, dtype=torch.int64),
        prefix + "3.weight": torch.randn(out_dim, 4096, generator=g) * 0.01,
    }


def lightning_wrap(state_dict: dict, hyper_parameters: dict) -> dict:
    """A PyTorch-Lightning checkpoint around ``state_dict`` (plain data only, as Lightning writes it)."""
    first = next(iter(state_dict.values()))
    return {
        "epoch": 199,
        "global_step": 58500,
        "pytorch-lightning_version": "1.5.10",
        "state_dict": state_dict,
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 200, "completed": 199}}}},
        "callbacks": {"ModelCheckpoint{'monitor': None, 'mode': 'min'}": {
            "best_model_score": None, "best_model_path": "/exp/last.ckpt", "dirpath": "/exp"}},
        "optimizer_states": [{"state": {0: {"step": torch.tensor(5.0), "exp_avg": torch.zeros_like(first)}},
                              "param_groups": [{"lr": 1e-6, "weight_decay": 0.4, "params": [0]}]}],
        "lr_schedulers": [],
        "hparams_name": "kwargs",
        "hyper_parameters": hyper_parameters,
    }


def pretraining_checkpoint(width: int, depth: int, variant: str, old_frame: bool = False) -> tuple[dict, dict]:
    """Lightning pretraining file (student/teacher encoder + projector, student predictor).

    Returns (file dict, the teacher encoder's own state dict)."""
    g = torch.Generator().manual_seed(7)
    teacher = official_encoder_sd(width, depth, variant, old_frame=old_frame, seed=1)
    student = {k: -v for k, v in teacher.items()}  # distinct values, cheap to build
    sd = {}
    sd.update({f"model.student.encoder.{k}": v for k, v in student.items()})
    sd.update(byol_mlp(width, "model.student.projector.", g))
    sd.update(byol_mlp(256, "model.student.predictor.", g))
    sd.update({f"model.teacher.encoder.{k}": v for k, v in teacher.items()})
    sd.update(byol_mlp(width, "model.teacher.projector.", g))
    if variant == "frame":
        hp = {"arch": "small", "anchor_len": 10.0, "mask_ratio": 0.65, "mask_len": 5, "n_mels": 64,
              "win_length": 1024, "learning_rate": 4e-4, "ema": 0.997, "symmetric": True}
    else:
        hp = {"arch": "small", "train_len": 9.0, "learning_rate": 5e-4, "ema": 0.99, "symmetric": True}
    return lightning_wrap(sd, hp), teacher


def dino_clip_checkpoint(width: int, depth: int) -> tuple[dict, dict]:
    """DINO-style ATST-Clip base release: ``teacher``/``student`` dicts with ``module.backbone.*`` and a
    ``module.head.*`` projection head, plus an ``argparse.Namespace`` under ``args``."""
    g = torch.Generator().manual_seed(3)
    teacher = official_encoder_sd(width, depth, "clip", seed=4)
    student = official_encoder_sd(width, depth, "clip", seed=5)

    def wrap(enc):
        out = {f"module.backbone.{k}": v for k, v in enc.items()}
        out.update({f"module.head.{k}": v for k, v in byol_mlp(width, "mlp.", g).items()})
        out["module.head.last_layer.weight_g"] = torch.ones(256, 1)
        out["module.head.last_layer.weight_v"] = torch.randn(256, 256, generator=g)
        return out

    args = argparse.Namespace(arch="ast_base", anchor_len=[6.0], lr=2e-4, batch_size_per_gpu=256,
                              epochs=100, output_dir="/exp/atst_clip_base", local_crops_number=0)
    raw = {"student": wrap(student), "teacher": wrap(teacher), "epoch": 100, "args": args,
           "optimizer": {"state": {}, "param_groups": [{"lr": 1e-6, "params": [0, 1]}]},
           "dino_loss": {"center": torch.zeros(1, 256)}}
    return raw, teacher


def desed_head(width: int, prefix: str = "head.", n_classes: int = 10) -> dict[str, torch.Tensor]:
    return {prefix + "linear.weight": torch.randn(n_classes, width) * 0.01, prefix + "linear.bias": torch.zeros(n_classes),
            prefix + "linear_softmax.weight": torch.randn(n_classes, width) * 0.01,
            prefix + "linear_softmax.bias": torch.zeros(n_classes)}


def finetuned_frame_checkpoint(width: int, depth: int) -> tuple[dict, dict]:
    enc = official_encoder_sd(width, depth, "frame", seed=11)
    sd = {f"encoder.encoder.{k}": v for k, v in enc.items()}
    sd.update(desed_head(width))
    return lightning_wrap(sd, {"learning_rate": 0.1, "max_epochs": 100, "arch": "frameatst"}), enc


def finetuned_clip_checkpoint(width: int, depth: int) -> tuple[dict, dict]:
    """Clip-level ATST-Clip fine-tune: BatchNorm1d(affine=False) + Linear head."""
    enc = official_encoder_sd(width, depth, "clip", seed=12)
    sd = {f"encoder.encoder.{k}": v for k, v in enc.items()}
    sd.update({"head.norm.running_mean": torch.zeros(2 * width), "head.norm.running_var": torch.ones(2 * width),
               "head.norm.num_batches_tracked": torch.tensor(9, dtype=torch.int64),
               "head.linear.weight": torch.randn(527, 2 * width) * 0.01, "head.linear.bias": torch.zeros(527)})
    return lightning_wrap(sd, {"learning_rate": 0.5, "n_last_blocks": 1}), enc


def c2f_checkpoint(width: int, depth: int) -> tuple[dict, dict]:
    """DESED C2F PredModule: the frame student under ``encoder.encoder.frame_encoder.``, the frozen fine-tuned
    ATST-Clip (encoder + head) under ``encoder.encoder.teacher_module.``."""
    frame = official_encoder_sd(width, depth, "frame", seed=21)
    clip = official_encoder_sd(width, depth, "clip", seed=22)
    sd = {f"encoder.encoder.frame_encoder.{k}": v for k, v in frame.items()}
    sd.update({f"encoder.encoder.teacher_module.encoder.encoder.{k}": v for k, v in clip.items()})
    sd.update(desed_head(width, "encoder.encoder.teacher_module.head."))
    sd.update(desed_head(width))
    return lightning_wrap(sd, {"learning_rate": 0.1, "distill_mode": "frame->clip"}), frame


def atst_sed_stage_checkpoint(width: int, depth: int) -> tuple[dict, dict]:
    """ATST-SED stage file: CRNN student/teacher with the ATST-Frame under ``atst_frame.atst.`` and thop's
    ``total_ops``/``total_params`` counters."""
    student = official_encoder_sd(width, depth, "frame", seed=31)
    teacher = official_encoder_sd(width, depth, "frame", seed=32)
    sd = {}
    for name, enc in (("sed_student", student), ("sed_teacher", teacher)):
        sd.update({f"{name}.atst_frame.atst.{k}": v for k, v in enc.items()})
        sd[f"{name}.atst_frame.atst.total_ops"] = torch.zeros(1, dtype=torch.float64)
        sd[f"{name}.atst_frame.atst.total_params"] = torch.zeros(1, dtype=torch.float64)
        sd[f"{name}.cnn.cnn.conv0.weight"] = torch.randn(16, 1, 3, 3)
        sd[f"{name}.rnn.rnn.weight_ih_l0"] = torch.randn(768, 256 + width)
        sd[f"{name}.dense.weight"] = torch.randn(10, 512)
        sd[f"{name}.dense_softmax.weight"] = torch.randn(10, 512)
    return lightning_wrap(sd, {"opt": {"lr": 1e-3}, "ultra": {"atst_dropout": 0.0}}), teacher


def official_to_ours(key: str) -> str:
    """Our parameter name for an audiossl FrameAST/AST name."""
    if key.startswith("patch_embed.patch_embed."):
        return "patch_embed." + key[len("patch_embed.patch_embed."):]
    if key.startswith("norm_frame."):
        return "norm." + key[len("norm_frame."):]
    return key


def clip_level_c2f_checkpoint(width: int, depth: int) -> tuple[dict, dict]:
    """Clip-level C2F (``module_distill.py``): ATST-Clip teacher + head under ``model.teacher.``, the FrameAST
    student directly under ``model.student.``, its LinearHead (BatchNorm affine=False) under ``model.linear.``."""
    clip = official_encoder_sd(width, depth, "clip", seed=41)
    frame = official_encoder_sd(width, depth, "frame", seed=42)
    sd = {f"model.teacher.encoder.{k}": v for k, v in clip.items()}
    sd.update({"model.teacher.head.linear.weight": torch.randn(527, 2 * width) * 0.01,
               "model.teacher.head.linear.bias": torch.zeros(527)})
    sd.update({f"model.student.{k}": v for k, v in frame.items()})
    sd.update({"model.linear.norm.running_mean": torch.zeros(width), "model.linear.norm.running_var": torch.ones(width),
               "model.linear.norm.num_batches_tracked": torch.tensor(3, dtype=torch.int64),
               "model.linear.linear.weight": torch.randn(527, width) * 0.01, "model.linear.linear.bias": torch.zeros(527)})
    return lightning_wrap(sd, {"lambda_d": 1.0, "learning_rate": 0.5}), frame
