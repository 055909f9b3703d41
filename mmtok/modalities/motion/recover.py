"""Joint positions from features (torch, differentiable): HumanML3D's `recover_from_ric` and its twin for the
"positions" layout (see mmtok.modalities.motion.layout).

    joints = recover_joints(features, layout)   # [..., T, D] -> [..., T, J, 3] metres, Y up

The root's heading and XZ path are integrated from the root rows (frame t uses rows < t), so the first frame's
root sits at the XZ origin facing +Z. Used by the training loss on positions, validation, `mmtok eval` and the
stick figures; float32 in, float32 out.
"""
from __future__ import annotations

import torch

from mmtok.modalities.motion.layout import FeatureLayout


def _qrot_y(angle: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """v [..., 3] rotated about +Y by `angle` [...] radians (right-handed)."""
    c, s = torch.cos(angle), torch.sin(angle)
    x, y, z = v.unbind(-1)
    return torch.stack([c * x + s * z, y, -s * x + c * z], dim=-1)


def recover_joints(x: torch.Tensor, layout: FeatureLayout) -> torch.Tensor:
    """Joint positions [..., T, J, 3] (metres) of features [..., T, layout.dim] (raw, not normalised)."""
    if x.shape[-1] != layout.dim:
        raise ValueError(f"expected features [..., T, {layout.dim}], got {tuple(x.shape)}")
    x = x.float()
    J = layout.num_joints
    sl = layout.slices
    a, b = sl["positions"]
    rel = x[..., a:b].reshape(*x.shape[:-1], J - 1, 3)
    if layout.kind == "positions":
        step = torch.zeros(*x.shape[:-1], 3, dtype=x.dtype, device=x.device)
        step[..., 1:, 0] = x[..., :-1, 0]
        step[..., 1:, 2] = x[..., :-1, 1]
        root = torch.cumsum(step, dim=-2)
        root = torch.stack([root[..., 0], x[..., 2], root[..., 2]], dim=-1)
        return torch.cat([root.unsqueeze(-2), rel + root.unsqueeze(-2)], dim=-2)
    # heading: the half-angle velocities accumulate; the rotation is twice the accumulated angle (HumanML3D)
    ang = torch.zeros_like(x[..., 0])
    ang[..., 1:] = x[..., :-1, 0]
    ang = 2.0 * torch.cumsum(ang, dim=-1)
    step = torch.zeros(*x.shape[:-1], 3, dtype=x.dtype, device=x.device)
    step[..., 1:, 0] = x[..., :-1, 1]
    step[..., 1:, 2] = x[..., :-1, 2]
    root = torch.cumsum(_qrot_y(-ang, step), dim=-2)  # heading frame -> world
    root = torch.stack([root[..., 0], x[..., 3], root[..., 2]], dim=-1)
    joints = _qrot_y(-ang.unsqueeze(-1), rel)
    joints = joints + torch.stack([root[..., 0], torch.zeros_like(root[..., 0]), root[..., 2]], -1).unsqueeze(-2)
    return torch.cat([root.unsqueeze(-2), joints], dim=-2)
