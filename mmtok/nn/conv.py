"""Conv building blocks of the taming/LlamaGen VQGAN: res blocks, attention, down/up sampling, encoder, decoder.

Tensors are [B, C, H, W]. The encoder maps [B, in_channels, R, R] to [B, z_channels, R/f, R/f] with
f = 2 ** (len(ch_mult) - 1); the decoder maps it back.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with 32 groups (taming), or the largest divisor of `channels` below 32 for tiny models."""
    return nn.GroupNorm(math.gcd(32, channels), channels, eps=1e-6, affine=True)


class ResBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = norm(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm2 = norm(out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.shortcut = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return self.shortcut(x) + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention with a residual connection."""

    def __init__(self, ch: int):
        super().__init__()
        self.norm = norm(ch)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1)).squeeze(1)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class Downsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, ch: int):
        super().__init__()
        self.conv = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _stage(in_ch: int, out_ch: int, n_blocks: int, attn: bool, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(n_blocks):
        layers.append(ResBlock(in_ch if i == 0 else out_ch, out_ch, dropout))
        if attn:
            layers.append(AttnBlock(out_ch))
    return nn.Sequential(*layers)


def _mid(ch: int, attn: bool, dropout: float) -> nn.Sequential:
    return nn.Sequential(ResBlock(ch, ch, dropout), AttnBlock(ch) if attn else nn.Identity(), ResBlock(ch, ch, dropout))


class Encoder(nn.Module):
    def __init__(self, *, in_channels, ch, ch_mult, num_res_blocks, attn_resolutions, mid_attn, z_channels,
                 resolution, dropout=0.0):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        stages: list[nn.Module] = []
        res, in_ch = resolution, ch
        for level, mult in enumerate(ch_mult):
            out_ch = ch * mult
            stages.append(_stage(in_ch, out_ch, num_res_blocks, res in attn_resolutions, dropout))
            if level != len(ch_mult) - 1:
                stages.append(Downsample(out_ch))
                res //= 2
            in_ch = out_ch
        self.down = nn.Sequential(*stages)
        self.mid = _mid(in_ch, mid_attn, dropout)
        self.norm_out = norm(in_ch)
        self.conv_out = nn.Conv2d(in_ch, z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.down(self.conv_in(x)))
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, *, out_channels, ch, ch_mult, num_res_blocks, attn_resolutions, mid_attn, z_channels,
                 resolution, dropout=0.0):
        super().__init__()
        in_ch = ch * ch_mult[-1]
        res = resolution // 2 ** (len(ch_mult) - 1)
        self.conv_in = nn.Conv2d(z_channels, in_ch, 3, padding=1)
        self.mid = _mid(in_ch, mid_attn, dropout)
        stages: list[nn.Module] = []
        for level in reversed(range(len(ch_mult))):
            out_ch = ch * ch_mult[level]
            stages.append(_stage(in_ch, out_ch, num_res_blocks + 1, res in attn_resolutions, dropout))
            if level != 0:
                stages.append(Upsample(out_ch))
                res *= 2
            in_ch = out_ch
        self.up = nn.Sequential(*stages)
        self.norm_out = norm(in_ch)
        self.conv_out = nn.Conv2d(in_ch, out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.up(self.mid(self.conv_in(z)))
        return self.conv_out(F.silu(self.norm_out(h)))


class ConvHead(nn.Module):
    """Features [B, in_ch, h, w] -> [B, out_ch, h, w]: a 3x3 conv to `width`, `blocks` residual blocks, norm, SiLU,
    a 1x1 conv out (the semantic decoders of SDE and TokenFlow)."""

    def __init__(self, in_ch: int, width: int, blocks: int, out_ch: int):
        super().__init__()
        self.conv_in = nn.Conv2d(in_ch, width, 3, padding=1)
        self.blocks = nn.Sequential(*[ResBlock(width, width) for _ in range(blocks)])
        self.norm_out = norm(width)
        self.conv_out = nn.Conv2d(width, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(F.silu(self.norm_out(self.blocks(self.conv_in(x)))))


class QuantizedDecodeGraph(nn.Module):
    """Export-safe decode of a quantizer + conv decoder: ids [B, h, w] (int64 in [0, K); [B, h, w, levels] for a
    residual quantizer) -> the quantizer's `export_vectors` -> decoder -> outputs clamped to [-1, 1]."""

    def __init__(self, quantizer: nn.Module, decoder: nn.Module):
        super().__init__()
        self.quantizer, self.decoder = quantizer, decoder
        self.input_dim = int(quantizer.input_dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        b, h, w = ids.shape[:3]
        flat = ids.reshape(b * h * w, *ids.shape[3:])
        z = self.quantizer.export_vectors(flat).reshape(b, h, w, self.input_dim).permute(0, 3, 1, 2)
        return self.decoder(z).clamp(-1.0, 1.0)

