"""The VQGAN family's recipe schemas and presets (torch-free): a taming / LlamaGen conv encoder and decoder around
a quantizer. The model is mmtok.families.vqgan.model; its objective is the image objective (pixel losses,
LPIPS, PatchGAN) plus the quantizer's terms."""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field

from mmtok.families import Family, register
from mmtok.families.conv_image import ConvImageConfig
from mmtok.losses.config import QUANTIZER_DEFAULTS, QUANTIZER_TERMS, ImageLossConfig
from mmtok.quantize.config import AnyQuantizerConfig, QuantizerConfig


class VQGANConfig(ConvImageConfig):
    """A taming/LlamaGen-style conv encoder and decoder around a vector quantizer."""

    family: Literal["vqgan"] = "vqgan"
    quantizer: AnyQuantizerConfig = Field(default_factory=QuantizerConfig)


class VQGANLoss(ImageLossConfig):
    TERMS: ClassVar[tuple[str, ...]] = ImageLossConfig.IMAGE_TERMS + QUANTIZER_TERMS
    DEFAULTS: ClassVar[dict[str, float]] = {"l2": 1.0, **QUANTIZER_DEFAULTS}


def _preset(**fields) -> dict:
    return {**fields, "quantizer": {"kind": "vq", **fields["quantizer"]}}  # a recipe's other kind replaces it


_LLAMAGEN_VQ = dict(ch=128, num_res_blocks=2, z_channels=256, mid_attn=True,
                    quantizer=dict(codebook_size=16384, dim=8, l2_norm=True))

PRESETS = {
    # LlamaGen VQ-16: f16, 16384 codes of dim 8, l2-normalised; attention at the deepest level (16x16 at 256px).
    "llamagen_vq16": _preset(resolution=256, ch_mult=[1, 1, 2, 2, 4], attn_resolutions=[16], **_LLAMAGEN_VQ),
    # LlamaGen VQ-8: f8, same codebook; attention at the deepest level (32x32 at 256px).
    "llamagen_vq8": _preset(resolution=256, ch_mult=[1, 2, 2, 4], attn_resolutions=[32], **_LLAMAGEN_VQ),
    # The classic taming VQGAN f16 with 1024 codes of dim 256 (no l2 normalisation): the "before" picture. Its
    # quant_conv / post_quant_conv are 1x1 convs of width 256 around the codes: projection "linear".
    "taming_f16_1024": _preset(resolution=256, ch=128, ch_mult=[1, 1, 2, 2, 4], num_res_blocks=2,
                               attn_resolutions=[16], z_channels=256, mid_attn=True,
                               quantizer=dict(codebook_size=1024, dim=256, l2_norm=False, projection="linear")),
    # Sized for a few CPU minutes at 64x64: f8, 1024 cosine codes of dim 8, no attention. Narrow at full
    # resolution (16 channels) and wide at the bottom (128): full-resolution convs dominate CPU time.
    "small_f8_1024": _preset(resolution=64, ch=16, ch_mult=[1, 2, 4, 8], num_res_blocks=1, attn_resolutions=[],
                             z_channels=64, mid_attn=False, quantizer=dict(codebook_size=1024, dim=8, l2_norm=True)),
    # Tiny presets for tests: a forward/backward in well under a second on CPU.
    "test_f4": _preset(resolution=16, ch=8, ch_mult=[1, 2, 2], num_res_blocks=1, attn_resolutions=[], z_channels=8,
                       mid_attn=False, quantizer=dict(codebook_size=32, dim=4, l2_norm=True)),
    "test_f2_attn": _preset(resolution=16, ch=8, ch_mult=[1, 2], num_res_blocks=1, attn_resolutions=[8],
                            z_channels=8, mid_attn=True, quantizer=dict(codebook_size=16, dim=8, l2_norm=False)),
}

FAMILY = register(Family(name="vqgan", modality="image", model_config=VQGANConfig, loss_config=VQGANLoss,
                         model="mmtok.families.vqgan.model:VQGAN",
                         objective="mmtok.modalities.image.objective:ImageObjective", presets=PRESETS,
                         formats={name: f"mmtok.families.vqgan.interop:read_{name}"
                                  for name in ("taming", "llamagen", "janus")},
                         hf_export="mmtok.families.vqgan.interop:to_janus"))
