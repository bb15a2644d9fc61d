"""Knowledge distillation between fine-tuned ATST models (paper Section IV-C, ATST-C2F).

C2F: the teacher is a fine-tuned ATST-Clip SED model (its frames are the tokens without CLS), the
student a pretrained ATST-Frame with a fresh head. F2C swaps the roles — which one is which is only
a matter of which models the run configuration hands in.

loss = gt_weight · supervised + distill_weight · [frame_weight · BCE(s_frame, t_frame)
                                                  + clip_weight · BCE(s_clip, t_clip)]
with the teacher frozen in eval mode, soft targets on *all* clips of the batch, no temperature.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from atst_sed.models.head import SEDOutput
from atst_sed.models.sed import SEDModel
from atst_sed.training.finetune import Evaluator, OptimConfig, SEDTask, TaskConfig
from atst_sed.training.losses import distillation_loss
from atst_sed.training.validation import ValidationConfig


@dataclass
class DistillConfig:
    """Weights of the distillation objective (paper: 0.5 / 0.5, and ½ frame + ½ clip)."""

    gt_weight: float = 0.5
    distill_weight: float = 0.5
    frame_weight: float = 0.5
    clip_weight: float = 0.5


class DistillTask(SEDTask):
    """:class:`SEDTask` whose loss mixes in soft targets from a frozen ``teacher`` SED model."""

    def __init__(
        self,
        model: SEDModel,
        teacher: SEDModel,
        task: TaskConfig | None = None,
        optim: OptimConfig | None = None,
        distill: DistillConfig | None = None,
        evaluator: Evaluator | None = None,
        validation: ValidationConfig | None = None,
    ):
        super().__init__(model, task, optim, evaluator, validation)
        if teacher.n_classes != model.n_classes:
            raise ValueError(f"teacher has {teacher.n_classes} classes, student {model.n_classes}")
        if teacher.frontend.config != model.frontend.config or teacher.grid != model.grid:
            # the teacher reads the student's (possibly mixed) input and is compared frame by frame
            raise ValueError(f"the teacher's frontend and grid ({teacher.frontend.config}, {teacher.grid}) differ from "
                             f"the student's ({model.frontend.config}, {model.grid})")
        self.teacher = teacher
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.teacher.eval()
        self.distill_config = distill or DistillConfig()

    def _fixed_modules(self) -> list[nn.Module]:
        return [*super()._fixed_modules(), self.teacher]

    def extra_loss(self, batch: Mapping[str, Any], out: SEDOutput, valid: Tensor) -> tuple[Tensor | None, dict[str, Tensor]]:
        with torch.no_grad():
            teacher_out = self.teacher(*batch["inputs"])
        d = self.distill_config
        loss = distillation_loss(out, teacher_out, valid, d.frame_weight, d.clip_weight)
        return loss, {"train/distill": loss.detach()}

    def combine(self, supervised: Tensor, extra: Tensor | None) -> Tensor:
        d = self.distill_config
        return d.gt_weight * supervised + d.distill_weight * extra
