"""The motion objective: T2M-GPT's terms on normalised features, a real velocity term, the validation suite
(MPJPE, PA-MPJPE, acceleration error on recovered joints, codebook usage and perplexity) and stick-figure samples.

Batches hold raw features under "motion" ([B, T, D]); the model's output carries the normalised input and
reconstruction (mmtok.families.motion_vq.model.MotionOutput) that the feature terms compare, as T2M-GPT does.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from mmtok.contract import MetricSuite, Objective
from mmtok.modalities.motion.recover import recover_joints

MODALITY_KEY = "motion"


class MotionMetrics(MetricSuite):
    """mpjpe, pa_mpjpe (mm), accel (mm / frame^2) on joints recovered from raw features (mmtok.metrics.motion),
    usage (fraction of codes used over the pass, averaged over codebooks) and perplexity; synced across ranks."""

    names = ("mpjpe", "pa_mpjpe", "accel", "usage", "perplexity")

    def __init__(self, layout, codebook_size: int, num_codebooks: int = 1):
        super().__init__()
        from mmtok.metrics import CodebookUsage
        from mmtok.metrics.motion import MPJPE, PAMPJPE, AccelError

        self.layout = layout
        self.mpjpe, self.pa_mpjpe, self.accel = MPJPE(), PAMPJPE(), AccelError()
        self.usage = CodebookUsage(codebook_size, num_codebooks)

    def update(self, x: torch.Tensor, out) -> None:
        real, recon = recover_joints(x.float(), self.layout), recover_joints(out.recon.float(), self.layout)
        self.mpjpe.update(recon, real)
        self.pa_mpjpe.update(recon, real)
        if x.shape[1] > 2:
            self.accel.update(recon, real)
        ids = out.ids
        self.usage.update(ids if self.usage.num_codebooks == 1 else ids.movedim(-1, 1))

    def compute(self) -> dict[str, torch.Tensor]:
        usage = self.usage.compute()
        return {"mpjpe": self.mpjpe.compute(), "pa_mpjpe": self.pa_mpjpe.compute(), "accel": self.accel.compute(),
                "usage": usage["usage_pct"] / 100, "perplexity": usage["perplexity"]}


class MotionObjective(Objective):
    """features (smooth-L1 on all normalised features), joint_positions (smooth-L1 on the normalised positions
    slice), velocity (smooth-L1 between joint velocities in m/s from finite differences over time of the joints
    recovered from raw features); see mmtok.families.motion_vq.config.MotionLoss."""

    def __init__(self, recipe):
        super().__init__(recipe)
        self.layout = recipe.model.layout
        self.fps = float(recipe.model.fps)

    def inputs(self, batch: dict) -> torch.Tensor:
        return batch[MODALITY_KEY]

    def terms(self, x: torch.Tensor, out) -> dict[str, torch.Tensor]:
        terms = {}
        recon_n, x_n = out.recon_norm.float(), out.x_norm.float()
        if self.active("features"):
            terms["features"] = F.smooth_l1_loss(recon_n, x_n)
        if self.active("joint_positions"):
            a, b = self.layout.slices["positions"]
            terms["joint_positions"] = F.smooth_l1_loss(recon_n[..., a:b], x_n[..., a:b])
        if self.active("velocity"):
            real, recon = recover_joints(x.float(), self.layout), recover_joints(out.recon.float(), self.layout)
            v_real = (real[:, 1:] - real[:, :-1]) * self.fps
            v_recon = (recon[:, 1:] - recon[:, :-1]) * self.fps
            terms["velocity"] = F.smooth_l1_loss(v_recon, v_real)
        return terms

    def metrics(self) -> MotionMetrics:
        q = self.recipe.model.quantizer
        return MotionMetrics(self.layout, q.codebook_size, q.num_codebooks)

    def write_samples(self, x: torch.Tensor, out, path: Path) -> None:
        from mmtok.modalities.motion.plots import save_strips

        save_strips(recover_joints(x[:4].float(), self.layout), recover_joints(out.recon[:4].float(), self.layout),
                    self.layout, path, fps=self.fps)
