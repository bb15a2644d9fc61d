"""Teacher–student model: loss symmetry, masking use, stop-gradient, param groups, collapse stats."""

from __future__ import annotations

import pytest
import torch

from atst_sed.models.encoder import ATSTEncoder, EncoderConfig
from atst_sed.training.masking import span_mask
from atst_sed.training.pretrain import (
    ByolBranch,
    CollapseConfig,
    CollapseMonitor,
    PretrainModelConfig,
    PretrainModule,
    build_mlp,
    byol_loss,
    normalised_std_stats,
    param_groups,
    std_from_stats,
    symmetric_byol_loss,
)


def tiny(method: str = "frame") -> PretrainModule:
    return PretrainModule(PretrainModelConfig(method=method, encoder=f"{method}_tiny", projector_hidden=64, projector_out=32),
                          batch_size=4)


def test_byol_loss_hand_values():
    a = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert byol_loss(a, a).item() == pytest.approx(0.0, abs=1e-7)
    assert byol_loss(a, -a).item() == pytest.approx(4.0)
    b = torch.tensor([[1.0, 1.0], [0.0, 2.0]])  # cos = 1/√2 and 1
    assert byol_loss(a, b).item() == pytest.approx(2 - 2 * (2 ** -0.5 + 1) / 2)


def test_symmetric_loss_swap_and_identity():
    torch.manual_seed(0)
    t, s = torch.randn(10, 8), torch.randn(10, 8)
    swap = lambda x: torch.cat(x.chunk(2)[::-1])  # noqa: E731
    assert symmetric_byol_loss(swap(t), swap(s)).item() == pytest.approx(symmetric_byol_loss(t, s).item(), abs=1e-6)
    # cross pairs: teacher view 1 with student view 2 and vice versa
    t1, t2 = t.chunk(2)
    s1, s2 = s.chunk(2)
    assert symmetric_byol_loss(t, s).item() == pytest.approx(0.5 * (byol_loss(t1, s2) + byol_loss(t2, s1)).item(), abs=1e-6)
    assert symmetric_byol_loss(torch.cat([t1, t1]), torch.cat([t1, t1])).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("method,frames", [("frame", 1001), ("clip", 601)])
def test_module_loss_is_symmetric_in_the_views(method, frames):
    torch.manual_seed(0)
    module = tiny(method).eval()
    v1, v2 = torch.randn(3, 64, frames), torch.randn(3, 64, frames)
    mask = span_mask(3, frames // 4, generator=torch.Generator().manual_seed(0))
    loss_a = symmetric_byol_loss(*module.forward_views(v1, v2, mask))
    loss_b = symmetric_byol_loss(*module.forward_views(v2, v1, mask))
    assert loss_a.item() == pytest.approx(loss_b.item(), abs=1e-5)
    # identical networks (teacher = student copy) on identical inputs: student output = predictor(teacher output)
    assert loss_a.item() > 0


def test_frame_student_sees_the_same_mask_on_both_views_and_loss_uses_masked_frames():
    module = tiny("frame").train()
    seen = {}

    def hook(mod, args, kwargs):
        seen["mask"] = kwargs.get("token_mask")

    handle = module.model.student.encoder.register_forward_pre_hook(hook, with_kwargs=True)
    module.mask_generator = torch.Generator().manual_seed(1)
    v1, v2 = torch.randn(2, 64, 1001), torch.randn(2, 64, 1001)
    t_out, s_out = module.forward_views(v1, v2)
    handle.remove()
    m1, m2 = seen["mask"].chunk(2)
    assert torch.equal(m1, m2)
    assert t_out.shape == s_out.shape == (2 * int(m1.sum()), 32)
    # stop-gradient: only the student gets gradients; the teacher has none
    symmetric_byol_loss(t_out, s_out).backward()
    assert module.model.student.encoder.mask_embed.grad is not None
    assert module.model.student.encoder.mask_embed.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in module.model.teacher.parameters())
    assert isinstance(module.model.teacher.predictor, torch.nn.Identity)


def test_projector_and_predictor_layout():
    mlp = build_mlp(64, 4096, 256)
    assert [k for k in mlp.state_dict()] == ["0.weight", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                                              "1.num_batches_tracked", "3.weight"]
    assert mlp[0].bias is None and mlp[3].bias is None


def test_param_groups_base_student_matches_upstream_counts():
    with torch.device("meta"):  # names and shapes only: no memory, no init time
        student = ByolBranch(ATSTEncoder(EncoderConfig.named("frame_base")), build_mlp(768, 4096, 256), build_mlp(256, 4096, 256))
    decay, no_decay = param_groups(student)
    assert (len(decay["params"]), len(no_decay["params"])) == (55, 91)
    assert "encoder.mask_embed" in decay["names"] and "encoder.pos_embed" in decay["names"]
    assert "encoder.patch_embed.weight" in decay["names"] and "projector.0.weight" in decay["names"]
    assert not any(n.endswith(".bias") for n in decay["names"])
    assert "encoder.norm.weight" in no_decay["names"] and "projector.1.weight" in no_decay["names"]


def test_optimizer_is_adamw_eps_1e6_over_the_student_only():
    module = tiny("frame")
    opt = module.configure_optimizers()
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["eps"] == 1e-6
    ids = {id(p) for g in opt.param_groups for p in g["params"]}
    assert ids == {id(p) for p in module.model.student.parameters()}
    assert [g["decayed"] for g in opt.param_groups] == [True, False]
    clip = tiny("clip")
    clip_ids = {id(p) for g in clip.configure_optimizers().param_groups for p in g["params"]}
    assert id(clip.model.student.encoder.mask_embed) not in clip_ids  # never used by ATST-Clip


def test_normalised_std_statistics_and_ranks_reduction():
    torch.manual_seed(0)
    x = torch.randn(50, 16)
    y = torch.nn.functional.normalize(x, dim=-1)
    expected = y.std(dim=0).mean().item()
    assert std_from_stats(normalised_std_stats(x)) == pytest.approx(expected, rel=1e-5)
    # summing per-rank statistics (what the DDP all-reduce does) gives the global value
    summed = normalised_std_stats(x[:20]) + normalised_std_stats(x[20:])
    assert std_from_stats(summed) == pytest.approx(expected, rel=1e-5)
    collapsed = torch.ones(8, 16) + 1e-4 * torch.randn(8, 16)
    assert std_from_stats(normalised_std_stats(collapsed)) < 1e-3


def test_collapse_monitor_warns_on_low_and_falling_std():
    mon = CollapseMonitor(CollapseConfig(min_std=0.01, drop_fraction=0.25, warmup_steps=2))
    assert mon.check({"teacher": 0.001}, step=0) == []  # warm-up
    assert mon.check({"teacher": 0.06, "student": 0.06}, step=3) == []
    assert len(mon.check({"teacher": 0.005, "student": 0.06}, step=4)) == 1  # below min_std
    drop = mon.check({"teacher": 0.06, "student": 0.012}, step=5)  # 0.012 < 0.25 × 0.06
    assert len(drop) == 1 and "student" in drop[0]
    state = mon.state_dict()
    other = CollapseMonitor()
    other.load_state_dict(state)
    assert other.max_std == mon.max_std
