"""Motion reconstruction metrics on joint positions (metres in, millimetres out), as MotionGPT's MRMetrics computes
them (REFERENCE.md section 4: MPJPE 55.8 mm, PA-MPJPE 40.1, accel error 7.5 on HumanML3D):

- mpjpe:     mean over frames and joints of |pred - target| after subtracting each frame's root joint (root-aligned);
- pa_mpjpe:  the same after a per-frame similarity Procrustes alignment (scale, rotation, translation) of pred
             onto target;
- accel:     mean over frames and joints of |a_pred - a_target|, a = x[t-1] - 2 x[t] + x[t+1] (mm per frame^2 at
             the data's frame rate).

Functional twins take joints [..., T, J, 3] and return per-frame values [..., T] (accel: [..., T - 2]);
the Metric classes average over every frame of every update, summed across ranks.
"""
from __future__ import annotations

import torch
from torchmetrics import Metric

MM = 1000.0


def mpjpe(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Root-aligned per-frame mean joint error [..., T] in mm for joints [..., T, J, 3] in metres."""
    p = pred - pred[..., :1, :]
    t = target - target[..., :1, :]
    return (p - t).norm(dim=-1).mean(-1) * MM


def procrustes(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """pred [..., J, 3] moved onto target by the similarity transform (s, R, t) that minimises the squared error."""
    p, t = pred.double(), target.double()
    mp, mt = p.mean(-2, keepdim=True), t.mean(-2, keepdim=True)
    p0, t0 = p - mp, t - mt
    var = (p0 ** 2).sum((-2, -1))
    u, s, vh = torch.linalg.svd(p0.transpose(-2, -1) @ t0)
    d = torch.sign(torch.linalg.det(u @ vh))  # no reflections
    fix = torch.ones_like(s)
    fix[..., -1] = d
    rot = (u * fix.unsqueeze(-2)) @ vh  # p0 @ rot ~ t0
    scale = (s * fix).sum(-1) / var.clamp_min(1e-12)
    return ((scale[..., None, None] * p0 @ rot) + mt).to(pred.dtype)


def pa_mpjpe(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-frame mean joint error [..., T] in mm after Procrustes alignment (metres in)."""
    return (procrustes(pred, target) - target).norm(dim=-1).mean(-1) * MM


def accel_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-frame mean acceleration error [..., T - 2] in mm / frame^2 (metres in)."""
    a_p = pred[..., :-2, :, :] - 2 * pred[..., 1:-1, :, :] + pred[..., 2:, :, :]
    a_t = target[..., :-2, :, :] - 2 * target[..., 1:-1, :, :] + target[..., 2:, :, :]
    return (a_p - a_t).norm(dim=-1).mean(-1) * MM


class _FrameMean(Metric):
    """Mean of a per-frame value over every frame of every update (summed across ranks)."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False
    fn = None

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("frames", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """pred, target: joints [B, T, J, 3] in metres."""
        if pred.shape != target.shape or pred.dim() < 3 or pred.shape[-1] != 3:
            raise ValueError(f"expected joints [..., T, J, 3] of one shape, got {tuple(pred.shape)} and "
                             f"{tuple(target.shape)}")
        values = type(self).fn(pred.float(), target.float())
        self.total = self.total + values.double().sum()
        self.frames = self.frames + values.numel()

    def compute(self) -> torch.Tensor:
        return (self.total / self.frames.clamp_min(1)).float()


class MPJPE(_FrameMean):
    fn = staticmethod(mpjpe)


class PAMPJPE(_FrameMean):
    fn = staticmethod(pa_mpjpe)


class AccelError(_FrameMean):
    fn = staticmethod(accel_error)
