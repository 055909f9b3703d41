"""The semantic discrete encoding family (MUSE-VL's SDE), torch-free: recipe schemas and presets.

z_q = Quant(proj(teacher patch features) + pixel_encoder(x)) on one token grid; a semantic decoder from z_q is
trained with `semantic` = 1 - cos to the frozen teacher's patch features, and the VQGAN conv pixel decoder with
the image objective's pixel terms (L1/L2, LPIPS, PatchGAN with warm-up). The model is mmtok.families.sde.model.
"""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from mmtok.families import Family, register
from mmtok.families.conv_image import ConvImageConfig
from mmtok.losses.config import QUANTIZER_DEFAULTS, QUANTIZER_TERMS, ImageLossConfig
from mmtok.quantize.config import AnyQuantizerConfig, QuantizerConfig
from mmtok.recipe_errors import FieldProblem
from mmtok.teachers.config import TeacherConfig


class SDEConfig(ConvImageConfig):
    """A VQGAN (pixel encoder, quantizer, pixel decoder) whose latent also carries a frozen teacher's projected
    patch features, plus a semantic decoder trained to give the teacher's features back from the codes."""

    family: Literal["sde"] = "sde"
    quantizer: AnyQuantizerConfig = Field(default_factory=QuantizerConfig)
    teacher: TeacherConfig = Field(default_factory=lambda: TeacherConfig(preset="efficientnet_lite0"),
                                   description="the frozen teacher (a preset name or fields; mmtok.teachers)")
    projection: Literal["linear", "mlp"] = Field("linear", description="teacher features -> latent width: one "
                                                 "linear map, or Linear-Tanh-Linear ('mlp')")
    semantic_width: int = Field(128, ge=8, description="channels of the semantic decoder")
    semantic_layers: int = Field(2, ge=0, description="residual conv blocks of the semantic decoder")

    @model_validator(mode="after")
    def _three_channels(self):
        if self.in_channels != 3:
            raise FieldProblem("in_channels", f"the teacher takes RGB images; in_channels must be 3, not "
                               f"{self.in_channels}")
        return self


class SDELoss(ImageLossConfig):
    TERMS: ClassVar[tuple[str, ...]] = ImageLossConfig.IMAGE_TERMS + QUANTIZER_TERMS + ("semantic",)
    DEFAULTS: ClassVar[dict[str, float]] = {"l2": 1.0, "semantic": 1.0, **QUANTIZER_DEFAULTS}


def _preset(**fields) -> dict:
    return {**fields, "quantizer": {"kind": "vq", **fields["quantizer"]}}  # a recipe's other kind replaces it


PRESETS = {
    # Paper scale (MUSE-VL): 256 px, f16 LlamaGen conv net, 32768 cosine codes of dim 8, a SigLIP-B/16 teacher at
    # 256 px (16 x 16 patches = the token grid), Linear-Tanh-Linear projection. The SigLIP weights are copied in by
    # hand (mmtok doctor lists the asset).
    "sde_siglip_256": _preset(resolution=256, ch=128, ch_mult=[1, 1, 2, 2, 4], num_res_blocks=2,
                              attn_resolutions=[16], z_channels=256, mid_attn=True,
                              quantizer=dict(codebook_size=32768, dim=8, l2_norm=True),
                              teacher={"preset": "siglip_b16_256"}, projection="mlp", semantic_width=512,
                              semantic_layers=4),
    # CPU quick start: the small_f8_1024 VQGAN at 64 px (8 x 8 tokens) and the offline EfficientNet-Lite0 teacher
    # at 128 px, whose /16 stage (112 channels) is 8 x 8 = the token grid.
    "sde_small_f8_1024": _preset(resolution=64, ch=16, ch_mult=[1, 2, 4, 8], num_res_blocks=1, attn_resolutions=[],
                                 z_channels=64, mid_attn=False,
                                 quantizer=dict(codebook_size=1024, dim=8, l2_norm=True),
                                 teacher={"preset": "efficientnet_lite0", "resolution": 128}, projection="linear",
                                 semantic_width=64, semantic_layers=2),
    # Tiny presets for tests (offline, seconds on CPU): EfficientNet-Lite0 at 32 px. test_sde: its /8 stage is
    # 4 x 4 = the token grid; test_sde_resize: its /16 stage (2 x 2) is interpolated to the 4 x 4 grid.
    "test_sde": _preset(resolution=16, ch=8, ch_mult=[1, 2, 2], num_res_blocks=1, attn_resolutions=[], z_channels=8,
                        mid_attn=False, quantizer=dict(codebook_size=32, dim=4, l2_norm=True),
                        teacher={"preset": "efficientnet_lite0", "resolution": 32, "layer": -3},
                        projection="linear", semantic_width=16, semantic_layers=1),
    "test_sde_resize": _preset(resolution=16, ch=8, ch_mult=[1, 2, 2], num_res_blocks=1, attn_resolutions=[],
                               z_channels=8, mid_attn=False, quantizer=dict(codebook_size=16, dim=8, l2_norm=True),
                               teacher={"preset": "efficientnet_lite0", "resolution": 32, "layer": -2},
                               projection="mlp", semantic_width=16, semantic_layers=0),
}

FAMILY = register(Family(name="sde", modality="image", model_config=SDEConfig, loss_config=SDELoss,
                         model="mmtok.families.sde.model:SDE", objective="mmtok.modalities.image.objective:SemanticImageObjective",
                         presets=PRESETS))
