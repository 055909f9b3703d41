"""Waveform discriminators and their losses: HiFi-GAN's multi-period discriminator (MPD), EnCodec's multi-scale
STFT discriminator (MS-STFT), least-squares or hinge adversarial losses and L1 feature matching.

Every discriminator maps waveforms [B, C, T] in [-1, 1] to a list, one entry per sub-discriminator (period or
STFT scale), of (logits, [intermediate feature maps]). Convs are weight-normalised, activations LeakyReLU.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

Outputs = list[tuple[torch.Tensor, list[torch.Tensor]]]


class PeriodDiscriminator(nn.Module):
    """HiFi-GAN: the waveform folded into [B, C, T / p, p] columns, 2-D convs along time (kernel 5, stride 3)."""

    def __init__(self, period: int, in_channels: int = 1, channels: int = 32):
        super().__init__()
        self.period = period
        widths = [channels, 4 * channels, 16 * channels, 32 * channels, 32 * channels]
        layers, c = [], in_channels
        for i, w in enumerate(widths):
            stride = 3 if i < len(widths) - 1 else 1
            layers.append(weight_norm(nn.Conv2d(c, w, (5, 1), (stride, 1), padding=(2, 0))))
            c = w
        self.convs = nn.ModuleList(layers)
        self.post = weight_norm(nn.Conv2d(c, 1, (3, 1), padding=(1, 0)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        b, c, t = x.shape
        pad = (-t) % self.period
        if pad:
            x = F.pad(x, (0, pad), mode="reflect" if pad < t else "constant")
        h = x.reshape(b, c, -1, self.period)
        features = []
        for conv in self.convs:
            h = F.leaky_relu(conv(h), 0.1)
            features.append(h)
        return self.post(h), features


class MultiPeriodDiscriminator(nn.Module):
    def __init__(self, periods=(2, 3, 5, 7, 11), in_channels: int = 1, channels: int = 32):
        super().__init__()
        self.discriminators = nn.ModuleList(PeriodDiscriminator(p, in_channels, channels) for p in periods)

    def forward(self, x: torch.Tensor) -> Outputs:
        return [d(x) for d in self.discriminators]


class STFTDiscriminator(nn.Module):
    """EnCodec: the complex STFT (real and imaginary parts as channels, [B, 2C, frames, bins]) through 2-D convs
    with time dilations 1, 2, 4 and stride 2 along frequency."""

    def __init__(self, window: int, in_channels: int = 1, channels: int = 32):
        super().__init__()
        self.window = window
        self.register_buffer("win", torch.hann_window(window), persistent=False)
        c, layers = channels, [weight_norm(nn.Conv2d(2 * in_channels, channels, (3, 9), padding=(1, 4)))]
        for dilation in (1, 2, 4):
            layers.append(weight_norm(nn.Conv2d(c, channels, (3, 9), stride=(1, 2), dilation=(dilation, 1),
                                                padding=(dilation, 4))))
        layers.append(weight_norm(nn.Conv2d(channels, channels, (3, 3), padding=(1, 1))))
        self.convs = nn.ModuleList(layers)
        self.post = weight_norm(nn.Conv2d(channels, 1, (3, 3), padding=(1, 1)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        b, c, t = x.shape
        spec = torch.stft(x.float().reshape(b * c, t), self.window, hop_length=self.window // 4, window=self.win,
                          center=True, pad_mode="constant", normalized=True, return_complex=True)
        h = torch.view_as_real(spec).reshape(b, c, *spec.shape[1:], 2)  # [B, C, bins, frames, 2]
        h = h.permute(0, 1, 4, 3, 2).reshape(b, 2 * c, spec.shape[2], spec.shape[1])  # [B, 2C, frames, bins]
        features = []
        for conv in self.convs:
            h = F.leaky_relu(conv(h), 0.2)
            features.append(h)
        return self.post(h), features


class MultiScaleSTFTDiscriminator(nn.Module):
    def __init__(self, windows=(2048, 1024, 512, 256, 128), in_channels: int = 1, channels: int = 32):
        super().__init__()
        self.discriminators = nn.ModuleList(STFTDiscriminator(w, in_channels, channels) for w in windows)

    def forward(self, x: torch.Tensor) -> Outputs:
        return [d(x) for d in self.discriminators]


def d_loss(real: Outputs, fake: Outputs, kind: str) -> torch.Tensor:
    """Discriminator loss averaged over sub-discriminators: least squares (1 - D(real))^2 + D(fake)^2, or hinge
    relu(1 - D(real)) + relu(1 + D(fake))."""
    total = 0.0
    for (lr, _), (lf, _) in zip(real, fake):
        lr, lf = lr.float(), lf.float()
        if kind == "hinge":
            total = total + F.relu(1 - lr).mean() + F.relu(1 + lf).mean()
        else:
            total = total + (1 - lr).pow(2).mean() + lf.pow(2).mean()
    return total / max(1, len(real))


def g_loss(fake: Outputs, kind: str) -> torch.Tensor:
    """Generator adversarial loss averaged over sub-discriminators: (1 - D(fake))^2, or hinge relu(1 - D(fake))."""
    total = 0.0
    for lf, _ in fake:
        lf = lf.float()
        total = total + (F.relu(1 - lf).mean() if kind == "hinge" else (1 - lf).pow(2).mean())
    return total / max(1, len(fake))


def feature_matching(real: Outputs, fake: Outputs) -> torch.Tensor:
    """Mean over every layer of every sub-discriminator of L1(fake features, real features) / mean |real features|
    (EnCodec's normalised feature matching; the real features are targets, detached)."""
    total, n = 0.0, 0
    for (_, fr), (_, ff) in zip(real, fake):
        for a, b in zip(fr, ff):
            a = a.detach().float()
            total = total + (b.float() - a).abs().mean() / a.abs().mean().clamp_min(1e-8)
            n += 1
    return total / max(1, n)
