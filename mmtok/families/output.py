"""The tokenizer contract every family follows."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class TokenizerOutput:
    """What a tokenizer's forward returns.

    recon:  the reconstruction, same shape and value range as the input.
    ids:    LongTensor of token ids, [B, *token_grid].
    losses: unweighted named loss terms from the quantizer (and any family-specific term).
    stats:  detached scalars for logging (codebook usage, perplexity, restarts).
    """

    recon: torch.Tensor
    ids: torch.Tensor
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    stats: dict[str, torch.Tensor] = field(default_factory=dict)
