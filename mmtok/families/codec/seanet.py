"""SEANet encoder and decoder (EnCodec / DAC shape) over waveforms [B, C, T].

Encoder: conv(k) -> one block per stride s (residual units with dilations base**j, activation, strided conv of
kernel 2s doubling the channels) -> optional sequence model (LSTM or transformer, with a skip) -> activation ->
conv(k) to `latent_dim`: [B, C, T] -> [B, latent_dim, T / prod(strides)] for T a multiple of prod(strides).
Decoder: the mirror image (transposed strided convs, halving the channels) ending in tanh, so outputs lie in
[-1, 1]. Every conv is weight-normalised (both codecs do); activations are ELU (EnCodec) or Snake (DAC).
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


def conv1d(c_in: int, c_out: int, kernel: int, *, stride: int = 1, dilation: int = 1) -> nn.Module:
    """Weight-normalised Conv1d that keeps length T (stride 1) or maps it to T / stride (T a multiple of stride)."""
    if stride == 1:
        pad = dilation * (kernel - 1) // 2
        return weight_norm(nn.Conv1d(c_in, c_out, kernel, dilation=dilation, padding=pad))
    return weight_norm(nn.Conv1d(c_in, c_out, 2 * stride, stride=stride, padding=math.ceil(stride / 2)))


def conv_transpose1d(c_in: int, c_out: int, stride: int, exact: bool = True) -> nn.Module:
    """Weight-normalised ConvTranspose1d mapping length L to L * stride exactly (`exact`), or to L * stride - 1 for
    an odd stride as DAC's code does."""
    return weight_norm(nn.ConvTranspose1d(c_in, c_out, 2 * stride, stride=stride, padding=math.ceil(stride / 2),
                                          output_padding=stride % 2 if exact else 0))


class Snake(nn.Module):
    """Snake activation (Ziyin et al. 2020, DAC): x + sin(alpha x)^2 / alpha, one learned alpha per channel."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(1, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + (self.alpha + 1e-9).reciprocal() * torch.sin(self.alpha * x).pow(2)


def activation(kind: str, channels: int) -> nn.Module:
    return Snake(channels) if kind == "snake" else nn.ELU()


class ResidualUnit(nn.Module):
    """x + conv1x1(act(conv_k,dilated(act(x)))) at constant channels and length."""

    def __init__(self, channels: int, kernel: int, dilation: int, act: str):
        super().__init__()
        hidden = max(1, channels // 2) if act == "elu" else channels  # EnCodec halves inside, DAC does not
        self.block = nn.Sequential(activation(act, channels), conv1d(channels, hidden, kernel, dilation=dilation),
                                   activation(act, hidden), conv1d(hidden, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


def _units(channels: int, n: int, kernel: int, base: int, act: str) -> list[nn.Module]:
    return [ResidualUnit(channels, kernel, base**j, act) for j in range(n)]


class SequenceModel(nn.Module):
    """A sequence model over [B, C, L] with a skip connection: a stacked LSTM (EnCodec's SLSTM) or a transformer
    encoder (bidirectional, no positional encoding: the convs around it carry position)."""

    def __init__(self, kind: str, channels: int, layers: int, heads: int):
        super().__init__()
        self.kind = kind
        if kind == "lstm":
            self.net = nn.LSTM(channels, channels, num_layers=layers, batch_first=True)
        else:
            layer = nn.TransformerEncoderLayer(channels, heads, dim_feedforward=2 * channels, dropout=0.0,
                                               batch_first=True, norm_first=True)
            self.net = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.transpose(1, 2)
        y = self.net(h)[0] if self.kind == "lstm" else self.net(h)
        return (y + h).transpose(1, 2)


class SEANetEncoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        ch, act = cfg.ch, cfg.activation
        layers: list[nn.Module] = [conv1d(cfg.channels, ch, cfg.kernel_size)]
        for s in cfg.strides:
            layers += _units(ch, cfg.res_units, cfg.residual_kernel_size, cfg.dilation_base, act)
            layers += [activation(act, ch), conv1d(ch, 2 * ch, 2 * s, stride=s)]
            ch *= 2
        if cfg.bottleneck != "none":
            layers.append(SequenceModel(cfg.bottleneck, ch, cfg.bottleneck_layers, cfg.bottleneck_heads))
        layers += [activation(act, ch), conv1d(ch, cfg.latent_dim, cfg.latent_kernel_size or cfg.kernel_size)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, T] -> [B, latent_dim, T / hop]."""
        return self.net(x)


class SEANetDecoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        act = cfg.activation
        ch = cfg.decoder_width
        layers: list[nn.Module] = [conv1d(cfg.latent_dim, ch, cfg.kernel_size)]
        if cfg.bottleneck != "none":
            layers.append(SequenceModel(cfg.bottleneck, ch, cfg.bottleneck_layers, cfg.bottleneck_heads))
        for s in reversed(cfg.strides):
            layers += [activation(act, ch), conv_transpose1d(ch, ch // 2, s, exact=cfg.upsampling == "exact")]
            ch //= 2
            layers += _units(ch, cfg.res_units, cfg.residual_kernel_size, cfg.dilation_base, act)
        layers += [activation(act, ch), conv1d(ch, cfg.channels, cfg.kernel_size), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.hop = math.prod(cfg.strides)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """[B, latent_dim, L] -> [B, C, L * hop] in [-1, 1] (zero-padded at the end where DAC's upsampling is short)."""
        out = self.net(z)
        short = z.shape[-1] * self.hop - out.shape[-1]
        return torch.nn.functional.pad(out, (0, short)) if short else out
