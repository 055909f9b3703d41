"""Lookup-free quantization (MAGVIT-v2, Yu et al. 2023; Open-MAGVIT2).

Input z [..., input_dim] -> Linear to `dim` channels x -> each channel to its sign, code value
q_d = +s if x_d > 0 else -s (s = codebook_scale) -> Linear back to `input_dim`. The implicit codebook is
{-s, +s}^dim (codebook_size = 2**dim); the id is the binary number of the bits (x_d > 0), channel 0 the most
significant bit (as Open-MAGVIT2 and vector-quantize-pytorch). Gradient: straight-through (value q exactly,
gradient of x). All the math runs in fp32 whatever the autocast state or the input dtype.

Losses (unweighted): "commitment" = mean (x - q)^2, and with `entropy_loss` "entropy" = mean over rows of
H(p(.|x)) minus H(mean over rows of p(.|x)) (nats), where p(c|x) = softmax_c(-|x - c|^2 / T) over all 2**dim
codes (T = entropy_temperature): low per-token entropy (confident codes), high batch entropy (all codes used).

How the entropy is computed, exactly and without a 2**dim-wide table per row: since |c|^2 is the same for every
code, p(c|x) = prod_d p_d(c_d | x_d) with bit logit a_d = 4 s x_d / T, so
- the per-row entropy is the sum of dim binary entropies (O(N x dim));
- the batch distribution is accumulated over row chunks: the bits are split into a high group of
  h = ceil(dim/2) and a low group of l = floor(dim/2) bits, each chunk's per-group tables P_hi [chunk, 2^h] and
  P_lo [chunk, 2^l] are built, and sum_rows p(c_hi c_lo | x) = (P_hi^T P_lo)[c_hi, c_lo] is one matmul.
Memory bound (forward and backward, each chunk under activation checkpointing): O(chunk x 2^ceil(dim/2) + 2^dim)
beyond the O(N x dim) inputs, with chunk = `entropy_chunk` rows. No N x 2^dim or chunk x 2^dim tensor exists:
at dim 18 and 4096-row chunks that is 4096 x 512 + 262144 floats (~9 MiB), against 4 GiB for a dense
4096 x 2^18 chunk. The result equals the dense softmax computation (tested in float64).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from mmtok.quantize.config import LFQConfig
from mmtok.quantize.base import QuantizeOutput, check_ids, linear_fp32 as _linear, projections
from mmtok.quantize.stats import code_counts, usage_stats
from mmtok.registry import QUANTIZERS


@QUANTIZERS.register("lfq")
class LFQ(nn.Module):
    """LFQ with 2**cfg.dim implicit codes for inputs of `input_dim` channels.

    forward(z [..., input_dim]) -> QuantizeOutput(z_q [..., input_dim] in z's dtype, ids [...] long in
    [0, 2**dim), losses {"commitment", "entropy" (with entropy_loss)}: unweighted fp32 scalars,
    stats {"usage", "perplexity", "entropy_bits"}: detached fp32 scalars, from counts all-reduced across ranks
    in training mode). lookup(ids) gives the same vectors as forward's z_q (bitwise in eval).
    """

    entropy_chunk: int = 4096  # rows of the entropy's batch distribution built at a time

    def __init__(self, input_dim: int, cfg: LFQConfig, *, entropy_loss: bool = False):
        super().__init__()
        if input_dim < 1:
            raise ValueError(f"input_dim must be >= 1, got {input_dim}")
        self.cfg = cfg
        self.input_dim, self.dim, self.codebook_size, self.num_codebooks = input_dim, cfg.dim, cfg.codebook_size, 1
        self.entropy_loss = entropy_loss
        self.proj_in, self.proj_out = projections(input_dim, cfg.dim)
        # bit weights, most significant first; derived from the config, not saved in the state_dict
        self.register_buffer("basis", 2 ** torch.arange(cfg.dim - 1, -1, -1, dtype=torch.long), persistent=False)

    # ------------------------------------------------------------------------------------------- lookup

    def ids_to_codes(self, ids: torch.Tensor) -> torch.Tensor:
        """Ids [...] in [0, 2**dim) -> codes [..., dim] fp32, each +-codebook_scale."""
        bits = torch.div(ids.long().unsqueeze(-1), self.basis, rounding_mode="floor") % 2
        return (bits * 2 - 1).float() * self.cfg.codebook_scale

    def export_ids(self, x: torch.Tensor) -> torch.Tensor:
        """Ids [N] of rows x [N, input_dim] (fp32), export-safe: the sign bits of the projected channels."""
        return ((_linear(self.proj_in, x) > 0).long() * self.basis).sum(-1)

    def export_vectors(self, ids: torch.Tensor) -> torch.Tensor:
        """Code vectors [N, input_dim] (fp32) of ids [N], export-safe."""
        return _linear(self.proj_out, self.ids_to_codes(ids))

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """Code vectors [..., input_dim] (fp32) for ids [...] in [0, codebook_size)."""
        check_ids(ids, self.codebook_size, "LFQ")
        with torch.autocast(device_type=ids.device.type, enabled=False):
            return _linear(self.proj_out, self.ids_to_codes(ids))

    # ------------------------------------------------------------------------------------------- forward

    def forward(self, z: torch.Tensor) -> QuantizeOutput:
        if z.shape[-1:] != (self.input_dim,) or not z.is_floating_point():
            raise ValueError(f"LFQ expects a float tensor [..., {self.input_dim}], got {z.dtype} {tuple(z.shape)}")
        s = self.cfg.codebook_scale
        with torch.autocast(device_type=z.device.type, enabled=False):
            x = _linear(self.proj_in, z.reshape(-1, self.input_dim).float())  # [N, dim]
            bits = x.detach() > 0
            ids = (bits.long() * self.basis).sum(-1)
            q = torch.where(bits, s, -s).to(x.dtype)
            losses = {"commitment": F.mse_loss(x, q)}
            if self.entropy_loss:
                losses["entropy"] = self.entropy(x)
            if x.requires_grad:  # straight-through: value q exactly, gradient of x
                q = q + (x - x.detach())
            z_q = _linear(self.proj_out, q).reshape(z.shape).to(z.dtype)
        counts = code_counts(ids, self.codebook_size, sync=self.training)
        return QuantizeOutput(z_q=z_q, ids=ids.reshape(z.shape[:-1]), losses=losses, stats=usage_stats(counts))

    # ------------------------------------------------------------------------------------------- entropy

    def entropy(self, x: torch.Tensor) -> torch.Tensor:
        """Mean per-row entropy of p(.|x) minus the entropy of the mean distribution over the rows of x
        [N, dim] (nats, computed in x's dtype; see the module docstring for the method and memory bound)."""
        n, dim = x.shape
        a = x * (4 * self.cfg.codebook_scale / self.cfg.entropy_temperature)  # bit logits log p(+) / p(-)
        log_plus, log_minus = F.logsigmoid(a), F.logsigmoid(-a)
        per_row = -(log_plus.exp() * log_plus + log_minus.exp() * log_minus).sum() / max(n, 1)

        h = dim - dim // 2
        tables = (_bit_table(h, x), _bit_table(dim - h, x))  # [2^g, 2g]: which log-prob each code picks
        logs = torch.stack([log_plus, log_minus], dim=-1)  # [N, dim, 2]
        p_sum = x.new_zeros(2**h, 2 ** (dim - h))
        for start in range(0, n, self.entropy_chunk):
            chunk = logs[start : start + self.entropy_chunk]
            if torch.is_grad_enabled() and chunk.requires_grad:
                p_sum = p_sum + checkpoint(_batch_chunk, chunk, h, *tables, use_reentrant=False)
            else:
                p_sum = p_sum + _batch_chunk(chunk, h, *tables)
        avg = p_sum.reshape(-1) / max(n, 1)  # row-major: id = hi * 2^l + lo, matching the MSB-first ids
        return per_row + (avg * torch.log(avg.clamp_min(1e-12))).sum()


def _bit_table(g: int, like: torch.Tensor) -> torch.Tensor:
    """[2^g, 2g] 0/1 selector: row c picks, for each of its g bits (most significant first), the log-prob of
    the bit being 1 (column 2d) or 0 (column 2d + 1)."""
    shifts = torch.arange(g - 1, -1, -1, device=like.device)
    bits = (torch.arange(2**g, device=like.device).unsqueeze(1) >> shifts) & 1  # [2^g, g]
    return torch.stack([bits, 1 - bits], dim=-1).reshape(2**g, 2 * g).to(like.dtype)


def _batch_chunk(logs: torch.Tensor, h: int, table_hi: torch.Tensor, table_lo: torch.Tensor) -> torch.Tensor:
    """sum over the chunk's rows of p(c|x) as [2^h, 2^l] for per-bit log-probs `logs` [rows, dim, 2]."""
    p_hi = torch.exp(logs[:, :h].reshape(logs.shape[0], -1) @ table_hi.T)  # [rows, 2^h]
    p_lo = torch.exp(logs[:, h:].reshape(logs.shape[0], -1) @ table_lo.T)  # [rows, 2^l]
    return p_hi.T @ p_lo
