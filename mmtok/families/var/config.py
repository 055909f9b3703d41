"""The VAR family's recipe schemas and presets (torch-free).

VAR's tokenizer (FoundationVision/VAR models/vqvae.py, models/quant.py): a taming-style conv encoder / decoder (ch 160
in the release, ch_mult 1, 1, 2, 2, 4, two res blocks, attention at the deepest level and in the middle, z 32),
3x3 quant_conv / post_quant_conv, and ONE codebook of 4096 x 32 shared by ten scales 1, 2, 3, 4, 5, 6, 8, 10, 13, 16.
Each scale area-downsamples the residual, takes the nearest codes (plain squared L2), bicubic-upsamples them to the
full grid, refines them with a 3x3 conv phi (phi(h) = (1 - r) h + r conv(h), r = 0.5; four phis partially shared over
the scales), adds them to f_hat and subtracts them from the residual. The loss is the mean over scales of
beta ||sg(f_hat_s) - f||^2 + ||f_hat_s - sg(f)||^2 (beta 0.25), f_hat passed straight through to the decoder. The
model is mmtok.families.var.model; the quantizer mmtok.families.var.quant.
"""
from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from mmtok.families import Family, register
from mmtok.families.conv_image import ConvImageConfig, scales_problem
from mmtok.losses.config import QUANTIZER_DEFAULTS, QUANTIZER_TERMS, ImageLossConfig
from mmtok.recipe_errors import FieldProblem
from mmtok.schema import Strict

VAR_SCALES = [1, 2, 3, 4, 5, 6, 8, 10, 13, 16]


class VARQuantizerConfig(Strict):
    """One codebook shared by every scale, phi refinement convs, dead-code revival."""

    kind: Literal["var"] = "var"
    codebook_size: int = Field(4096, ge=2, description="codes in the one codebook every scale shares")
    scales: list[int] = Field(default_factory=lambda: list(VAR_SCALES),
                              description="sides of the token maps, coarse to fine; the last is the token grid")
    phi_ratio: float = Field(0.5, ge=0, le=1, description="phi(h) = (1 - r) h + r conv3x3(h); 0: no phi")
    phi_count: int = Field(4, ge=0, description="phi convs shared over the scales (VAR: 4; 0: one per scale)")
    init_std: float = Field(0.02, gt=0, description="codes drawn from a truncated normal of this std (VAR's eini)")
    kmeans_init: bool = Field(False, description="codes from k-means over the first batch's residual pyramid")
    restart_after: int = Field(0, ge=0, description="a code no scale used for this many steps is reset to a random "
                               "residual row of the batch (0: never, as VAR)")
    revive_per_scale: bool = Field(True, description="a revived code is drawn from a scale picked uniformly, then a "
                                   "residual row of it (coarse scales get codes too); false: from all rows alike")
    entropy_temperature: float = Field(0.01, gt=0, description="temperature of the entropy loss's code softmax "
                                       "(the loss weight `entropy` turns the term on; not in VAR)")
    entropy_diversity: float = Field(1.0, gt=0, description="weight of the entropy term's batch part (each scale's "
                                     "rows spread over the codebook) against its per-row part (each row sure of its "
                                     "code)")
    scale_drop: float = Field(0.0, ge=0, le=1, description="probability per training step of leaving out one scale "
                              "(not the first); 0 in VAR")

    @property
    def num_codebooks(self) -> int:
        return 1

    @property
    def restart_below(self) -> float:
        """No EMA counts to restart rarely used codes by (mmtok.quantize.vq.dead_codes reads it)."""
        return 0.0

    @property
    def id_layout(self) -> str:
        return "multi_scale"


class VARConfig(ConvImageConfig):
    """VAR's VQ-VAE: conv encoder, 3x3 quant convs, multi-scale residual quantizer, conv decoder."""

    family: Literal["var"] = "var"
    z_channels: int = Field(32, ge=1, description="code dimension (the codebook's width)")
    quantizer: VARQuantizerConfig = Field(default_factory=VARQuantizerConfig)

    @model_validator(mode="after")
    def _check_scales(self):
        problem = scales_problem(self.quantizer.scales, self, min_scales=2)
        if problem:
            raise FieldProblem("quantizer.scales", problem)
        return self


class VARLoss(ImageLossConfig):
    TERMS: ClassVar[tuple[str, ...]] = ImageLossConfig.IMAGE_TERMS + QUANTIZER_TERMS
    DEFAULTS: ClassVar[dict[str, float]] = {"l2": 1.0, **QUANTIZER_DEFAULTS}


PRESETS = {
    # VAR's released tokenizer (vae_ch160v4096z32.pth): f16 at 256 px, ten scales, 4096 x 32 codes.
    "var_paper": dict(resolution=256, ch=160, ch_mult=[1, 1, 2, 2, 4], num_res_blocks=2, attn_resolutions=[16],
                      mid_attn=True, z_channels=32, quantizer=dict(codebook_size=4096, scales=VAR_SCALES)),
    # A few CPU minutes at 64 px: f8 (an 8 x 8 grid), scales 1, 2, 3, 4, 6, 8 (130 ids), 1024 codes of dim 16,
    # narrow at full resolution like small_f8_1024, no attention.
    "var_small": dict(resolution=64, ch=16, ch_mult=[1, 2, 4, 8], num_res_blocks=1, attn_resolutions=[],
                      mid_attn=False, z_channels=16,
                      quantizer=dict(codebook_size=1024, scales=[1, 2, 3, 4, 6, 8], kmeans_init=True,
                                     restart_after=50)),
    # Tiny, for tests.
    "test_var": dict(resolution=16, ch=8, ch_mult=[1, 2, 2], num_res_blocks=1, attn_resolutions=[], mid_attn=False,
                     z_channels=4, quantizer=dict(codebook_size=16, scales=[1, 2, 4], restart_after=5)),
}

FAMILY = register(Family(name="var", modality="image", model_config=VARConfig, loss_config=VARLoss,
                         model="mmtok.families.var.model:VAR",
                         objective="mmtok.modalities.image.objective:ImageObjective", presets=PRESETS,
                         formats={"var": "mmtok.families.var.interop:read_var"}))
