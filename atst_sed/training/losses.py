"""SED training losses: masked supervised BCE, C2F/F2C distillation, mean-teacher and interpolation
consistency, mixup.

All losses are computed in float32 (autocast off), whatever precision the forward pass ran in.
Shapes: frame tensors (B, N, C) time-major, clip tensors (B, C), masks (B,) or (B, N) bool (a
model's :attr:`SEDOutput.valid` marks each clip's frames).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from atst_sed.models.head import SEDOutput


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` over the entries where ``mask`` (broadcastable) is True; 0 (with graph) if none."""
    mask = mask.to(values.dtype).expand_as(values)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


class SupervisedLoss(NamedTuple):
    total: Tensor  # strong_weight · strong + weak_weight · weak
    strong: Tensor  # mean frame BCE over strong clips' valid frames and classes
    weak: Tensor  # mean clip BCE over weak clips and classes
    strong_count: Tensor  # entries behind ``strong`` (valid frames × classes of strong clips)
    weak_count: Tensor  # entries behind ``weak`` (weak clips × classes)


def supervised_loss(
    output: SEDOutput,
    strong: Tensor,
    weak: Tensor,
    has_strong: Tensor,
    has_weak: Tensor,
    valid: Tensor,
    strong_weight: float = 1.0,
    weak_weight: float = 1.0,
    weak_on_strong_clips: bool = False,
) -> SupervisedLoss:
    """Frame BCE on strong clips (valid frames only) + clip BCE on weak clips, 1:1 by default.

    ``strong`` (B, N', C) frame targets (N' ≥ N is cut to the model's N tokens), ``weak`` (B, C).
    As in the released DESED fine-tuning, the clip loss covers weakly labelled clips only; set
    ``weak_on_strong_clips`` to also apply it to strong clips (whose ``weak`` is the any-over-frames).
    Samples whose mask is False contribute nothing (neither value nor gradient).
    """
    n = output.frame_logits.shape[1]
    with torch.autocast(device_type=output.frame_logits.device.type, enabled=False):
        logits = output.frame_logits.float()
        target = strong[:, :n].float().to(logits.device)
        frame_mask = (has_strong[:, None] & valid)[..., None]
        # Frames of masked samples may carry garbage targets: zero them so no NaN/inf leaks via 0·x.
        target = torch.where(frame_mask, target, torch.zeros_like(target))
        strong_bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        strong_loss = _masked_mean(strong_bce, frame_mask)
        strong_count = frame_mask.expand_as(strong_bce).sum().to(strong_bce.dtype)

        clip_probs = output.clip_probs.float()
        weak_rows = has_weak if weak_on_strong_clips else has_weak & ~has_strong
        weak_target = torch.where(weak_rows[:, None], weak.float().to(clip_probs.device), torch.zeros_like(clip_probs))
        weak_bce = F.binary_cross_entropy(clip_probs, weak_target, reduction="none")
        weak_loss = _masked_mean(weak_bce, weak_rows[:, None])
        weak_count = weak_rows[:, None].expand_as(weak_bce).sum().to(weak_bce.dtype)
        total = strong_weight * strong_loss + weak_weight * weak_loss
    return SupervisedLoss(total, strong_loss, weak_loss, strong_count, weak_count)


def distillation_loss(
    student: SEDOutput, teacher: SEDOutput, valid: Tensor, frame_weight: float = 0.5, clip_weight: float = 0.5
) -> Tensor:
    """C2F/F2C soft-target loss on every clip of the batch (labelled or not), no temperature:
    ``frame_weight · BCE(student frame probs, teacher frame probs)`` over valid frames
    ``+ clip_weight · BCE(student clip probs, teacher clip probs)``. The teacher is detached."""
    with torch.autocast(device_type=student.frame_logits.device.type, enabled=False):
        t_frame = teacher.frame_probs.detach().float()
        t_clip = teacher.clip_probs.detach().float()
        frame_bce = F.binary_cross_entropy_with_logits(student.frame_logits.float(), t_frame, reduction="none")
        frame = _masked_mean(frame_bce, valid[..., None])
        clip = F.binary_cross_entropy(student.clip_probs.float(), t_clip)
        return frame_weight * frame + clip_weight * clip


def consistency_loss(student: SEDOutput, teacher: SEDOutput, valid: Tensor, clip_weight: float = 1.0) -> Tensor:
    """Mean-teacher consistency over the whole batch: MSE(frame probs) over valid frames
    + ``clip_weight`` · MSE(clip probs) (DCASE baseline, ATST-SED stage 1: 1; stage 2: ½)."""
    with torch.autocast(device_type=student.frame_probs.device.type, enabled=False):
        frame = _masked_mean((student.frame_probs.float() - teacher.frame_probs.detach().float()) ** 2, valid[..., None])
        clip = F.mse_loss(student.clip_probs.float(), teacher.clip_probs.detach().float())
        return frame + clip_weight * clip


def ict_loss(student: SEDOutput, teacher: SEDOutput, lam: Tensor, perm: Tensor, groups: Tensor, valid: Tensor,
             clip_weight: float = 0.5) -> Tensor:
    """Interpolation consistency (ICT, ATST-SED stage 2): the student's output on the mixed-up input
    against the teacher's outputs on the *un-mixed* input, mixed with the same ``lam`` (B,) and
    ``perm`` (B,) — ``clamp(λ·t + (1 − λ)·t[perm], 0, 1)``. Per label group (``groups`` (B,), see
    :func:`label_groups`): MSE(frames, over valid frames) + ``clip_weight`` · MSE(clips); the mean
    over the groups present. (ATST-SED sums the three groups, divides by 6 and weighs by w/4: the
    recipe's ``ict_scale`` 1/8 with all groups present.)"""
    with torch.autocast(device_type=student.frame_probs.device.type, enabled=False):
        lf = lam.float().to(student.frame_probs.device)
        t_frame, t_clip = teacher.frame_probs.detach().float(), teacher.clip_probs.detach().float()
        target_frame = (lf[:, None, None] * t_frame + (1 - lf[:, None, None]) * t_frame[perm]).clamp(0, 1)
        target_clip = (lf[:, None] * t_clip + (1 - lf[:, None]) * t_clip[perm]).clamp(0, 1)
        frame_err = (student.frame_probs.float() - target_frame) ** 2
        clip_err = (student.clip_probs.float() - target_clip) ** 2
        terms = []
        for g in torch.unique(groups).tolist():
            rows = groups == g
            frame = _masked_mean(frame_err[rows], valid[rows][..., None])
            terms.append(frame + clip_weight * clip_err[rows].mean())
        return torch.stack(terms).mean()


def label_groups(batch: dict) -> Tensor:
    """(B,) long label group per clip: 0 strong, 1 weak only, 2 unlabeled (mixup, ICT and frequency
    warp act per group, as DESED_task and ATST-SED do)."""
    has_strong, has_weak = batch["has_strong"], batch["has_weak"]
    return torch.where(has_strong, 0, torch.where(has_weak, 1, 2)).long()


def group_permutation(groups: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """A permutation of 0 … B−1 that only swaps samples within the same group id (``groups`` (B,) long)."""
    b = groups.shape[0]
    keys = torch.rand(b, generator=generator).to(groups.device)
    # Sort by (group, random key): positions inside each group get shuffled, groups stay in place.
    order_random = torch.argsort(groups.double() * 2.0 + keys.double(), stable=True)
    order_sorted = torch.argsort(groups, stable=True)
    perm = torch.empty_like(groups)
    perm[order_sorted] = order_random
    return perm


def mix_inputs(inputs: Any, lam: Tensor, perm: Tensor, fields: Sequence[str] | None = None) -> Any:
    """``lam · x + (1 − lam) · x[perm]`` per sample on a model's input: a tensor (B, …), or a tuple /
    NamedTuple of them (:meth:`SEDModel.features`), whose float fields of ≥ 2 dims are mixed and
    whose integer (B,) fields (valid lengths) become the longer of the two clips'; None stays None.
    ``fields`` (NamedTuple inputs): mix only the float fields named (ATST-SED stage 1 mixes its CNN
    branch only); None: every one."""
    if isinstance(inputs, Tensor):
        if inputs.is_floating_point() and inputs.dim() >= 2:
            lf = lam.to(inputs.dtype).view(-1, *([1] * (inputs.dim() - 1)))
            return lf * inputs + (1 - lf) * inputs[perm]
        if inputs.dim() == 1 and not inputs.is_floating_point():
            return torch.maximum(inputs, inputs[perm])
        return inputs
    if isinstance(inputs, (tuple, list)):
        names = getattr(inputs, "_fields", None)
        if fields is not None:
            unknown = sorted(set(fields) - set(names or ()))
            if unknown:
                raise ValueError(f"task.mixup.fields names {unknown}, not fields of the model's input ({list(names or [])})")
        values = []
        for i, x in enumerate(inputs):
            kept = fields is not None and names[i] not in fields and isinstance(x, Tensor) and x.is_floating_point()
            values.append(x if x is None or kept else mix_inputs(x, lam, perm))
        return type(inputs)(*values) if names is not None else type(inputs)(values)
    return inputs


def mixup_batch(
    batch: dict, alpha: float = 0.2, mix_unlabeled: bool = False, generator: torch.Generator | None = None,
    fields: Sequence[str] | None = None,
) -> tuple[dict, Tensor, Tensor]:
    """Mixup on ``inputs`` (the model's input, :func:`mix_inputs`) with soft targets, within label
    groups (strong / weak-only / unlabeled, :func:`label_groups`), one λ ~ Beta(α, α) per group
    (DESED convention). Returns (mixed batch, lam (B,), perm (B,)).

    Unlabeled clips are mixed only when ``mix_unlabeled`` (ATST-SED; the DCASE 2022 baseline does not);
    ``fields``: the input fields mixed (:func:`mix_inputs`).
    """
    groups = label_groups(batch)
    perm = group_permutation(groups, generator)
    beta = torch.distributions.Beta(torch.tensor(float(alpha)), torch.tensor(float(alpha)))
    lam_group = beta.sample((3,)).to(groups.device)
    lam = lam_group[groups]
    if not mix_unlabeled:
        lam = torch.where(groups == 2, torch.ones_like(lam), lam)
        perm = torch.where(groups == 2, torch.arange(len(perm), device=perm.device), perm)
    out = dict(batch)
    out["inputs"] = mix_inputs(batch["inputs"], lam, perm, fields)
    ls = lam.to(batch["strong"].dtype)
    out["strong"] = ls[:, None, None] * batch["strong"] + (1 - ls[:, None, None]) * batch["strong"][perm]
    out["weak"] = ls[:, None] * batch["weak"] + (1 - ls[:, None]) * batch["weak"][perm]
    return out, lam, perm
