"""TokenFlow's multi-scale residual option: the dual codebook applied VAR-style (Tian et al. 2024) to token maps
of growing side, one shared id per position per scale (TokenFlow, Qu et al. 2024).

    f = (l2-normalise(f_sem), l2-normalise(f_pix))  per position, [B, C, g, g] each      (once, at the full grid)
    f_hat = 0;  r = f
    for s in scales (coarse to fine, the last is g):
        r_s   = area-downsample(r, s x s)                                            (identity when s == g)
        ids_s = argmin_k  w_sem ||r_s,sem - c_sem[k]||^2 + w_pix ||r_s,pix - c_pix[k]||^2   (raw codes, no norm)
        f_hat = f_hat + bicubic-upsample(c[ids_s], g x g)                            (identity when s == g)
        r     = f - f_hat
    ids = [ids_1 | ids_2 | ... ]  flat [B, sum(s*s)], coarse to fine, row-major within each scale

The decoders read f_hat (straight-through: forward value f_hat, gradient to f); losses as VAR's: commitment
||f - sg(f_hat)||^2 and codebook ||sg(f) - f_hat||^2 (not with EMA), each branch's mean squared error summed.

Normalisation (the design choice). The single-scale dual codebook compares unit features with unit codes. A
residual is not a unit vector: after the first scale it is the (shrinking) error left by the coarser scales, so a
unit code can only overshoot it, and searching on the residual's direction while returning a code rescaled to the
residual's norm would make the decoded vector depend on something the id does not carry (not a discrete code).
TokenFlow's public code searches on the normalised residual and adds unit codes, so every scale adds a unit
vector whatever the residual's size. Here instead:

- the features are l2-normalised ONCE, per position and per branch, before the first scale: both branches live on
  the unit sphere as in the single-scale model (so w_sem / w_pix weigh comparable distances, and the encoders
  cannot shrink or blow up their features to game the commitment loss);
- the residuals are quantised by plain squared Euclidean distance against RAW (unnormalised) codes of one
  codebook pair shared by all scales (as VAR shares one codebook), so codes can learn the magnitudes the
  residuals of each scale have, and every id maps to one fixed vector: decode(ids) is f_hat exactly.

The weighted joint search is one nearest-code search (`mmtok.quantize.lookup.nearest`: Triton on CUDA, chunked
torch elsewhere) on the concatenation [sqrt(w_sem) r_sem, sqrt(w_pix) r_pix] against [sqrt(w_sem) c_sem,
sqrt(w_pix) c_pix]; `export_ids` repeats its torch path op for op (one addmm, min). The k-means init runs once, on
the first training batch, over the rows of every scale of the ideal residual pyramid of f (each scale's
area-downsampled residual of the unquantised coarser scales), so the initial codes cover the magnitudes every
scale meets. EMA codes are means of assigned residual rows; dead-code restarts reset to random residual rows of
the batch; code usage is counted over the ids of all scales (DualCodebook's machinery with raw codes).

Scale drop (TokenFlow): with probability `scale_drop` per training step one scale, chosen uniformly among all but
the first, is left out of that step (the ids of that step then have sum(s*s) - s'^2 columns). Never in eval.
VAR's optional 3x3 "phi" convolution after upsampling is not built (TokenFlow's code keeps it off by default).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mmtok.families.tokenflow.config import DualCodebookConfig
from mmtok.families.tokenflow.dual import DualCodebook, vq_terms
from mmtok.quantize.lookup import nearest
from mmtok.quantize.scales import down, map_rows, rows_map, up
from mmtok.quantize.stats import code_counts, usage_stats


class MultiScaleDualCodebook(DualCodebook):
    """forward(f_sem [B, sem_dim, g, g], f_pix [B, pix_dim, g, g]) -> (f_hat_sem, f_hat_pix ([B, C, g, g],
    straight-through), ids [B, L] (L = sum(s*s) of the scales used), losses {"codebook" (not with EMA),
    "commitment"}, stats). `vectors(ids [B, L])` gives (f_hat_sem, f_hat_pix) back; `export_ids` is the
    export-safe ids path."""

    unit_codes = False

    def __init__(self, cfg: DualCodebookConfig, scales: list[int], scale_drop: float = 0.0):
        super().__init__(cfg)
        self.scales, self.scale_drop = [int(s) for s in scales], float(scale_drop)
        self.grid = self.scales[-1]
        self.offsets = [0]
        for s in self.scales:
            self.offsets.append(self.offsets[-1] + s * s)
        self.ws, self.wp = math.sqrt(cfg.sem_weight), math.sqrt(cfg.pix_weight)

    # ------------------------------------------------------------------------------------------------ helpers

    def _joint_rows(self, rs: torch.Tensor, rp: torch.Tensor) -> torch.Tensor:
        """Maps [B, C, s, s] of both branches -> the weighted joint rows [B * s * s, sem_dim + pix_dim]."""
        return torch.cat([map_rows(rs) * self.ws, map_rows(rp) * self.wp], dim=1)

    def _joint_codes(self) -> torch.Tensor:
        cs, cp = self.codes()
        return torch.cat([cs * self.ws, cp * self.wp], dim=1)

    def _code_maps(self, ids: torch.Tensor, b: int, s: int, cs: torch.Tensor, cp: torch.Tensor):
        """Code maps [B, C, s, s] of ids [B * s * s]."""
        return rows_map(F.embedding(ids, cs), b, s), rows_map(F.embedding(ids, cp), b, s)

    def step_scales(self) -> list[int]:
        """The scales of this forward: all of them, or (training, with probability scale_drop) all but one
        drawn uniformly among all but the first (global torch RNG, so seeded runs repeat)."""
        n = len(self.scales)
        if not self.training or self.scale_drop <= 0 or n < 2:
            return self.scales
        if float(torch.rand(())) >= self.scale_drop:
            return self.scales
        drop = int(torch.randint(1, n, ()))
        return [s for i, s in enumerate(self.scales) if i != drop]

    @staticmethod
    def normalise(f_sem: torch.Tensor, f_pix: torch.Tensor):
        """Both branches' maps l2-normalised per position (over channels), fp32."""
        return F.normalize(f_sem.float(), dim=1), F.normalize(f_pix.float(), dim=1)

    # ------------------------------------------------------------------------------------------------ forward

    def forward(self, f_sem: torch.Tensor, f_pix: torch.Tensor):
        b, g = f_sem.shape[0], self.grid
        if tuple(f_sem.shape[-2:]) != (g, g) or tuple(f_pix.shape[-2:]) != (g, g):
            raise ValueError(f"expected maps [B, C, {g}, {g}], got {tuple(f_sem.shape)} and {tuple(f_pix.shape)}")
        with torch.autocast(device_type=f_sem.device.type, enabled=False):
            fs, fp = self.normalise(f_sem, f_pix)
            scales = self.step_scales()
            if self.training and not bool(self.initted):
                self._kmeans_init_pyramid(fs.detach(), fp.detach())
            cs, cp = self.codes()
            joint_c = self._joint_codes().detach()
            hat_s, hat_p = torch.zeros_like(fs), torch.zeros_like(fp)
            rs, rp = fs.detach(), fp.detach()
            ids_flat, ids_b, rows_s, rows_p = [], [], [], []
            for s in scales:
                ds, dp = down(rs, s), down(rp, s)
                ids = nearest(self._joint_rows(ds, dp), joint_c, "l2")
                qs, qp = self._code_maps(ids, b, s, cs, cp)
                hat_s, hat_p = hat_s + up(qs, g), hat_p + up(qp, g)
                rs, rp = fs.detach() - hat_s.detach(), fp.detach() - hat_p.detach()
                ids_flat.append(ids)
                ids_b.append(ids.reshape(b, s * s))
                rows_s.append(map_rows(ds))
                rows_p.append(map_rows(dp))
            ids = torch.cat(ids_b, dim=1)
            hat_s, hat_p, losses, stats = vq_terms(fs, fp, hat_s, hat_p, ema=self.cfg.ema)
            counts = code_counts(ids, self.codebook_size, sync=self.training)
            if self.training:
                self._update_state(torch.cat(rows_s), torch.cat(rows_p), torch.cat(ids_flat), counts)
        stats.update(usage_stats(counts))
        stats["restarts"] = self.restarts.detach().float()
        stats["scales_used"] = torch.tensor(float(len(scales)))
        return hat_s, hat_p, ids, losses, stats

    @torch.no_grad()
    def _kmeans_init_pyramid(self, fs: torch.Tensor, fp: torch.Tensor) -> None:
        """k-means (DualCodebook._kmeans_init, raw codes) over the rows of every scale of f's ideal residual
        pyramid: r_s = down(f - sum of the upsampled coarser r's, s)."""
        g = self.grid
        hat_s, hat_p = torch.zeros_like(fs), torch.zeros_like(fp)
        rows_s, rows_p = [], []
        for s in self.scales:
            ds, dp = down(fs - hat_s, s), down(fp - hat_p, s)
            rows_s.append(map_rows(ds))
            rows_p.append(map_rows(dp))
            hat_s, hat_p = hat_s + up(ds, g), hat_p + up(dp, g)
        self._kmeans_init(torch.cat(rows_s), torch.cat(rows_p))

    # ------------------------------------------------------------------------------------------------ ids paths

    def vectors(self, ids: torch.Tensor):
        """(f_hat_sem, f_hat_pix) [B, C, g, g] of ids [B, L] (every scale), as the eval forward builds them;
        export-safe (static slices per scale)."""
        b, g = ids.shape[0], self.grid
        cs, cp = self.codes()
        hat_s = torch.zeros(b, cs.shape[1], g, g, device=cs.device, dtype=cs.dtype)
        hat_p = torch.zeros(b, cp.shape[1], g, g, device=cp.device, dtype=cp.dtype)
        for i, s in enumerate(self.scales):
            qs, qp = self._code_maps(ids[:, self.offsets[i]:self.offsets[i + 1]].reshape(-1), b, s, cs, cp)
            hat_s, hat_p = hat_s + up(qs, g), hat_p + up(qp, g)
        return hat_s, hat_p

    def export_ids(self, f_sem: torch.Tensor, f_pix: torch.Tensor) -> torch.Tensor:
        """Ids [B, L] of maps [B, C, g, g] as the eval forward computes them (`nearest`'s torch path op for op:
        one addmm of ||c||^2 - 2 x.c per scale, min, ties to the lowest index), export-safe."""
        b, g = f_sem.shape[0], self.grid
        fs, fp = self.normalise(f_sem, f_pix)
        cs, cp = self.codes()
        c = self._joint_codes()
        c_sq = (c * c).sum(1).unsqueeze(0)
        hat_s, hat_p = torch.zeros_like(fs), torch.zeros_like(fp)
        rs, rp = fs, fp
        out = []
        for s in self.scales:
            x = self._joint_rows(down(rs, s), down(rp, s))
            ids = torch.addmm(c_sq, x, c.T, beta=1.0, alpha=-2.0).min(dim=1).indices
            qs, qp = self._code_maps(ids, b, s, cs, cp)
            hat_s, hat_p = hat_s + up(qs, g), hat_p + up(qp, g)
            rs, rp = fs - hat_s, fp - hat_p
            out.append(ids.reshape(b, s * s))
        return torch.cat(out, dim=1)
