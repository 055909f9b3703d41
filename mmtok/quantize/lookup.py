"""Nearest-code search: the one function every quantizer calls.

`nearest(x, codebook, metric)` returns, for each row of x, the id of the closest code. The CPU/PyTorch
path is a chunked matmul + argmin whose memory stays O(chunk x K): the N x K distance matrix is never built
whole. Ties resolve to the lowest index (torch.argmin's rule). Distances are computed in fp32 whatever the
input dtype.
"""
from __future__ import annotations

from typing import Literal

import torch

Metric = Literal["l2", "cos"]

DEFAULT_CHUNK = 4096


def nearest(
    x: torch.Tensor,
    codebook: torch.Tensor,
    metric: Metric = "l2",
    *,
    return_dist: bool = False,
    chunk: int = DEFAULT_CHUNK,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Ids [N] of the nearest codes to x [N, D] among codebook [K, D] (and their distances if asked).

    metric "l2": squared Euclidean distance. metric "cos": 1 - cosine similarity (inputs need not be
    normalised). Returned distances are fp32.
    """
    if x.dim() != 2 or codebook.dim() != 2 or x.shape[1] != codebook.shape[1]:
        raise ValueError(f"nearest expects x [N, D] and codebook [K, D], got {tuple(x.shape)} and {tuple(codebook.shape)}")
    return _nearest_torch(x, codebook, metric, return_dist, chunk)


def _nearest_torch(x, codebook, metric, return_dist, chunk):
    x = x.float()
    c = codebook.float()
    if metric == "cos":
        x = torch.nn.functional.normalize(x, dim=1)
        c = torch.nn.functional.normalize(c, dim=1)
        c_sq = None
    elif metric == "l2":
        c_sq = (c * c).sum(1)
    else:
        raise ValueError(f"unknown metric {metric!r}; use 'l2' or 'cos'")
    ids = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    dist = torch.empty(x.shape[0], dtype=torch.float32, device=x.device) if return_dist else None
    for start in range(0, x.shape[0], chunk):
        xs = x[start : start + chunk]
        if metric == "cos":
            d = 1.0 - xs @ c.T
        else:
            # ||x||^2 is constant per row: it does not change the argmin, only the reported distance.
            d = torch.addmm(c_sq.unsqueeze(0), xs, c.T, beta=1.0, alpha=-2.0)
        best, idx = d.min(dim=1)
        ids[start : start + chunk] = idx
        if dist is not None:
            dist[start : start + chunk] = best + (xs * xs).sum(1) if metric == "l2" else best
    return (ids, dist) if return_dist else ids
