"""The codebook layer: quantizers sharing the QuantizeOutput contract, and nearest-code search."""
from mmtok.quantize.base import QuantizeOutput
from mmtok.quantize.lookup import nearest
from mmtok.quantize.stats import code_counts, usage_stats
from mmtok.quantize.vq import VectorQuantizer

__all__ = ["QuantizeOutput", "VectorQuantizer", "code_counts", "nearest", "usage_stats"]
