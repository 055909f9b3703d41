"""What the conv image families share (torch-free): the taming / LlamaGen conv encoder-decoder schema and the
token-spec fields of a square image on an f x f token grid. VQGAN, SDE and TokenFlow build on these."""
from __future__ import annotations

from typing import Optional

from pydantic import Field, model_validator

from mmtok.recipe_errors import FieldProblem
from mmtok.schema import Strict


class ConvImageConfig(Strict):
    """A conv encoder / decoder over square images: len(ch_mult) - 1 stride-2 levels (downsample f)."""

    family: str  # each family narrows it to its Literal tag
    preset: Optional[str] = Field(None, description="named preset the fields start from")
    resolution: int = Field(256, ge=8, description="training image size (square)")
    min_crop_fraction: float = Field(1.0, gt=0, le=1, description="training crops of shards and folders: the "
                                     "shorter side is resized to a size drawn in [R, R / f], then an R x R crop is "
                                     "cut (1: the shorter side resized to R; LlamaGen / ADM: 0.8)")
    in_channels: int = Field(3, ge=1)
    ch: int = Field(128, ge=8, description="base channel count")
    ch_mult: list[int] = Field([1, 1, 2, 2, 4], min_length=1, description="one entry per level")
    num_res_blocks: int = Field(2, ge=1)
    attn_resolutions: list[int] = Field([16], description="feature-map sizes that get self-attention")
    mid_attn: bool = Field(True, description="self-attention in the middle blocks")
    z_channels: int = Field(256, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)

    @property
    def grid(self) -> int:
        """Tokens per side."""
        return self.resolution // self.downsample

    def conv_kwargs(self) -> dict:
        """The keyword arguments of mmtok.nn.conv.Encoder / Decoder (besides in / out channels)."""
        return dict(ch=self.ch, ch_mult=self.ch_mult, num_res_blocks=self.num_res_blocks,
                    attn_resolutions=self.attn_resolutions, mid_attn=self.mid_attn, z_channels=self.z_channels,
                    resolution=self.resolution, dropout=self.dropout)

    @model_validator(mode="after")
    def _resolution_divisible(self):
        if self.resolution % self.downsample:
            raise FieldProblem("resolution", f"image size {self.resolution} is not divisible by the downsample "
                               f"factor {self.downsample} (len(ch_mult) = {len(self.ch_mult)}); use a multiple of "
                               f"{self.downsample}")
        return self


def scales_problem(scales: list[int], cfg: ConvImageConfig, min_scales: int = 1) -> str | None:
    """Why `scales` (sides of a multi-scale residual quantizer's token maps, coarse to fine) do not fit `cfg`'s token
    grid, or None: at least `min_scales` of them, positive, strictly increasing, the last one the grid."""
    g = cfg.grid
    if len(scales) < min_scales:
        return f"give at least {min_scales} scales, coarse to fine, ending at the token grid {g}"
    if any(v < 1 for v in scales):
        return "scales must be positive"
    if any(b <= a for a, b in zip(scales, scales[1:])):
        return "scales must be strictly increasing (coarse to fine)"
    if scales[-1] != g:
        return (f"the last scale must be the token grid {g} (resolution {cfg.resolution} / downsample "
                f"{cfg.downsample}), not {scales[-1]}")
    return None


def image_grid_meta(cfg: ConvImageConfig, quantizer) -> dict:
    """The token-spec fields (mmtok.contract.TokenSpec) of images [C, R, R] in [-1, 1] on a g x g grid with
    one id per cell from `quantizer` (needs kind, id_layout, codebook_size, num_codebooks, dim, l2_norm); add `family`."""
    g = cfg.grid
    return {
        "modality": "image",
        "input_size": [cfg.in_channels, cfg.resolution, cfg.resolution],
        "value_range": [-1.0, 1.0],
        "token_grid": [g, g],
        "tokens_per_sample": g * g,
        "downsample": cfg.downsample,
        "num_codebooks": quantizer.num_codebooks,
        "codebook_size": quantizer.codebook_size,
        "codebook_dim": quantizer.dim,
        "quantizer": quantizer.kind,
        "layout": quantizer.id_layout,
        "l2_norm": quantizer.l2_norm,
        "flattening": "row-major (raster) over the token grid",
    }
