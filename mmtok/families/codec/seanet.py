"""SEANet encoder and decoder (EnCodec / DAC shape) over waveforms [B, C, T].

Padding: "zeros" pads every conv with zeros split evenly (DAC); "encodec" pads as EnCodec does (reflection, the
odd sample on the left, everything on the left when causal; transposed convs trimmed the same way).

Encoder: conv(k) -> one block per stride s (residual units with dilations base**j, activation, strided conv of
kernel 2s doubling the channels) -> optional sequence model (LSTM or transformer, with a skip) -> activation ->
conv(k) to `latent_dim`: [B, C, T] -> [B, latent_dim, T / prod(strides)] for T a multiple of prod(strides).
Decoder: the mirror image (transposed strided convs, halving the channels) ending in tanh, so outputs lie in
[-1, 1]. Every conv is weight-normalised (both codecs do); activations are ELU (EnCodec) or Snake (DAC).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


class EnCodecConv1d(nn.Conv1d):
    """A Conv1d padded as EnCodec pads: reflection, total (kernel - 1) * dilation + 1 - stride, the odd sample on the
    left (all of it on the left when `causal`), plus what completes the last frame on the right."""

    def __init__(self, *args, causal: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.causal = causal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s = (self.kernel_size[0] - 1) * self.dilation[0] + 1, self.stride[0]  # effective kernel, stride
        total = k - s
        frames = math.ceil((x.shape[-1] - k + total) / s + 1) - 1
        extra = frames * s + k - total - x.shape[-1]
        right = 0 if self.causal else total // 2
        return super().forward(_reflect(x, total - right, right + extra))


def _reflect(x: torch.Tensor, left: int, right: int) -> torch.Tensor:
    """Reflection padding that also works on inputs no longer than the padding (zeros appended first, as EnCodec)."""
    extra = max(0, max(left, right) - x.shape[-1] + 1)
    if extra:
        x = F.pad(x, (0, extra))
    out = F.pad(x, (left, right), mode="reflect")
    return out[..., : out.shape[-1] - extra] if extra else out


class EnCodecConvTranspose1d(nn.ConvTranspose1d):
    """A ConvTranspose1d trimmed as EnCodec trims: kernel - stride samples, the odd one on the left (all on the right
    when `causal`)."""

    def __init__(self, *args, causal: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.causal = causal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        total = self.kernel_size[0] - self.stride[0]
        right = total if self.causal else total // 2
        return y[..., total - right: y.shape[-1] - right]


def conv1d(c_in: int, c_out: int, kernel: int, *, stride: int = 1, dilation: int = 1, padding: str = "zeros",
           causal: bool = False) -> nn.Module:
    """Weight-normalised Conv1d that keeps length T (stride 1) or maps it to T / stride (T a multiple of stride);
    a strided conv has kernel 2 * stride. `padding` "zeros" or "encodec" (module docstring)."""
    k = kernel if stride == 1 else 2 * stride
    if padding == "encodec":
        return weight_norm(EnCodecConv1d(c_in, c_out, k, stride=stride, dilation=dilation, causal=causal))
    pad = dilation * (kernel - 1) // 2 if stride == 1 else math.ceil(stride / 2)
    return weight_norm(nn.Conv1d(c_in, c_out, k, stride=stride, dilation=dilation, padding=pad))


def conv_transpose1d(c_in: int, c_out: int, stride: int, exact: bool = True, padding: str = "zeros",
                     causal: bool = False) -> nn.Module:
    """Weight-normalised ConvTranspose1d (kernel 2 * stride) mapping length L to L * stride exactly (`exact`), or to
    L * stride - 1 for an odd stride as DAC's code does; "encodec" padding trims as EnCodec does (always exact)."""
    if padding == "encodec":
        return weight_norm(EnCodecConvTranspose1d(c_in, c_out, 2 * stride, stride=stride, causal=causal))
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
    """skip(x) + conv1x1(act(conv_k,dilated(act(x)))) at constant channels and length; skip is the identity, or a
    weight-normalised 1x1 conv with `conv_shortcut` (EnCodec's use_conv_shortcut)."""

    def __init__(self, channels: int, kernel: int, dilation: int, act: str, *, conv: dict,
                 conv_shortcut: bool = False):
        super().__init__()
        hidden = max(1, channels // 2) if act == "elu" else channels  # EnCodec halves inside, DAC does not
        self.block = nn.Sequential(activation(act, channels),
                                   conv1d(channels, hidden, kernel, dilation=dilation, **conv),
                                   activation(act, hidden), conv1d(hidden, channels, 1, **conv))
        self.shortcut = conv1d(channels, channels, 1, **conv) if conv_shortcut else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x if self.shortcut is None else self.shortcut(x)) + self.block(x)


def _units(channels: int, cfg) -> list[nn.Module]:
    conv = dict(padding=cfg.padding, causal=cfg.causal)
    return [ResidualUnit(channels, cfg.residual_kernel_size, cfg.dilation_base**j, cfg.activation, conv=conv,
                         conv_shortcut=cfg.conv_shortcut) for j in range(cfg.res_units)]


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
        conv = dict(padding=cfg.padding, causal=cfg.causal)
        layers: list[nn.Module] = [conv1d(cfg.channels, ch, cfg.kernel_size, **conv)]
        for s in cfg.strides:
            layers += _units(ch, cfg)
            layers += [activation(act, ch), conv1d(ch, 2 * ch, 2 * s, stride=s, **conv)]
            ch *= 2
        if cfg.bottleneck != "none":
            layers.append(SequenceModel(cfg.bottleneck, ch, cfg.bottleneck_layers, cfg.bottleneck_heads))
        layers += [activation(act, ch), conv1d(ch, cfg.latent_dim, cfg.latent_kernel_size or cfg.kernel_size, **conv)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, T] -> [B, latent_dim, T / hop]."""
        return self.net(x)


class SEANetDecoder(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        act = cfg.activation
        ch = cfg.decoder_width
        conv = dict(padding=cfg.padding, causal=cfg.causal)
        layers: list[nn.Module] = [conv1d(cfg.latent_dim, ch, cfg.kernel_size, **conv)]
        if cfg.bottleneck != "none":
            layers.append(SequenceModel(cfg.bottleneck, ch, cfg.bottleneck_layers, cfg.bottleneck_heads))
        for s in reversed(cfg.strides):
            layers += [activation(act, ch), conv_transpose1d(ch, ch // 2, s, exact=cfg.upsampling == "exact", **conv)]
            ch //= 2
            layers += _units(ch, cfg)
        layers += [activation(act, ch), conv1d(ch, cfg.channels, cfg.kernel_size, **conv)]
        layers += [nn.Tanh()] if cfg.final_tanh else []
        self.net = nn.Sequential(*layers)
        self.hop = math.prod(cfg.strides)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """[B, latent_dim, L] -> [B, C, L * hop] in [-1, 1] (zero-padded at the end where DAC's upsampling is short)."""
        out = self.net(z)
        short = z.shape[-1] * self.hop - out.shape[-1]
        return torch.nn.functional.pad(out, (0, short)) if short else out
