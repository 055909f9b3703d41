"""Codebook usage over a whole evaluation pass, summed across ranks.

Counts come from `torch.bincount` (never a one-hot). From the code frequencies p_k = n_k / sum(n):
usage_pct = 100 * #{k : n_k > 0} / K, entropy_bits = -sum p_k log2 p_k, perplexity = 2 ** entropy_bits
(the effective number of codes in use: K for a uniform distribution, 1 when one code takes everything).
With several codebooks (ids [B, G, ...], G = num_codebooks, each codebook of size K) each codebook gets its
own statistics and the reported values are their means (used_codes is summed).
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric


def count_codes(ids: Tensor, codebook_size: int, num_codebooks: int = 1) -> Tensor:
    """Counts [G, K] (long) of ids in [0, K). G = 1: any shape; G > 1: ids [B, G, ...], codebook on dim 1.
    ValueError for non-integer ids, ids out of range, or a dim 1 that is not G."""
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise ValueError(f"codebook ids must be integers, got {ids.dtype}")
    k = int(codebook_size)
    if ids.numel():
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= k:
            raise ValueError(f"codebook ids must lie in [0, {k}), got values in [{lo}, {hi}]")
    ids = ids.long()
    if num_codebooks == 1:
        return torch.bincount(ids.flatten(), minlength=k).unsqueeze(0)
    if ids.ndim < 2 or ids.shape[1] != num_codebooks:
        raise ValueError(
            f"expected ids [B, {num_codebooks}, ...] for {num_codebooks} codebooks, got {tuple(ids.shape)}"
        )
    offset = torch.arange(num_codebooks, device=ids.device).view(1, -1, *([1] * (ids.ndim - 2))) * k
    return torch.bincount((ids + offset).flatten(), minlength=k * num_codebooks).view(num_codebooks, k)


def usage_stats(counts: Tensor) -> dict[str, Tensor]:
    """Statistics of counts [K] or [G, K]: usage_pct, perplexity, entropy_bits (float64, averaged over
    codebooks), used_codes and total_tokens (long, summed). An empty codebook has entropy 0, perplexity 1."""
    c = counts.double()
    if c.ndim == 1:
        c = c.unsqueeze(0)
    totals = c.sum(1, keepdim=True)
    p = c / totals.clamp_min(1)
    entropy_bits = -(p * torch.log2(torch.where(p > 0, p, torch.ones_like(p)))).sum(1)
    used = (c > 0).sum(1)
    return {
        "usage_pct": (100.0 * used.double() / c.shape[1]).mean(),
        "perplexity": torch.pow(2.0, entropy_bits).mean(),
        "entropy_bits": entropy_bits.mean(),
        "used_codes": used.sum(),
        "total_tokens": counts.sum().long(),
    }


class CodebookUsage(Metric):
    """Usage of a codebook of `codebook_size` codes (optionally `num_codebooks` of them) over all updates on
    all ranks. update(ids): LongTensor [B, ...] (or [B, G, ...]) of code ids; ids outside [0, K) raise
    ValueError. compute() -> dict: usage_pct, perplexity, entropy_bits, used_codes, total_tokens,
    num_samples and tokens_per_sample (total tokens / samples, all codebooks included)."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, codebook_size: int, num_codebooks: int = 1, **kwargs: Any):
        super().__init__(**kwargs)
        if codebook_size < 1 or num_codebooks < 1:
            raise ValueError(f"codebook_size and num_codebooks must be >= 1, got {codebook_size}, {num_codebooks}")
        self.codebook_size = int(codebook_size)
        self.num_codebooks = int(num_codebooks)
        self.add_state("counts", torch.zeros(self.num_codebooks, self.codebook_size, dtype=torch.long),
                       dist_reduce_fx="sum")
        self.add_state("num_samples", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def update(self, ids: Tensor) -> None:
        self.counts = self.counts + count_codes(ids, self.codebook_size, self.num_codebooks).to(self.counts.device)
        self.num_samples = self.num_samples + (ids.shape[0] if ids.ndim else 1)

    def compute(self) -> dict[str, Tensor]:
        out = usage_stats(self.counts)
        n = int(self.num_samples)
        out["num_samples"] = self.num_samples.clone()
        out["tokens_per_sample"] = torch.tensor(
            int(out["total_tokens"]) / n if n else math.nan, dtype=torch.float64
        )
        return out

    def histogram(self) -> Tensor:
        """The synced counts [G, K] (for a usage histogram), on CPU."""
        with self.sync_context(should_sync=self._to_sync, should_unsync=True):
            return self.counts.detach().cpu().clone()
