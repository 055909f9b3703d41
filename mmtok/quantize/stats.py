"""Codebook statistics (counts, usage, perplexity) and the few collectives the quantizers need.

Counts come from `torch.bincount`, never from a one-hot, so memory is O(N + K). When torch.distributed is
initialised, `code_counts` sums them over all ranks, so every rank sees the global counts. Collectives must
be reached by every rank in the same order; callers decide when (`sync=`).
"""
from __future__ import annotations

import torch
import torch.distributed as dist


def is_dist() -> bool:
    """True when torch.distributed is available and a process group is initialised."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's global rank (0 without a process group)."""
    return dist.get_rank() if is_dist() else 0


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum `t` over all ranks in place (a no-op without a process group); returns `t`."""
    if is_dist():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def broadcast_from_rank0(t: torch.Tensor) -> torch.Tensor:
    """Overwrite `t` in place with rank 0's copy (a no-op without a process group); returns `t`."""
    if is_dist():
        dist.broadcast(t, src=0)
    return t


def code_counts(ids: torch.Tensor, K: int, *, sync: bool = True) -> torch.Tensor:
    """LongTensor [K]: how often each code id in [0, K) occurs in `ids` (any shape).

    With `sync` (the default) and a process group, the counts are summed over all ranks.
    Raises ValueError for ids outside [0, K).
    """
    flat = ids.reshape(-1).long()
    if flat.numel() and int(flat.min()) < 0:
        raise ValueError(f"code ids must lie in [0, {K}), got {int(flat.min())}")
    counts = torch.bincount(flat, minlength=K)
    if counts.shape[0] != K:
        raise ValueError(f"code ids must lie in [0, {K}), got {counts.shape[0] - 1}")
    return all_reduce_sum(counts) if sync else counts


def usage_stats(counts: torch.Tensor) -> dict[str, torch.Tensor]:
    """Scalar float32 tensors from per-code counts [K], as the training log shows them (computed by
    mmtok.metrics.codebook.usage_stats, the one implementation):

    usage:        fraction of codes with a non-zero count, in [0, 1];
    perplexity:   exp(entropy) of the code distribution, in [1, K] (1 when counts are all zero);
    entropy_bits: entropy of the code distribution in bits, in [0, log2 K].
    """
    from mmtok.metrics.codebook import usage_stats as stats

    s = stats(counts.detach())
    return {"usage": (s["usage_pct"] / 100).float(), "perplexity": s["perplexity"].float(),
            "entropy_bits": s["entropy_bits"].float()}
