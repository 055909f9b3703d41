"""Loss schemas (the recipe's `loss` section). Torch-free.

Every family's loss section is a `LossConfig`: `weights`, one map from term name to weight, plus the knobs of
its loss modules in their own subsections. A family declares the terms it can emit (`TERMS`) and their default
weights (`DEFAULTS`); a recipe's `weights` update those defaults, and a name that is not a term is an error at
load with a did-you-mean. A term with weight 0 is not computed (a GAN with weight 0 builds no discriminator).
"""
from __future__ import annotations

from typing import ClassVar, Literal, Optional

from pydantic import Field, field_validator, model_validator

from mmtok.recipe_errors import FieldProblem
from mmtok.registry import did_you_mean
from mmtok.schema import Strict


class LossConfig(Strict):
    """Base of a family's loss section."""

    TERMS: ClassVar[tuple[str, ...]] = ()  # every term the family can emit (and weight)
    DEFAULTS: ClassVar[dict[str, float]] = {}  # default weights; terms left out weigh 0

    weights: dict[str, float] = Field(default_factory=dict, validate_default=True,
                                      description="loss term -> weight (family defaults, "
                                      "updated by the recipe's); 0 switches a term off")

    @field_validator("weights", mode="before")
    @classmethod
    def _with_defaults(cls, value):
        if value is None:
            value = {}
        if not isinstance(value, dict):
            return value  # pydantic reports the type error
        return {**cls.DEFAULTS, **value}

    @model_validator(mode="after")
    def _known_terms(self):
        for name, weight in self.weights.items():
            if name not in self.TERMS:
                raise FieldProblem(f"weights.{name}", f"unknown loss term {name!r} "
                                   f"({did_you_mean(name, self.TERMS, list_known=False)})")
            if weight < 0:
                raise FieldProblem(f"weights.{name}", f"a loss weight must be >= 0, got {weight}")
        return self

    def weight(self, name: str) -> float:
        """The weight of `name` (0 when the recipe and the defaults leave it out)."""
        return float(self.weights.get(name, 0.0))


class PerceptualConfig(Strict):
    """LPIPS as a training loss (weight: `loss.weights.perceptual`)."""

    net: Literal["vgg", "alex"] = "vgg"
    backbone: Optional[str] = Field(None, description="path to the backbone's ImageNet weights (.pth); default: "
                                    "the asset search (mmtok doctor)")
    allow_untrained: bool = Field(False, description="run with a random backbone (meaningless; tests only)")


class GANConfig(Strict):
    """The PatchGAN adversary (weights: `loss.weights.gan` for the generator, `loss.weights.lecam`)."""

    loss: Literal["hinge", "non_saturating"] = "hinge"
    adaptive: bool = Field(False, description="taming's adaptive weight ||g_rec|| / ||g_gan||")
    adaptive_max: float = Field(1e4, gt=0)
    start_step: int = Field(0, ge=0, description="step at which the discriminator starts training")
    warmup_steps: int = Field(0, ge=0, description="steps D trains alone before G sees its loss")
    lecam_decay: float = Field(0.999, gt=0, lt=1)
    ndf: int = Field(64, ge=8)
    n_layers: int = Field(3, ge=1)
    lr: Optional[float] = Field(None, gt=0, description="discriminator learning rate (default: optim.lr)")


class ImageLossConfig(LossConfig):
    """Pixel reconstruction (l1, l2), LPIPS (perceptual) and a PatchGAN (gan, lecam) for image families; a
    family adds its own terms to TERMS (e.g. the quantizer's codebook / commitment / entropy)."""

    IMAGE_TERMS: ClassVar[tuple[str, ...]] = ("l1", "l2", "perceptual", "gan", "lecam")

    perceptual: PerceptualConfig = Field(default_factory=PerceptualConfig)
    gan: GANConfig = Field(default_factory=GANConfig)


QUANTIZER_TERMS = ("codebook", "commitment", "entropy")  # what mmtok's quantizers emit (see mmtok.quantize)
QUANTIZER_DEFAULTS = {"codebook": 1.0, "commitment": 0.25}
