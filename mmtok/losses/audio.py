"""Spectral distances between waveforms, as DAC defines them (its training losses and evaluation metrics):

- multi-scale mel distance (`MelDistance`): for each window w (hop w/4, periodic Hann, torch.stft) with its number of
  mel bands (Slaney mel filterbank from librosa), sum over scales of
  L1(log10(max(mel_x, eps) ** pow), log10(max(mel_y, eps) ** pow)) (+ mag_weight * L1(mel_x, mel_y));
- multi-resolution STFT distance (`STFTDistance`): for each window, L1 between log10(max(|X|, eps) ** 2) plus L1
  between magnitudes.
Inputs are waveforms [B, C, T] in [-1, 1]; every channel counts as its own signal; the math runs in fp32.
`si_sdr` is the scale-invariant SDR (dB) per signal.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch import nn


@lru_cache(maxsize=64)
def _mel_basis(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None) -> np.ndarray:
    import librosa.filters

    return librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax).astype(np.float32)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float = 0.0,
                   fmax: float | None = None) -> torch.Tensor:
    """The Slaney-style mel filterbank [n_mels, n_fft // 2 + 1] (librosa.filters.mel, as DAC uses)."""
    return torch.from_numpy(_mel_basis(sample_rate, n_fft, n_mels, fmin, fmax).copy())


def magnitude(x: torch.Tensor, window: int) -> torch.Tensor:
    """|STFT| [N, window // 2 + 1, frames] of waveforms [B, C, T] (N = B * C): hop window / 4, periodic Hann,
    centred with reflection padding (zero padding when the signal is shorter than the pad); at least 1e-6."""
    flat = x.float().reshape(-1, x.shape[-1])
    mode = "reflect" if flat.shape[-1] > window // 2 else "constant"
    win = torch.hann_window(window, device=x.device, dtype=torch.float32)
    spec = torch.stft(flat, window, hop_length=window // 4, window=win, center=True, pad_mode=mode,
                      return_complex=True)
    # |z| through a clamped power: exact zeros (digital silence) would make abs()'s gradient NaN
    return torch.view_as_real(spec).pow(2).sum(-1).clamp_min(1e-12).sqrt()


class MelDistance(nn.Module):
    """Multi-scale mel distance between waveforms x and y [B, C, T] (module docstring); a scalar, mean over
    signals, frames and bands, summed over scales."""

    def __init__(self, sample_rate: int, windows=(32, 64, 128, 256, 512, 1024, 2048),
                 n_mels=(5, 10, 20, 40, 80, 160, 320), clamp_eps: float = 1e-5, pow: float = 1.0,
                 mag_weight: float = 0.0):
        super().__init__()
        self.windows, self.clamp_eps, self.pow, self.mag_weight = list(windows), clamp_eps, pow, mag_weight
        for w, m in zip(windows, n_mels):
            self.register_buffer(f"fb_{w}", mel_filterbank(sample_rate, w, m), persistent=False)

    def mel(self, x: torch.Tensor, window: int) -> torch.Tensor:
        """Mel magnitudes [N, n_mels, frames] of waveforms [B, C, T] at one window."""
        return torch.matmul(getattr(self, f"fb_{window}"), magnitude(x, window))

    def per_signal(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The distance of each signal pair, [B * C]."""
        total = x.new_zeros(x.shape[0] * x.shape[1], dtype=torch.float32)
        for w in self.windows:
            mx, my = self.mel(x, w), self.mel(y, w)
            lx = torch.log10(mx.clamp_min(self.clamp_eps).pow(self.pow))
            ly = torch.log10(my.clamp_min(self.clamp_eps).pow(self.pow))
            total = total + (lx - ly).abs().mean((1, 2))
            if self.mag_weight:
                total = total + self.mag_weight * (mx - my).abs().mean((1, 2))
        return total

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.per_signal(x, y).mean()


class STFTDistance(nn.Module):
    """Multi-resolution STFT distance between waveforms [B, C, T] (module docstring): a scalar, summed over
    windows."""

    def __init__(self, windows=(2048, 512), clamp_eps: float = 1e-5):
        super().__init__()
        self.windows, self.clamp_eps = list(windows), clamp_eps

    def per_signal(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        total = x.new_zeros(x.shape[0] * x.shape[1], dtype=torch.float32)
        for w in self.windows:
            sx, sy = magnitude(x, w), magnitude(y, w)
            log = torch.log10(sx.clamp_min(self.clamp_eps).pow(2)) - torch.log10(sy.clamp_min(self.clamp_eps).pow(2))
            total = total + log.abs().mean((1, 2)) + (sx - sy).abs().mean((1, 2))
        return total

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.per_signal(x, y).mean()


def si_sdr(estimate: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale-invariant SDR in dB of each signal, [B * C], for waveforms [B, C, T] (zero-mean, as torchmetrics'
    scale_invariant_signal_distortion_ratio)."""
    from torchmetrics.functional.audio import scale_invariant_signal_distortion_ratio

    e = estimate.float().reshape(-1, estimate.shape[-1])
    t = target.float().reshape(-1, target.shape[-1])
    return scale_invariant_signal_distortion_ratio(e, t, zero_mean=True)
