"""Quantizer schemas (`model.quantizer` of a recipe), a tagged union on `kind`. Torch-free."""
from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Discriminator, Field, Tag, model_validator

from mmtok.recipe_errors import FieldProblem
from mmtok.schema import Strict


def restart_below_needs_ema(cfg):
    """A codebook config's `restart_below` reads EMA counts: refused without `ema`."""
    if cfg.restart_below > 0 and not cfg.ema:
        raise FieldProblem("restart_below", "restart_below reads the EMA assignment counts; set ema: true "
                           "or restart_below: 0 (restart_after works with either)")
    return cfg


class QuantizerConfig(Strict):
    """A vector quantizer over `dim`-dimensional codes (the encoder output is projected in and out)."""

    kind: Literal["vq"] = "vq"
    codebook_size: int = Field(1024, ge=2, description="number of codes K")
    dim: int = Field(8, ge=1, description="code dimension (LlamaGen uses 8)")
    l2_norm: bool = Field(True, description="l2-normalise inputs and codes (cosine distance)")
    code_output: Literal["normalized", "raw"] = Field("normalized", description="with l2_norm, the code vector the "
                                                       "decoder receives: the l2-normalised code (LlamaGen, ViT-VQGAN)"
                                                       " or the raw codebook row (DAC: only the search is on "
                                                       "normalised vectors; needs ema: false)")
    projection: Literal["auto", "linear"] = Field("auto", description="maps between the encoder's width and the "
                                                   "code space: 'auto' a Linear each way only when they differ, "
                                                   "'linear' always (taming's quant_conv / post_quant_conv)")
    ema: bool = Field(False, description="update codes by an EMA of their assigned inputs, not by gradient")
    ema_decay: float = Field(0.99, gt=0, lt=1)
    ema_eps: float = Field(1e-5, gt=0, description="Laplace smoothing of EMA cluster sizes")
    kmeans_init: bool = Field(False, description="initialise codes by k-means on the first batch")
    kmeans_iters: int = Field(10, ge=1)
    restart_after: int = Field(0, ge=0, description="reset codes unused for this many steps (0: never)")
    restart_below: float = Field(0.0, ge=0, lt=1, description="with ema: also reset, every step, codes whose EMA "
                                 "assignment count is below this fraction of the mean count (EnCodec's "
                                 "threshold_ema_dead_code, relative to the batch; 0: off)")
    gradient: Literal["ste", "rotation"] = Field("ste", description="straight-through or rotation trick")
    entropy_temperature: float = Field(0.01, gt=0, description="softmax temperature of the entropy loss")

    @property
    def num_codebooks(self) -> int:
        return 1

    @property
    def id_layout(self) -> str:
        """The token spec layout of this quantizer's ids (mmtok.contract.LAYOUTS)."""
        return "single"

    @model_validator(mode="after")
    def _codebook_rules_fit(self):  # code_output raw and restart_below both need the right codebook kind
        if self.code_output == "raw" and (self.ema or not self.l2_norm):
            raise FieldProblem("code_output", "code_output 'raw' (DAC's factorised codes) is a learned codebook "
                               "searched on l2-normalised vectors: set l2_norm: true and ema: false")
        return restart_below_needs_ema(self)


MAX_IMPLICIT_CODES = 2**20  # FSQ / LFQ: code statistics keep one counter per code


class ResidualVQConfig(QuantizerConfig):
    """Residual VQ (SoundStream / EnCodec / DAC): `levels` vector quantizers in sequence, each quantizing what
    the previous ones left. Every VQ field above applies to each level (each level has its own codebook of
    `codebook_size` codes and its own projections); ids gain a trailing level dimension."""

    kind: Literal["rvq"] = "rvq"
    levels: int = Field(8, ge=1, description="number of residual codebooks (n_q)")
    quantizer_dropout: float = Field(0.0, ge=0, le=1, description="probability that a training batch uses only "
                                     "the first n ~ U[1, levels] levels (bitrate scalability, as DAC/EnCodec)")
    dropout_per: Literal["batch", "sample"] = Field("batch", description="quantizer dropout draws one n per batch "
                                                    "(EnCodec) or one per sample, along the first dimension (DAC)")

    @property
    def num_codebooks(self) -> int:
        return self.levels

    @property
    def id_layout(self) -> str:
        return "residual"  # ids [..., levels]

    def level_config(self) -> QuantizerConfig:
        """The plain VQ config each level is built from."""
        return QuantizerConfig(**self.model_dump(exclude={"kind", "levels", "quantizer_dropout", "dropout_per"}))


class ImplicitCodebook(Strict):
    """What FSQ and LFQ share: one implicit codebook (a grid of values, nothing learned), single-id layout, no
    l2-normalisation."""

    @property
    def num_codebooks(self) -> int:
        return 1

    @property
    def id_layout(self) -> str:
        return "single"

    @property
    def l2_norm(self) -> bool:
        return False


class FSQConfig(ImplicitCodebook):
    """Finite scalar quantization (Mentzer et al. 2023): each of len(levels) channels is bounded and rounded
    to levels[i] values; the implicit codebook is their product grid. No codebook loss, nothing learned."""

    kind: Literal["fsq"] = "fsq"
    levels: list[Annotated[int, Field(ge=2)]] = Field([8, 5, 5, 5], min_length=1,
                                                      description="values per channel; codebook = their product")

    @property
    def codebook_size(self) -> int:
        n = 1
        for level in self.levels:
            n *= level
        return n

    @property
    def dim(self) -> int:
        return len(self.levels)


    @model_validator(mode="after")
    def _not_too_many_codes(self):
        if self.codebook_size > MAX_IMPLICIT_CODES:
            raise FieldProblem("levels", f"levels {self.levels} make {self.codebook_size} codes; at most "
                               f"{MAX_IMPLICIT_CODES} (2**20) are supported")
        return self


class LFQConfig(ImplicitCodebook):
    """Lookup-free quantization (MAGVIT-v2): `dim` channels, each quantized to its sign (+-codebook_scale);
    the implicit codebook has 2**dim codes."""

    kind: Literal["lfq"] = "lfq"
    dim: int = Field(10, ge=1, le=20, description="bits per token; codebook_size = 2**dim")
    codebook_scale: float = Field(1.0, gt=0, description="codes are +-codebook_scale per channel")
    entropy_temperature: float = Field(0.01, gt=0, description="temperature of the entropy loss's code softmax")

    @property
    def codebook_size(self) -> int:
        return 2**self.dim



def _quantizer_kind(value: Any) -> Any:
    """The union tag of a quantizer section: its `kind`, "vq" when left out."""
    return value.get("kind", "vq") if isinstance(value, dict) else getattr(value, "kind", None)


# A tagged union on `kind`; a section without `kind` is a plain VQ (as before the union existed).
AnyQuantizerConfig = Annotated[
    Union[Annotated[QuantizerConfig, Tag("vq")], Annotated[ResidualVQConfig, Tag("rvq")],
          Annotated[FSQConfig, Tag("fsq")], Annotated[LFQConfig, Tag("lfq")]],
    Discriminator(_quantizer_kind, custom_error_type="quantizer_kind",
                  custom_error_message="quantizer kind must be one of 'vq', 'rvq', 'fsq', 'lfq'"),
]
