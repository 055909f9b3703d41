"""Pixel and perceptual image metrics, synced across ranks: PSNR, SSIM, LPIPS.

Ranges: PSNR, SSIM and LPIPSMetric take images [N, C, H, W] in [0, 1] (clamp/quantise reconstructions
before); `load_lpips` returns the raw LPIPS network, which takes [-1, 1] (as the training loss uses it).

- PSNR: per image, 10 log10(1 / MSE) with data_range 1.0, MSE over C, H, W; the metric is the mean of the
  per-image values (not the PSNR of the pooled MSE). Identical images give +inf.
- SSIM: Gaussian window 11, sigma 1.5, K1 0.01, K2 0.03, data_range 1.0, population (not sample)
  covariance, averaged over the valid (unpadded) region and over channels, then over images: the same as
  skimage `structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  data_range=1.0, channel_axis=...)`. Needs H, W >= 11. (torchmetrics' SSIM differs: it averages over
  the reflection-padded border too and clamps variances, about 0.02 off skimage on 32 x 32 noise.)
- LPIPS (v0.1, "vgg" or "alex"): the `lpips` package's calibrated linear heads (shipped with it) on a
  torchvision ImageNet backbone resolved through `mmtok.assets` ("lpips-vgg" / "lpips-alex"). There is no
  fallback to an untrained backbone: when the file is missing the constructor raises AssetError and the
  caller reports LPIPS as unavailable (`lpips_available` says so without raising).
"""
from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric

from mmtok.teachers.lpips import LPIPS_NETS, LPIPSNetwork, load_lpips, lpips_available

__all__ = ["LPIPS_NETS", "LPIPSMetric", "LPIPSNetwork", "PSNR", "SSIM", "load_lpips", "lpips_available", "psnr",
           "ssim"]


def _check_pair(preds: Tensor, target: Tensor) -> None:
    if preds.shape != target.shape or preds.ndim != 4:
        raise ValueError(
            f"expected two [N, C, H, W] batches of equal shape, got {tuple(preds.shape)} and {tuple(target.shape)}"
        )


def psnr(preds: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """Per-image PSNR in dB, [N] float64, for images [N, C, H, W] (MSE over C, H, W)."""
    _check_pair(preds, target)
    mse = (preds.double() - target.double()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(data_range**2 / mse)


def _gaussian_taps(sigma: float = 1.5, truncate: float = 3.5, dtype=torch.float64) -> Tensor:
    radius = int(truncate * sigma + 0.5)  # as scipy.ndimage.gaussian_filter: 5 -> 11 taps at sigma 1.5
    x = torch.arange(-radius, radius + 1, dtype=dtype)
    w = torch.exp(-0.5 * (x / sigma) ** 2)
    return w / w.sum()


def ssim(preds: Tensor, target: Tensor, data_range: float = 1.0) -> Tensor:
    """Per-image SSIM, [N] float64, for images [N, C, H, W] with H, W >= 11 (see the module docstring).

    Local statistics come from a separable 11-tap Gaussian (sigma 1.5) over the valid region only (no
    padding): the same numbers skimage gets by filtering with reflection and cropping 5 pixels per side."""
    _check_pair(preds, target)
    if min(preds.shape[-2:]) < 11:
        raise ValueError(f"SSIM needs images of at least 11 x 11, got {tuple(preds.shape[-2:])}")
    x, y = preds.double(), target.double()
    n, c = x.shape[:2]
    taps = _gaussian_taps().to(x.device)
    k = taps.numel()

    def blur(t: Tensor) -> Tensor:
        t = F.conv2d(t, taps.view(1, 1, 1, k).expand(t.shape[1], 1, 1, k), groups=t.shape[1])
        return F.conv2d(t, taps.view(1, 1, k, 1).expand(t.shape[1], 1, k, 1), groups=t.shape[1])

    mu_x, mu_y, xx, yy, xy = blur(torch.cat([x, y, x * x, y * y, x * y], dim=1)).split(c, dim=1)
    var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y  # population (not sample) covariance
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s.reshape(n, -1).mean(1)


class _MeanOfPerImage(Metric):
    """Mean over images of a per-image score: float64 sum + image count, both summed across ranks."""

    is_differentiable = False
    full_state_update = False

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def _score(self, preds: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def update(self, preds: Tensor, target: Tensor) -> None:
        with torch.no_grad():
            scores = self._score(preds, target).to(torch.float64)
        self.total = self.total + scores.sum()
        self.count = self.count + scores.numel()

    def compute(self) -> Tensor:
        return self.total / self.count  # nan when nothing was added


class PSNR(_MeanOfPerImage):
    """Mean of per-image PSNR (dB) over all images on all ranks; update(preds, target) in [0, 1]."""

    higher_is_better = True

    def _score(self, preds: Tensor, target: Tensor) -> Tensor:
        return psnr(preds, target)


class SSIM(_MeanOfPerImage):
    """Mean of per-image SSIM over all images on all ranks; update(preds, target) in [0, 1]."""

    higher_is_better = True

    def _score(self, preds: Tensor, target: Tensor) -> Tensor:
        return ssim(preds, target)


# ---------------------------------------------------------------------------------------------------------
# LPIPS (the network and its backbone loading live in mmtok.teachers.lpips, shared with the perceptual loss)


class LPIPSMetric(Metric):
    """Mean LPIPS distance over all images on all ranks; update(preds, target) in [0, 1] ([N, 3, H, W]).

    Raises AssetError at construction when the backbone is missing: report LPIPS as unavailable."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, net: str = "vgg", weights_path: str | os.PathLike | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        self.net_name = net
        self.lpips = load_lpips(net, weights_path)
        self.add_state("total", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros((), dtype=torch.long), dist_reduce_fx="sum")

    def train(self, mode: bool = True) -> "LPIPSMetric":
        super().train(mode)
        self.lpips.eval()
        return self

    def update(self, preds: Tensor, target: Tensor) -> None:
        _check_pair(preds, target)
        with torch.no_grad():
            d = self.lpips(preds.float() * 2 - 1, target.float() * 2 - 1).to(torch.float64)
        self.total = self.total + d.sum()
        self.count = self.count + d.numel()

    def compute(self) -> Tensor:
        return self.total / self.count
