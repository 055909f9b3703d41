"""Recipes: the pydantic schema, YAML loading, `--set` overrides and did-you-mean error reports.

`load(source, overrides)` is the one way a recipe becomes a validated `Recipe`:
YAML (a shipped recipe name or a path) -> overrides applied -> model preset expanded -> validated.
Unknown keys are rejected; every problem is reported at once with its dotted path.
This module imports no torch, so reading and checking a recipe is instant.
"""
from __future__ import annotations

import copy
import importlib.resources
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import (BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag, ValidationError,
                      model_validator)

from mmtok.errors import RecipeError
from mmtok.recipe_errors import FieldProblem, choices_hint, describe_errors as _describe_errors, yaml_where


class Strict(BaseModel):
    """Every recipe section: unknown keys are errors, and every float must be finite (no inf / nan)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# ----------------------------------------------------------------------------------------------- model


class QuantizerConfig(Strict):
    """A vector quantizer over `dim`-dimensional codes (the encoder output is projected in and out)."""

    kind: Literal["vq"] = "vq"
    codebook_size: int = Field(1024, ge=2, description="number of codes K")
    dim: int = Field(8, ge=1, description="code dimension (LlamaGen uses 8)")
    l2_norm: bool = Field(True, description="l2-normalise inputs and codes (cosine distance)")
    ema: bool = Field(False, description="update codes by an EMA of their assigned inputs, not by gradient")
    ema_decay: float = Field(0.99, gt=0, lt=1)
    ema_eps: float = Field(1e-5, gt=0, description="Laplace smoothing of EMA cluster sizes")
    kmeans_init: bool = Field(False, description="initialise codes by k-means on the first batch")
    kmeans_iters: int = Field(10, ge=1)
    restart_after: int = Field(0, ge=0, description="reset codes unused for this many steps (0: never)")
    gradient: Literal["ste", "rotation"] = Field("ste", description="straight-through or rotation trick")
    entropy_temperature: float = Field(0.01, gt=0, description="softmax temperature of the entropy loss")

    @property
    def num_codebooks(self) -> int:
        return 1


MAX_IMPLICIT_CODES = 2**20  # FSQ / LFQ: code statistics keep one counter per code


class ResidualVQConfig(QuantizerConfig):
    """Residual VQ (SoundStream / EnCodec / DAC): `levels` vector quantizers in sequence, each quantizing what
    the previous ones left. Every VQ field above applies to each level (each level has its own codebook of
    `codebook_size` codes and its own projections); ids gain a trailing level dimension."""

    kind: Literal["rvq"] = "rvq"
    levels: int = Field(8, ge=1, description="number of residual codebooks (n_q)")
    quantizer_dropout: float = Field(0.0, ge=0, le=1, description="probability that a training batch uses only "
                                     "the first n ~ U[1, levels] levels (bitrate scalability, as DAC/EnCodec)")

    @property
    def num_codebooks(self) -> int:
        return self.levels

    def level_config(self) -> QuantizerConfig:
        """The plain VQ config each level is built from."""
        return QuantizerConfig(**self.model_dump(exclude={"kind", "levels", "quantizer_dropout"}))


class FSQConfig(Strict):
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

    @property
    def num_codebooks(self) -> int:
        return 1

    @property
    def l2_norm(self) -> bool:
        return False

    @model_validator(mode="after")
    def _not_too_many_codes(self):
        if self.codebook_size > MAX_IMPLICIT_CODES:
            raise FieldProblem("levels", f"levels {self.levels} make {self.codebook_size} codes; at most "
                               f"{MAX_IMPLICIT_CODES} (2**20) are supported")
        return self


class LFQConfig(Strict):
    """Lookup-free quantization (MAGVIT-v2): `dim` channels, each quantized to its sign (+-codebook_scale);
    the implicit codebook has 2**dim codes."""

    kind: Literal["lfq"] = "lfq"
    dim: int = Field(10, ge=1, le=20, description="bits per token; codebook_size = 2**dim")
    codebook_scale: float = Field(1.0, gt=0, description="codes are +-codebook_scale per channel")
    entropy_temperature: float = Field(0.01, gt=0, description="temperature of the entropy loss's code softmax")

    @property
    def codebook_size(self) -> int:
        return 2**self.dim

    @property
    def num_codebooks(self) -> int:
        return 1

    @property
    def l2_norm(self) -> bool:
        return False


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


class VQGANConfig(Strict):
    """A taming/LlamaGen-style conv encoder and decoder around a vector quantizer."""

    family: Literal["vqgan"] = "vqgan"
    preset: Optional[str] = Field(None, description="named preset the fields start from")
    resolution: int = Field(256, ge=8, description="training image size (square)")
    in_channels: int = Field(3, ge=1)
    ch: int = Field(128, ge=8, description="base channel count")
    ch_mult: list[int] = Field([1, 1, 2, 2, 4], min_length=1, description="one entry per level")
    num_res_blocks: int = Field(2, ge=1)
    attn_resolutions: list[int] = Field([16], description="feature-map sizes that get self-attention")
    mid_attn: bool = Field(True, description="self-attention in the middle blocks")
    z_channels: int = Field(256, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    quantizer: AnyQuantizerConfig = Field(default_factory=QuantizerConfig)

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)

    @model_validator(mode="after")
    def _resolution_divisible(self):
        if self.resolution % self.downsample:
            raise FieldProblem("resolution", f"image size {self.resolution} is not divisible by the downsample "
                               f"factor {self.downsample} (len(ch_mult) = {len(self.ch_mult)}); use a multiple of "
                               f"{self.downsample}")
        return self


ModelConfig = VQGANConfig  # later families join as a discriminated union on `family`


# ----------------------------------------------------------------------------------------------- losses


class PerceptualConfig(Strict):
    weight: float = Field(0.0, ge=0, description="LPIPS weight (0: off)")
    net: Literal["vgg", "alex"] = "vgg"
    weights: Optional[str] = Field(None, description="path to the backbone's ImageNet weights (.pth)")
    allow_untrained: bool = Field(False, description="run with a random backbone (meaningless; tests only)")


class GANConfig(Strict):
    weight: float = Field(0.0, ge=0, description="generator adversarial weight (0: no discriminator)")
    loss: Literal["hinge", "non_saturating"] = "hinge"
    adaptive: bool = Field(False, description="taming's adaptive weight ||g_rec|| / ||g_gan||")
    adaptive_max: float = Field(1e4, gt=0)
    start_step: int = Field(0, ge=0, description="step at which the discriminator starts training")
    warmup_steps: int = Field(0, ge=0, description="steps D trains alone before G sees its loss")
    lecam: float = Field(0.0, ge=0, description="LeCam regularisation weight")
    lecam_decay: float = Field(0.999, gt=0, lt=1)
    ndf: int = Field(64, ge=8)
    n_layers: int = Field(3, ge=1)
    lr: Optional[float] = Field(None, gt=0, description="discriminator learning rate (default: optim.lr)")


class LossConfig(Strict):
    l1: float = Field(0.0, ge=0)
    l2: float = Field(1.0, ge=0)
    perceptual: PerceptualConfig = Field(default_factory=PerceptualConfig)
    gan: GANConfig = Field(default_factory=GANConfig)
    codebook: float = Field(1.0, ge=0, description="||sg(z) - e||^2 (ignored with EMA codebooks)")
    commitment: float = Field(0.25, ge=0, description="beta on ||z - sg(e)||^2")
    entropy: float = Field(0.0, ge=0, description="codebook entropy loss weight")


# ----------------------------------------------------------------------------------------------- training


class OptimConfig(Strict):
    lr: float = Field(1e-4, gt=0)
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: int = Field(0, ge=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="cosine decay ends at lr * this")
    grad_clip: Optional[float] = Field(1.0, gt=0)
    ema_decay: Optional[float] = Field(0.999, gt=0, lt=1, description="EMA copy of the weights (null: off)")


class DataConfig(Strict):
    train: str = Field("demo", description="'demo', a shard pattern, a folder of images or a pipe: URL")
    val: Optional[str] = Field("demo", description="held-out data in the same forms, 'holdout' for a held-out "
                               "part of data.train (see holdout_fraction), or null for no validation")
    holdout_fraction: float = Field(0.02, gt=0, lt=1, description="with val 'holdout': the fraction of data.train's "
                                    "samples (chosen by a hash of their names) kept out of training for validation")
    batch_size: int = Field(16, ge=1)
    num_workers: int = Field(2, ge=0)
    shuffle_buffer: int = Field(1000, ge=0)
    val_samples: int = Field(256, ge=1, description="validation images per evaluation")


DEVICES_HELP = "a number of devices >= 1, 'auto', or a list of GPU ids such as [0, 1]"


def _check_devices(value: Any) -> Any:
    """`trainer.devices`: an int >= 1, "auto", or a non-empty list of unique GPU ids >= 0 ("0,1" is read as
    [0, 1]). One clear error instead of one per member of the union."""
    if isinstance(value, str) and "," in value:
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if parts and all(p.isdigit() for p in parts):
            value = [int(p) for p in parts]
    if isinstance(value, bool):
        raise ValueError(f"must be {DEVICES_HELP}, not a boolean")
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"{value} devices would run nothing; give {DEVICES_HELP}")
        return value
    if isinstance(value, str):
        if value == "auto":
            return value
        if value.strip().isdigit():
            return _check_devices(int(value))
        raise ValueError(f"must be {DEVICES_HELP}")
    if isinstance(value, (list, tuple)):
        if not value:
            raise ValueError(f"an empty list of GPU ids runs nothing; give {DEVICES_HELP}")
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
            raise ValueError(f"GPU ids must be integers >= 0; give {DEVICES_HELP}")
        if len(set(value)) != len(value):
            raise ValueError("GPU ids must not repeat")
        return list(value)
    raise ValueError(f"must be {DEVICES_HELP}")


class TrainerConfig(Strict):
    max_steps: int = Field(1000, ge=1)
    accelerator: Literal["auto", "cpu", "gpu"] = "auto"
    devices: Annotated[Union[int, Literal["auto"], list[int]], BeforeValidator(_check_devices)] = Field(
        "auto", description="number of devices (GPUs, or CPU processes), 'auto', or a list of GPU ids")
    num_nodes: int = Field(1, ge=1)
    strategy: Literal["auto", "ddp", "fsdp"] = "auto"
    precision: Literal["auto", "32-true", "bf16-mixed"] = Field("auto", description="auto: bf16 on GPU, fp32 on CPU")
    accumulate_grad_batches: int = Field(1, ge=1)
    val_every: int = Field(500, ge=1, description="validate (and write a grid) every N steps")
    ckpt_every: int = Field(500, ge=1)
    log_every: int = Field(10, ge=1)
    max_minutes: Optional[float] = Field(None, gt=0, description="stop (and save) after this much wall time in one "
                                         "invocation; --resume starts a new allowance")
    keep_every: Optional[int] = Field(None, ge=1, description="also keep checkpoints/step_N.ckpt every N steps")
    keep_best: Optional[str] = Field(None, description="keep checkpoints/best.ckpt by this validation metric, "
                                     "e.g. val/psnr")
    keep_best_mode: Literal["max", "min"] = Field("max", description="whether a larger or smaller keep_best is better")
    threads: Optional[int] = Field(None, ge=1, description="CPU threads for torch (default: torch's choice)")


class Recipe(Strict):
    name: str = "custom"
    seed: int = 0
    model: ModelConfig = Field(default_factory=VQGANConfig)
    loss: LossConfig = Field(default_factory=LossConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)


# ----------------------------------------------------------------------------------------------- loading


def recipe_dir():
    return importlib.resources.files("mmtok.recipes")


def shipped_recipes() -> dict[str, str]:
    """Shipped recipe name -> its first comment line (the command that runs it, or a description)."""
    out = {}
    for entry in sorted(recipe_dir().iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            out[entry.name[:-5]] = _describe(entry.read_text())
    return out


def _describe(text: str) -> str:
    comments = [ln.lstrip("# ").rstrip() for ln in text.splitlines() if ln.startswith("#")]
    return comments[1] if len(comments) > 1 else (comments[0] if comments else "")


def read_recipe_text(source: str) -> tuple[str, str]:
    """(name, YAML text) of a shipped recipe name or a YAML path."""
    path = Path(source)
    if source.endswith((".yaml", ".yml")) or path.exists():
        if not path.is_file():
            raise RecipeError(f"recipe file not found: {source}", hint="give a YAML path or a shipped name (mmtok recipes)")
        return path.stem, path.read_text()
    entry = recipe_dir() / f"{source}.yaml"
    if not entry.is_file():
        raise RecipeError(f"unknown recipe {source!r}", hint=choices_hint(source, shipped_recipes()) + " (or a YAML path)")
    return source, entry.read_text()


def load(source: str | dict, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """A validated Recipe from a shipped name, a YAML path or a dict, with `KEY=VALUE` overrides applied."""
    if isinstance(source, dict):
        name, raw = source.get("name", "custom"), copy.deepcopy(source)
    else:
        name, text = read_recipe_text(source)
        try:
            raw = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            raise RecipeError(f"recipe {source!r} is not valid YAML{yaml_where(e)}",
                              hint="check the indentation, colons and brackets there") from None
        if not isinstance(raw, dict):
            raise RecipeError(f"recipe {source!r} must be a mapping of sections, got {type(raw).__name__}")
        raw.setdefault("name", name)
    for item in overrides:
        apply_override(raw, item)
    _expand_preset(raw)
    try:
        return Recipe.model_validate(raw)
    except ValidationError as e:
        problems = describe_errors(e)
        label = source if isinstance(source, str) else "recipe"
        raise RecipeError(f"recipe {label!r} has {len(problems)} problem(s):", problems) from None


def apply_override(raw: dict, item: str) -> None:
    """Apply one `dotted.key=value` override (value parsed as YAML) to a raw recipe dict in place."""
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise RecipeError(f"bad override {item!r}", hint="write --set section.key=value, e.g. --set optim.lr=2e-4")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        parsed = value
    node = raw
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            path = ".".join(parts[: i + 1])
            raise RecipeError(f"bad override {item!r}: {path} is a value, not a section")
        node = child
    node[parts[-1]] = parsed


def _expand_preset(raw: dict) -> None:
    model = raw.get("model")
    if not isinstance(model, dict) or not model.get("preset"):
        return
    from mmtok.errors import MmtokError
    from mmtok.tokenizers import preset_fields  # imports the tokenizer families (and torch)

    try:
        base = preset_fields(str(model["preset"]))
    except MmtokError as e:
        raise RecipeError(f"model.preset: {e.message}", hint=e.hint) from None
    raw["model"] = _deep_merge(base, model)


def _deep_merge(base: dict, top: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in top.items():
        merge = isinstance(v, dict) and isinstance(out.get(k), dict)
        if merge and "kind" in v and "kind" in out[k] and v["kind"] != out[k]["kind"]:
            merge = False  # a section that changes kind (a preset's vq quantizer -> fsq) starts afresh
        out[k] = _deep_merge(out[k], v) if merge else copy.deepcopy(v)
    return out


def dump(recipe: Recipe) -> str:
    """The resolved recipe as YAML (loads back to an equal Recipe)."""
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)


def describe_errors(e: ValidationError, root: type[BaseModel] | None = None) -> list[str]:
    """One line per problem of a recipe (or of `root`): see mmtok.recipe_errors.describe_errors."""
    return _describe_errors(e, root or Recipe)
