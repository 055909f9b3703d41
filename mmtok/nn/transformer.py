"""Small pre-norm transformer pieces: attention (self or cross, optionally causal), a causal Q-Former (BLIP-2 /
SEED) and plain causal blocks. All sequences are [B, N, D].

Causality: with `causal=True` position i of a self-attention sees only positions <= i; cross-attention and the
MLP act per position. So in `QFormer` (causal self-attention among the learned queries, cross-attention to
image features) and `CausalBlocks`, output i depends only on inputs 0..i (and on the image features).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Multi-head attention of x [B, N, D] over `context` [B, M, kv_dim] (None: over x itself)."""

    def __init__(self, dim: int, heads: int, kv_dim: int | None = None):
        super().__init__()
        if dim % heads:
            raise ValueError(f"width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(kv_dim or dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, causal: bool = False) -> torch.Tensor:
        b, n, d = x.shape
        ctx = x if context is None else context
        h = self.heads
        q = self.q(x).view(b, n, h, d // h).transpose(1, 2)
        k, v = self.kv(ctx).view(b, ctx.shape[1], 2, h, d // h).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.out(o.transpose(1, 2).reshape(b, n, d))


def mlp(dim: int, ratio: float = 4.0, out: int | None = None) -> nn.Sequential:
    hidden = int(dim * ratio)
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, out or dim))


class Block(nn.Module):
    """Pre-norm block: self-attention (causal or not), optional cross-attention to a context, MLP."""

    def __init__(self, dim: int, heads: int, *, causal: bool, kv_dim: int | None = None, mlp_ratio: float = 4.0):
        super().__init__()
        self.causal = causal
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads)
        self.cross = None
        if kv_dim is not None:
            self.norm_cross = nn.LayerNorm(dim)
            self.cross = Attention(dim, heads, kv_dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = mlp(dim, mlp_ratio)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), causal=self.causal)
        if self.cross is not None:
            x = x + self.cross(self.norm_cross(x), context)
        return x + self.mlp(self.norm2(x))


class QFormer(nn.Module):
    """`num_queries` learned queries [N, dim]; `depth` blocks of causal self-attention among the queries, with
    cross-attention to the context (image features [B, M, kv_dim], layer-normalised once) in every
    `cross_attention_freq`-th block (blocks 0, f, 2f, ... as BLIP-2 / SEED). forward(context) -> [B, N, dim]."""

    def __init__(self, num_queries: int, dim: int, depth: int, heads: int, kv_dim: int,
                 cross_attention_freq: int = 2, mlp_ratio: float = 4.0):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(1, num_queries, dim) * 0.02)
        self.context_norm = nn.LayerNorm(kv_dim)
        self.blocks = nn.ModuleList(
            Block(dim, heads, causal=True, kv_dim=kv_dim if i % cross_attention_freq == 0 else None,
                  mlp_ratio=mlp_ratio) for i in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, context: torch.Tensor, queries: torch.Tensor | None = None) -> torch.Tensor:
        """`queries` [B or 1, N, dim] replaces the learned ones (the causality test perturbs them)."""
        ctx = self.context_norm(context)
        x = (self.queries if queries is None else queries).expand(context.shape[0], -1, -1)
        for block in self.blocks:
            x = block(x, ctx)
        return self.norm(x)


class CausalBlocks(nn.Module):
    """`depth` causal self-attention blocks with learned positions: [B, N, dim] -> [B, N, dim]."""

    def __init__(self, length: int, dim: int, depth: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.pos = nn.Parameter(torch.randn(1, length, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, heads, causal=True, mlp_ratio=mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos[:, : x.shape[1]]
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class QueryDecoder(nn.Module):
    """TiTok-style: `length` learned position queries attend to each other (not causal) and cross-attend to the
    tokens [B, N, dim] over `depth` blocks, then a linear map to `out` channels: [B, N, dim] -> [B, length, out]."""

    def __init__(self, length: int, dim: int, depth: int, heads: int, out: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(1, length, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, heads, causal=False, kv_dim=dim, mlp_ratio=mlp_ratio)
                                    for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.out = nn.Linear(dim, out)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.queries.expand(tokens.shape[0], -1, -1)
        for block in self.blocks:
            x = block(x, tokens)
        return self.out(self.norm(x))
