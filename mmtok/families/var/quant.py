"""VAR's multi-scale residual quantizer: one codebook for every scale, phi refinement convs (Tian et al. 2024).

    f_hat = 0;  r = sg(f)                                           f: [B, C, g, g] (quant_conv's output)
    for scale i with side s (coarse to fine, the last is g):
        ids_i = nearest code of every row of area-downsample(r, s x s)   (plain squared L2, raw codes)
        h_i   = phi_i(bicubic-upsample(codes[ids_i], g x g))           (no resampling at the last scale)
        f_hat = f_hat + h_i;  r = r - sg(h_i)
        loss += beta ||sg(f_hat) - f||^2 + ||f_hat - sg(f)||^2            (commitment, codebook; mean over scales)
        entropy += H(rows) - d H(batch) of softmax(-|area-down(r) - c|^2 / T)  (optional; mean over scales)
    decoder input: f_hat in value, f in gradient (straight-through); ids [B, sum s^2], coarse to fine

phi_i(h) = (1 - r) h + r conv3x3(h) with r = `phi_ratio`. VAR shares `phi_count` = 4 convs over the scales: scale i
(at position i / (S - 1) in [0, 1]) uses the conv whose tick (linspace(1/3K, 1 - 1/3K, K) for K = 4, else
linspace(1/2K, 1 - 1/2K, K)) is nearest; phi_count 0 gives every scale its own. The codebook learns by gradient (no
EMA), initialised as VAR's `eini` (truncated normal) or by k-means over the first batch's residual pyramid; a code
that no scale used for `restart_after` steps (global counts) is reset to a random residual row of the batch, drawn
on rank 0 and broadcast, so every rank holds the same codebook; with `revive_per_scale` the row's scale is drawn
uniformly first (a 1 x 1 scale has B rows against B g^2 at the finest, so row-uniform draws starve the coarse
scales of codes). Usage is counted per scale and over all scales.

The optional entropy term (the loss weight `entropy`; not in VAR) is the entropy loss of mmtok.quantize.vq taken on
each scale's rows on its own: every row confident of its code, and the rows of one scale spread over the codebook.
A scale's rows carry the encoder's gradient (their values are the residual's), so the term can spread the encoder's
coarse maps as well as the codes. Per scale, because a 1 x 1 scale has B rows against B g^2 at the finest: pooled,
the finest scale alone would decide the batch distribution.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmtok.families.var.config import VARQuantizerConfig
from mmtok.quantize.lookup import nearest
from mmtok.quantize.scales import down, map_rows, rows_map, up
from mmtok.quantize.stats import broadcast_from_rank0, code_counts, rank, usage_stats
from mmtok.quantize.vq import code_entropy, dead_codes, kmeans


class Phi(nn.Conv2d):
    """phi(h) = (1 - ratio) h + ratio conv3x3(h)."""

    def __init__(self, dim: int, ratio: float):
        super().__init__(dim, dim, kernel_size=3, padding=1)
        self.ratio = float(ratio)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h * (1 - self.ratio) + super().forward(h) * self.ratio


def phi_choice(num_scales: int, count: int) -> list[int]:
    """Which of `count` phi convs each scale uses (VAR's PhiPartiallyShared ticks; count 0: one per scale)."""
    if count == 0:
        return list(range(num_scales))
    ticks = np.linspace(1 / 3 / count, 1 - 1 / 3 / count, count) if count == 4 else \
        np.linspace(1 / 2 / count, 1 - 1 / 2 / count, count)
    return [int(np.argmin(np.abs(ticks - i / (num_scales - 1)))) for i in range(num_scales)]


class MultiScaleVQ(nn.Module):
    """forward(f [B, dim, g, g]) -> (f_hat [B, dim, g, g] straight-through, ids [B, L], losses {"commitment",
    "codebook", "entropy" (with entropy_loss)}, stats); `vectors(ids, upto)` gives f_hat of the first `upto` scales
    back (the decode path)."""

    def __init__(self, dim: int, cfg: VARQuantizerConfig, *, entropy_loss: bool = False):
        super().__init__()
        self.cfg, self.dim, self.entropy_loss = cfg, dim, entropy_loss
        self.codebook_size, self.num_codebooks = cfg.codebook_size, 1
        self.scales = [int(s) for s in cfg.scales]
        self.grid = self.scales[-1]
        self.offsets = [0]
        for s in self.scales:
            self.offsets.append(self.offsets[-1] + s * s)
        self.embedding = nn.Parameter(nn.init.trunc_normal_(torch.empty(cfg.codebook_size, dim), std=cfg.init_std))
        n_phi = len(self.scales) if cfg.phi_count == 0 else cfg.phi_count
        self.phis = nn.ModuleList([Phi(dim, cfg.phi_ratio) for _ in range(n_phi)]) if cfg.phi_ratio > 0 else None
        self.choice = phi_choice(len(self.scales), cfg.phi_count)
        self.register_buffer("initted", torch.tensor(not cfg.kmeans_init))
        self.register_buffer("steps_unused", torch.zeros(cfg.codebook_size, dtype=torch.long))
        self.register_buffer("restarts", torch.zeros((), dtype=torch.long))

    def phi(self, i: int, h: torch.Tensor) -> torch.Tensor:
        return h if self.phis is None else self.phis[self.choice[i]](h)

    def step_scales(self) -> list[int]:
        """Indices of this forward's scales: all, or (training, with probability scale_drop) all but one drawn
        among all but the first (global torch RNG)."""
        n = len(self.scales)
        if not self.training or self.cfg.scale_drop <= 0 or float(torch.rand(())) >= self.cfg.scale_drop:
            return list(range(n))
        drop = int(torch.randint(1, n, ()))
        return [i for i in range(n) if i != drop]

    # ------------------------------------------------------------------------------------------- forward

    def forward(self, f: torch.Tensor):
        b, g = f.shape[0], self.grid
        if tuple(f.shape[1:]) != (self.dim, g, g):
            raise ValueError(f"expected maps [B, {self.dim}, {g}, {g}], got {tuple(f.shape)}")
        with torch.autocast(device_type=f.device.type, enabled=False):
            f = f.float()
            if self.training and not bool(self.initted):
                self._kmeans_init(f.detach())
            codes = self.embedding.float()
            f_hat, rest = torch.zeros_like(f), f.detach()
            commitment, codebook, entropy = f.new_zeros(()), f.new_zeros(()), f.new_zeros(())
            ids_b, ids_all, per_scale, searched = [], [], {}, []
            used = self.step_scales()
            for i in used:
                s = self.scales[i]
                r = map_rows(down(rest, s))
                ids = nearest(r, codes.detach(), "l2")
                if self.entropy_loss:  # r's values, with f's gradient
                    live = map_rows(down(f - (f.detach() - rest), s))
                    entropy = entropy + code_entropy(live, codes, self.cfg.entropy_temperature,
                                                     diversity=self.cfg.entropy_diversity)
                h = self.phi(i, up(rows_map(F.embedding(ids, codes), b, s), g))
                f_hat = f_hat + h
                rest = rest - h.detach()
                commitment = commitment + F.mse_loss(f_hat.detach(), f)
                codebook = codebook + F.mse_loss(f_hat, f.detach())
                ids_b.append(ids.reshape(b, s * s))
                ids_all.append(ids)
                searched.append(r)
                per_scale[i] = ids
            n = len(used)
            losses = {"commitment": commitment / n, "codebook": codebook / n}
            if self.entropy_loss:
                losses["entropy"] = entropy / n
            out = f_hat.detach() - f.detach() + f if f.requires_grad else f_hat
            counts = code_counts(torch.cat(ids_all), self.codebook_size, sync=self.training)
            if self.training:
                self._revive(searched, counts)
        stats = usage_stats(counts)
        stats["restarts"] = self.restarts.detach().float()
        for i, ids in per_scale.items():  # usage of each scale over this batch (its s*s*B rows)
            stats[f"usage_s{self.scales[i]}"] = usage_stats(code_counts(ids, self.codebook_size, sync=False))["usage"]
        return out, torch.cat(ids_b, dim=1), losses, stats

    # ------------------------------------------------------------------------------------------- ids paths

    def vectors(self, ids: torch.Tensor, upto: int | None = None) -> torch.Tensor:
        """f_hat [B, dim, g, g] of ids [B, L] from the first `upto` scales (all by default), as forward builds it."""
        b, g = ids.shape[0], self.grid
        codes = self.embedding.float()
        f_hat = codes.new_zeros(b, self.dim, g, g)
        for i, s in enumerate(self.scales[:upto]):
            block = ids[:, self.offsets[i]:self.offsets[i + 1]].reshape(-1)
            f_hat = f_hat + self.phi(i, up(rows_map(F.embedding(block, codes), b, s), g))
        return f_hat

    def lookup_rows(self, ids: torch.Tensor) -> torch.Tensor:
        """Code vectors [B, L, dim] of ids [B, L] (each token's own code, before any upsampling)."""
        return F.embedding(ids, self.embedding.float())

    # ------------------------------------------------------------------------------------------- state

    @torch.no_grad()
    def _kmeans_init(self, f: torch.Tensor) -> None:
        """Codes <- k-means over the rows of every scale of f's ideal residual pyramid (rank 0, broadcast)."""
        g, pyramid, acc = self.grid, [], torch.zeros_like(f)
        for s in self.scales:
            d = down(f - acc, s)
            pyramid.append(map_rows(d))
            acc = acc + up(d, g)
        x = torch.cat(pyramid)
        if rank() == 0:
            gen = torch.Generator().manual_seed(torch.initial_seed())
            centroids = kmeans(x, self.codebook_size, 1, l2_norm=False, generator=gen)
        else:
            centroids = x.new_empty(self.codebook_size, self.dim)
        self.embedding.data.copy_(broadcast_from_rank0(centroids))
        self.initted.fill_(True)

    @torch.no_grad()
    def _revive(self, searched: list[torch.Tensor], counts: torch.Tensor) -> None:
        """Reset codes unused by every scale for `restart_after` steps to random rows of this step's residuals
        (`searched`: each scale's rows)."""
        dead = dead_codes(self.steps_unused, counts, None, self.cfg)
        if dead is None:
            return
        n_dead = int(dead.sum())
        if n_dead:
            x = torch.cat(searched)
            if self.cfg.revive_per_scale:
                sizes = torch.tensor([r.shape[0] for r in searched], device=x.device)
                starts = torch.cumsum(sizes, 0) - sizes
                scale = torch.randint(len(searched), (n_dead,), device=x.device)
                rows = starts[scale] + (torch.rand(n_dead, device=x.device) * sizes[scale]).long()
            else:
                rows = torch.randint(x.shape[0], (n_dead,), device=x.device)
            picks = x[rows].contiguous()
            self.embedding.data[dead] = broadcast_from_rank0(picks).to(self.embedding.dtype)
            self.steps_unused[dead] = 0
            self.restarts.add_(n_dead)
