"""4-D attention masks for VAR's block-causal sequences (mmtok.lm.layout, `next_scale`): a token sees the tokens
before it, and a token of a block (one scale of an image) also sees the rest of its block.

Masks are additive floats [B, 1, queries, keys] (0 where attention is allowed, the dtype's minimum elsewhere), the
form Hugging Face models take as a prepared mask with eager and sdpa attention alike; a fully masked row (a padding
query) gets uniform weights, never NaN.
"""
from __future__ import annotations

import torch

BLOCK_ATTENTION = ("eager", "sdpa")  # attention implementations that apply a prepared 4-D mask as given


def check_block_attention(model) -> None:
    """MmtokError unless `model` applies a prepared 4-D mask (eager or sdpa attention), as next-scale sequences need."""
    from mmtok.errors import MmtokError

    impl = getattr(model.config, "_attn_implementation", None)
    if impl not in BLOCK_ATTENTION:
        raise MmtokError(f"next-scale sequences need a 4-D attention mask, which {impl!r} attention does not apply",
                         hint="load the model with attn_implementation='sdpa' or 'eager', or extend without "
                         "--next-scale")


def additive(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """bool [B, Q, K] -> additive float [B, 1, Q, K]."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill(
        ~allowed, torch.finfo(dtype).min)[:, None]


def packed_block_mask(position_ids: torch.Tensor, blocks: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The mask of packed training rows [B, T]: sequences start where position ids restart at 0 and never see each
    other; inside one, causal attention, plus full attention inside a block (`blocks` >= 0: the same number for the
    tokens of one block, -1 for ordinary tokens)."""
    t = torch.arange(position_ids.shape[1], device=position_ids.device)
    seq = (position_ids == 0).cumsum(-1)
    causal = t[:, None] >= t[None, :]
    same_block = (blocks[:, :, None] == blocks[:, None, :]) & (blocks[:, :, None] >= 0)
    allowed = (seq[:, :, None] == seq[:, None, :]) & (causal[None] | same_block)
    return additive(allowed, dtype)


def chunk_mask(keys: torch.Tensor, queries: int, block: int, dtype: torch.dtype) -> torch.Tensor:
    """The mask of `queries` new tokens appended to a cache, for sampling: `keys` bool [B, past + queries] marks the
    real (not padding) tokens; the new tokens attend causally, and the last `block` of them also to each other."""
    total = keys.shape[1]
    k = torch.arange(total, device=keys.device)
    q = torch.arange(total - queries, total, device=keys.device)
    in_block = (q[:, None] >= total - block) & (k[None, :] >= total - block)
    allowed = keys[:, None, :] & ((k[None, :] <= q[:, None]) | in_block)[None]
    return additive(allowed, dtype)
