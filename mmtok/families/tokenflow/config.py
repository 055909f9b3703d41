"""The TokenFlow family's recipe schemas and presets (torch-free).

TokenFlow (Qu et al. 2024) encodes an image twice: a semantic encoder (initialised from a frozen teacher, e.g.
CLIP / SigLIP) projected by Linear-Tanh-Linear to a low dimension, and a VQGAN-style pixel encoder projected to
a lower one. Two l2-normalised codebooks of the same size K share ONE index per token, chosen by
argmin(w_sem d_sem + w_pix d_pix). A small semantic decoder is trained to give the teacher's patch features
back from the semantic codes (1 - cos); the conv pixel decoder gives pixels back from the codes. The model is
mmtok.families.tokenflow.model; the objective is the image objective (l1/l2, LPIPS, PatchGAN) with
semantic_cosine in validation (mmtok.modalities.image.objective.SemanticImageObjective).

`scales` (optional) turns on TokenFlow's multi-scale residual quantization (VAR-style, one shared id per position
per scale; mmtok.families.tokenflow.multiscale); null keeps the single-scale model exactly as it was.
"""
from __future__ import annotations

from typing import ClassVar, Literal, Optional

from pydantic import Field, model_validator

from mmtok.families import Family, register
from mmtok.families.conv_image import ConvImageConfig, scales_problem
from mmtok.losses.config import ImageLossConfig
from mmtok.quantize.config import restart_below_needs_ema
from mmtok.recipe_errors import FieldProblem
from mmtok.schema import Strict
from mmtok.teachers.config import TeacherConfig


class DualCodebookConfig(Strict):
    """Two l2-normalised codebooks of `codebook_size` codes (semantic `sem_dim`, pixel `pix_dim` dims), one index."""

    codebook_size: int = Field(32768, ge=2, description="codes K in each codebook (they share one index)")
    sem_dim: int = Field(32, ge=1, description="semantic code dimension (TokenFlow: 32)")
    pix_dim: int = Field(8, ge=1, description="pixel code dimension (TokenFlow: 8)")
    sem_weight: float = Field(1.0, ge=0, description="weight of the semantic distance in the shared argmin")
    pix_weight: float = Field(1.0, ge=0, description="weight w of the pixel distance: argmin d_sem + w d_pix")
    ema: bool = Field(False, description="update codes by an EMA of their assigned inputs, not by gradient")
    ema_decay: float = Field(0.99, gt=0, lt=1)
    ema_eps: float = Field(1e-5, gt=0, description="Laplace smoothing of EMA cluster sizes")
    kmeans_init: bool = Field(False, description="initialise both codebooks by k-means on the first batch, in the "
                              "joint space the shared index searches")
    kmeans_iters: int = Field(10, ge=1)
    restart_after: int = Field(0, ge=0, description="reset codes unused for this many steps to random batch "
                               "features (both codebooks at once; 0: never)")
    restart_below: float = Field(0.0, ge=0, lt=1, description="with ema: also reset, every step, codes whose EMA "
                                 "count is below this fraction of the mean (as the vq quantizer's; 0: off)")

    @model_validator(mode="after")
    def _restart_below_needs_ema(self):
        return restart_below_needs_ema(self)

    @model_validator(mode="after")
    def _some_weight(self):
        if self.sem_weight == 0 and self.pix_weight == 0:
            raise FieldProblem("pix_weight", "sem_weight and pix_weight are both 0: the shared index would be "
                               "arbitrary; give at least one a positive weight")
        return self

    # what the image objective's metric suite and the export read (a single shared index)
    num_codebooks: ClassVar[int] = 1
    kind: ClassVar[str] = "dual"
    id_layout: ClassVar[str] = "shared_index"  # one id indexes the semantic and the pixel codebook
    l2_norm: ClassVar[bool] = True

    @property
    def dim(self) -> int:
        """The dimension of a code: semantic and pixel parts together."""
        return self.sem_dim + self.pix_dim


class TokenFlowConfig(ConvImageConfig):
    """Semantic encoder (from a teacher) + pixel encoder, dual codebook with a shared index, two decoders."""

    family: Literal["tokenflow"] = "tokenflow"
    in_channels: Literal[3] = Field(3, description="RGB (the teacher takes RGB)")
    # the pixel branch is the taming / LlamaGen conv encoder and decoder of ConvImageConfig
    # semantic branch
    teacher: TeacherConfig = Field(default_factory=lambda: TeacherConfig(preset="efficientnet_lite0"),
                                   description="the frozen teacher: semantic target (and encoder initialisation)")
    semantic_encoder: Literal["copy", "head"] = Field(
        "copy", description="'copy': a trainable copy of the teacher (TokenFlow); 'head': the frozen teacher "
        "and only a trainable projection head (cheaper)")
    sem_hidden: int = Field(0, ge=0, description="hidden width of the Linear-Tanh-Linear projection "
                            "(0: the teacher's width)")
    sem_decoder_width: int = Field(256, ge=8, description="channels of the semantic decoder's res blocks")
    sem_decoder_blocks: int = Field(2, ge=1, description="res blocks of the semantic decoder")
    pixel_decoder_input: Literal["pixel", "both"] = Field(
        "pixel", description="what the pixel decoder reads: the pixel codes, or the semantic and pixel codes "
        "concatenated")
    quantizer: DualCodebookConfig = Field(default_factory=DualCodebookConfig)
    # multi-scale residual quantization (TokenFlow / VAR)
    scales: Optional[list[int]] = Field(
        None, description="multi-scale residual quantization: token-map sides, coarse to fine, ending at the "
        "token grid (e.g. [1, 2, 4, 8] for an 8x8 grid; ids are [B, sum(s*s)]); null: one scale (the grid)")
    scale_drop: float = Field(
        0.1, ge=0, le=1, description="with scales: probability per training step of leaving out one scale, "
        "chosen uniformly among all but the first (TokenFlow: 0.1); never in evaluation; 0: off")

    @model_validator(mode="after")
    def _check_scales(self):
        s, g = self.scales, self.grid
        if s is None:
            return self
        if not s:
            raise FieldProblem("scales", f"scales is empty: give the sides coarse to fine, ending at the token grid "
                               f"{g} (e.g. [1, 2, {g}]), or null for a single scale")
        problem = scales_problem(s, self)
        if problem:
            raise FieldProblem("scales", problem)
        return self


class TokenFlowLoss(ImageLossConfig):
    """codebook / commitment: both branches summed (per-branch values are logged as stats); semantic: 1 - cos
    between the semantic decoder's output and the frozen teacher's patch features."""

    TERMS: ClassVar[tuple[str, ...]] = ImageLossConfig.IMAGE_TERMS + ("codebook", "commitment", "semantic")
    DEFAULTS: ClassVar[dict[str, float]] = {"l2": 1.0, "codebook": 1.0, "commitment": 0.25, "semantic": 1.0}


_PAPER_PIXEL = dict(ch=128, ch_mult=[1, 1, 2, 2, 4], num_res_blocks=2, attn_resolutions=[16], mid_attn=True,
                    z_channels=256)

PRESETS = {
    # TokenFlow's single-scale shape at 256 px: f16 pixel encoder (16 x 16 tokens), SigLIP-B/16 at 256 as the
    # teacher (16 x 16 patches), 32768 codes, 32 semantic + 8 pixel dims. SigLIP's weights are not shipped: copy
    # them in by hand (mmtok doctor lists the asset). Features of the second-to-last block, no final norm, as
    # TokenFlow takes hidden_states[-2].
    "tokenflow_siglip_256": dict(resolution=256, **_PAPER_PIXEL,
                                 teacher={"preset": "siglip_b16_256", "layer": -2, "norm": False},
                                 semantic_encoder="copy", sem_decoder_width=512, sem_decoder_blocks=4,
                                 quantizer=dict(codebook_size=32768, sem_dim=32, pix_dim=8)),
    # TokenFlow's multi-scale residual shape. The paper's 224-px tokenizer (CLIP-B/16 teacher, 14 x 14 grid)
    # uses scales 1, 2, 4, 6, 8, 10, 12, 14; mmtok has no CLIP-B/16-224 teacher preset, so this keeps
    # tokenflow_siglip_256's SigLIP-B/16 at 256 (16 x 16 grid) and takes the scale list TokenFlow's code uses on
    # its 16 x 16 grids (1, 2, 4, 6, 8, 10, 12, 14, 16): 833 ids per image.
    "tokenflow_siglip_256_multiscale": dict(resolution=256, **_PAPER_PIXEL,
                                            teacher={"preset": "siglip_b16_256", "layer": -2, "norm": False},
                                            semantic_encoder="copy", sem_decoder_width=512, sem_decoder_blocks=4,
                                            scales=[1, 2, 4, 6, 8, 10, 12, 14, 16], scale_drop=0.1,
                                            quantizer=dict(codebook_size=32768, sem_dim=32, pix_dim=8)),
    # Sized for a few CPU minutes: 64 px, f8 pixel branch (8 x 8 tokens), 1024 codes, the offline
    # EfficientNet-Lite0 teacher at 128 px (its /16 stage is 8 x 8 x 112), frozen, with a trainable head.
    "tokenflow_small_f8_1024": dict(resolution=64, ch=16, ch_mult=[1, 2, 4, 8], num_res_blocks=1,
                                    attn_resolutions=[], mid_attn=False, z_channels=64,
                                    teacher={"preset": "efficientnet_lite0", "resolution": 128},
                                    semantic_encoder="head", sem_hidden=128, sem_decoder_width=64,
                                    sem_decoder_blocks=1, quantizer=dict(codebook_size=1024, sem_dim=32, pix_dim=8)),
    # Tiny presets for tests (offline: the shipped EfficientNet-Lite0 weights at 64 px give a 4 x 4 grid).
    "test_tokenflow_copy": dict(resolution=16, ch=8, ch_mult=[1, 2, 2], num_res_blocks=1, attn_resolutions=[],
                                mid_attn=False, z_channels=8, teacher={"preset": "efficientnet_lite0",
                                                                       "resolution": 64},
                                semantic_encoder="copy", sem_hidden=16, sem_decoder_width=16, sem_decoder_blocks=1,
                                quantizer=dict(codebook_size=32, sem_dim=8, pix_dim=4)),
    "test_tokenflow_head": dict(resolution=16, ch=8, ch_mult=[1, 2, 2], num_res_blocks=1, attn_resolutions=[],
                                mid_attn=False, z_channels=8, teacher={"preset": "efficientnet_lite0",
                                                                       "resolution": 64},
                                semantic_encoder="head", sem_hidden=16, sem_decoder_width=16, sem_decoder_blocks=1,
                                pixel_decoder_input="both",
                                quantizer=dict(codebook_size=16, sem_dim=8, pix_dim=4, pix_weight=0.5, ema=True,
                                               kmeans_init=True, restart_after=2)),
    # multi-scale residual quantization on the 4 x 4 grid: ids [B, 1 + 4 + 16]
    "test_tokenflow_multiscale": dict(resolution=16, ch=8, ch_mult=[1, 2, 2], num_res_blocks=1,
                                      attn_resolutions=[], mid_attn=False, z_channels=8,
                                      teacher={"preset": "efficientnet_lite0", "resolution": 64},
                                      semantic_encoder="head", sem_hidden=16, sem_decoder_width=16,
                                      sem_decoder_blocks=1, pixel_decoder_input="both", scales=[1, 2, 4],
                                      quantizer=dict(codebook_size=32, sem_dim=8, pix_dim=4, pix_weight=0.5)),
}

FAMILY = register(Family(name="tokenflow", modality="image", model_config=TokenFlowConfig,
                         loss_config=TokenFlowLoss, model="mmtok.families.tokenflow.model:TokenFlow",
                         objective="mmtok.modalities.image.objective:SemanticImageObjective", presets=PRESETS))
