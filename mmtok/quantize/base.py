"""The quantizer contract shared by every codebook layer (VQ, residual, FSQ, LFQ, dual)."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


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
