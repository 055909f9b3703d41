"""The quantizer contract shared by every codebook layer (VQ, residual, FSQ, LFQ, dual)."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class QuantizeOutput:
    """What every quantizer's forward returns.

    z_q:    quantized vectors, same shape and dtype as the input, carrying the chosen gradient estimator.
    ids:    LongTensor of code ids, the input's shape without its last (feature) dimension
            (a residual quantizer adds a trailing level dimension).
    losses: unweighted named loss terms (e.g. "codebook", "commitment", "entropy"); the task weights them.
    stats:  detached scalars for logging (e.g. "usage", "perplexity").
    """

    z_q: torch.Tensor
    ids: torch.Tensor
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    stats: dict[str, torch.Tensor] = field(default_factory=dict)


def check_ids(ids: torch.Tensor, K: int, who: str) -> None:
    """Raise ValueError unless every id lies in [0, K). Eager mode only: under torch.compile / torch.export the
    check is skipped, since a data-dependent branch would break the graph."""
    if torch.compiler.is_compiling() or not ids.numel():
        return
    lo, hi = int(ids.min()), int(ids.max())
    if lo < 0 or hi >= K:
        raise ValueError(f"{who} code ids must lie in [0, {K}), got [{lo}, {hi}]")


def projections(input_dim: int, dim: int, always: bool = False) -> tuple[nn.Module, nn.Module]:
    """(proj_in, proj_out): Linear maps between the input space and the code space (Identity when the widths are
    equal, unless `always`)."""
    if input_dim == dim and not always:
        return nn.Identity(), nn.Identity()
    return nn.Linear(input_dim, dim), nn.Linear(dim, input_dim)


def linear_fp32(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a Linear (or Identity) in fp32 even if the module's weights were cast to another dtype."""
    if isinstance(layer, nn.Linear):
        return F.linear(x, layer.weight.float(), None if layer.bias is None else layer.bias.float())
    return x
