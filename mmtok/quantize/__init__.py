"""The codebook layer: quantizers sharing the QuantizeOutput contract, and nearest-code search."""
from mmtok.quantize.base import QuantizeOutput
from mmtok.quantize.fsq import FSQ
from mmtok.quantize.lfq import LFQ
from mmtok.quantize.lookup import nearest
from mmtok.quantize.residual import ResidualVQ
from mmtok.quantize.stats import code_counts, usage_stats
from mmtok.quantize.vq import VectorQuantizer
from mmtok.registry import QUANTIZERS


def build_quantizer(input_dim: int, cfg, *, entropy_loss: bool = False):
    """The quantizer module for a validated quantizer config (its `kind` picks the class from QUANTIZERS)."""
    return QUANTIZERS.get(cfg.kind)(input_dim, cfg, entropy_loss=entropy_loss)


__all__ = ["FSQ", "LFQ", "QuantizeOutput", "ResidualVQ", "VectorQuantizer", "build_quantizer", "code_counts",
           "nearest", "usage_stats"]
