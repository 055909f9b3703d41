"""Finite scalar quantization (Mentzer et al. 2023, "Finite Scalar Quantization: VQ-VAE Made Simple").

Input z [..., input_dim] -> Linear to d = len(levels) channels -> each channel i bounded by a shifted tanh to
levels[i] integer values and rounded (straight-through) -> codes in [-1, 1] -> Linear back to `input_dim`.
The implicit codebook is the product grid (codebook_size = prod(levels)); nothing is learned in it, so there
is no codebook or commitment loss and every code is reachable by construction.

Per channel with L levels and half width h = L // 2, the rounded integer q takes the values
    odd L:  -h .. h          (symmetric, 0 included)
    even L: -h .. h - 1      (the half-level offset: bound(x) = tanh(x + atanh(0.5 / a)) * a - 0.5, a = (L-1)(1+eps)/2,
                              so bound(0) = 0 and the range (-h - eps', h - 1 + eps') rounds to exactly L values)
and the code value is q / h. The code id is the mixed-radix number sum_i (q_i + h_i) * basis_i with
basis = cumprod([1, levels[0], ..., levels[-2]]) (channel 0 least significant, as the paper's code and
vector-quantize-pytorch). `lookup(ids)` is the exact inverse: lookup(forward(z).ids) == forward(z).z_q bitwise
in eval.

All the math runs in fp32 whatever the autocast state or the input dtype: in bf16 the bounded values near a
rounding boundary flip and usage collapses (REFERENCE section 2).
"""
from __future__ import annotations

import torch
from torch import nn

from mmtok.quantize.config import FSQConfig
from mmtok.errors import MmtokError
from mmtok.quantize.base import QuantizeOutput, check_ids, linear_fp32 as _linear, projections
from mmtok.quantize.stats import code_counts, usage_stats
from mmtok.registry import QUANTIZERS

BOUND_EPS = 1e-3  # widens the tanh range slightly so the extreme levels are reachable (the paper's eps)


@QUANTIZERS.register("fsq")
class FSQ(nn.Module):
    """FSQ over `cfg.levels` for inputs of `input_dim` channels.

    forward(z [..., input_dim]) -> QuantizeOutput(z_q [..., input_dim] in z's dtype, ids [...] long in
    [0, prod(levels)), losses {} (nothing to learn in the codebook), stats {"usage", "perplexity",
    "entropy_bits"}: detached fp32 scalars, from counts all-reduced across ranks in training mode).
    """

    def __init__(self, input_dim: int, cfg: FSQConfig, *, entropy_loss: bool = False):
        super().__init__()
        if input_dim < 1:
            raise ValueError(f"input_dim must be >= 1, got {input_dim}")
        if entropy_loss:
            raise MmtokError("the FSQ quantizer has no entropy loss (its codes are all used by construction)",
                             hint="set loss.weights.entropy=0, or use quantizer kind 'vq' or 'lfq'")
        self.cfg = cfg
        self.input_dim, self.dim, self.codebook_size, self.num_codebooks = input_dim, cfg.dim, cfg.codebook_size, 1
        self.proj_in, self.proj_out = projections(input_dim, cfg.dim)
        levels = torch.tensor(cfg.levels, dtype=torch.long)
        basis = torch.cumprod(torch.cat([torch.ones(1, dtype=torch.long), levels[:-1]]), 0)
        # derived from the config: not saved in the state_dict
        self.register_buffer("levels", levels, persistent=False)
        self.register_buffer("basis", basis, persistent=False)
        self.register_buffer("half_width", levels // 2, persistent=False)

    # ------------------------------------------------------------------------------------------- grid

    def bound(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., d] fp32 -> bounded values whose rounding is an integer level of each channel: [-h, h] for odd
        L, [-h, h - 1] for even L (the half-level offset; bound(0) == 0 either way)."""
        levels = self.levels.to(x.dtype)
        half_l = (levels - 1) * (1 + BOUND_EPS) / 2
        offset = torch.where(self.levels % 2 == 0, 0.5, 0.0).to(x.dtype)
        shift = torch.atanh(offset / half_l)
        return torch.tanh(x + shift) * half_l - offset

    def ids_to_codes(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids [...] in [0, K) -> codes [..., d] fp32 in [-1, 1] (the exact grid values forward produces)."""
        digits = torch.div(ids.long().unsqueeze(-1), self.basis, rounding_mode="floor") % self.levels
        return (digits - self.half_width).float() / self.half_width.float()

    def export_ids(self, x: torch.Tensor) -> torch.Tensor:
        """Ids [N] of rows x [N, input_dim] (fp32), export-safe."""
        levels = torch.round(self.bound(_linear(self.proj_in, x)))
        return ((levels.long() + self.half_width) * self.basis).sum(-1)

    def export_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        """Code vectors [N, input_dim] (fp32) of ids [N], export-safe."""
        return _linear(self.proj_out, self.ids_to_codes(ids))

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """Code vectors [..., input_dim] (fp32) for ids [...] in [0, codebook_size)."""
        check_ids(ids, self.codebook_size, "FSQ")
        with torch.autocast(device_type=ids.device.type, enabled=False):
            return _linear(self.proj_out, self.ids_to_codes(ids))

    # ------------------------------------------------------------------------------------------- forward

    def forward(self, z: torch.Tensor) -> QuantizeOutput:
        if z.shape[-1:] != (self.input_dim,) or not z.is_floating_point():
            raise ValueError(f"FSQ expects a float tensor [..., {self.input_dim}], got {z.dtype} {tuple(z.shape)}")
        with torch.autocast(device_type=z.device.type, enabled=False):
            x = _linear(self.proj_in, z.reshape(-1, self.input_dim).float())  # [N, d]
            b = self.bound(x)
            q = torch.round(b.detach())  # integers in [-h, h] (odd) or [-h, h-1] (even)
            ids = ((q.long() + self.half_width) * self.basis).sum(-1)
            if b.requires_grad:  # straight-through: value q exactly, gradient of b
                q = q + (b - b.detach())
            codes = q / self.half_width.float()
            z_q = _linear(self.proj_out, codes).reshape(z.shape).to(z.dtype)
        counts = code_counts(ids, self.codebook_size, sync=self.training)
        return QuantizeOutput(z_q=z_q, ids=ids.reshape(z.shape[:-1]), losses={}, stats=usage_stats(counts))

