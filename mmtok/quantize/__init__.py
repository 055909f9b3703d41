"""The codebook layer: quantizers sharing the QuantizeOutput contract, and nearest-code search.

`mmtok.quantize.config` (the recipe schemas) is torch-free; everything else here loads torch, so the names
below are imported on first use (reading a recipe must not import torch).
"""
import importlib

_LAZY = {
    "QuantizeOutput": "mmtok.quantize.base", "FSQ": "mmtok.quantize.fsq", "LFQ": "mmtok.quantize.lfq",
    "nearest": "mmtok.quantize.lookup", "ResidualVQ": "mmtok.quantize.residual", "code_counts": "mmtok.quantize.stats",
    "usage_stats": "mmtok.quantize.stats", "VectorQuantizer": "mmtok.quantize.vq",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_quantizer(input_dim: int, cfg, *, entropy_loss: bool = False):
    """The quantizer module for a validated quantizer config (its `kind` picks the class from QUANTIZERS)."""
    from mmtok.quantize import fsq, lfq, residual, vq  # noqa: F401  (each registers its kind)
    from mmtok.registry import QUANTIZERS

    return QUANTIZERS.get(cfg.kind)(input_dim, cfg, entropy_loss=entropy_loss)


__all__ = [*_LAZY, "build_quantizer"]
