"""Evaluation metrics as torchmetrics.Metric subclasses (states summed across ranks) plus functional twins.

Image ranges: FrechetInceptionDistance.update takes [-1, 1] (the tokenizer's own range); PSNR, SSIM and
LPIPSMetric take [0, 1]; the LPIPS network from `load_lpips` (the training loss) takes [-1, 1].
"""
from mmtok.metrics.codebook import CodebookUsage, count_codes, usage_stats
from mmtok.metrics.fid import (
    FrechetInceptionDistance,
    InceptionFeatures,
    feature_stats,
    frechet_distance,
    load_inception,
    load_stats,
    load_stats_meta,
    save_stats,
)
from mmtok.metrics.image import (
    PSNR,
    SSIM,
    LPIPSMetric,
    LPIPSNetwork,
    load_lpips,
    lpips_available,
    psnr,
    ssim,
)

__all__ = [
    "CodebookUsage",
    "FrechetInceptionDistance",
    "InceptionFeatures",
    "LPIPSMetric",
    "LPIPSNetwork",
    "PSNR",
    "SSIM",
    "count_codes",
    "feature_stats",
    "frechet_distance",
    "load_inception",
    "load_lpips",
    "load_stats",
    "load_stats_meta",
    "lpips_available",
    "psnr",
    "save_stats",
    "ssim",
    "usage_stats",
]
