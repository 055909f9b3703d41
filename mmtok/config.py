"""Recipes: the pydantic schema, YAML loading, `--set` overrides and did-you-mean error reports.

`load(source, overrides)` is the one way a recipe becomes a validated `Recipe`:
YAML (a shipped recipe name or a path) -> overrides applied -> model preset expanded -> validated.
Unknown keys are rejected; every problem is reported at once with its dotted path.
This module imports no torch, so reading and checking a recipe is instant.
"""
from __future__ import annotations

import copy
import difflib
import importlib.resources
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationError, model_validator

from mmtok.errors import RecipeError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
            raise ValueError(f"levels {self.levels} make {self.codebook_size} codes; at most {MAX_IMPLICIT_CODES} "
                             "(2**20) are supported")
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
            raise ValueError(f"image size {self.resolution} is not divisible by the downsample factor "
                             f"{self.downsample} (len(ch_mult) = {len(self.ch_mult)}); use a multiple of {self.downsample}")
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
    val: Optional[str] = Field("demo", description="held-out data in the same forms (null: no validation)")
    batch_size: int = Field(16, ge=1)
    num_workers: int = Field(2, ge=0)
    shuffle_buffer: int = Field(1000, ge=0)
    val_samples: int = Field(256, ge=1, description="validation images per evaluation")


class TrainerConfig(Strict):
    max_steps: int = Field(1000, ge=1)
    accelerator: Literal["auto", "cpu", "gpu"] = "auto"
    devices: Union[int, Literal["auto"]] = "auto"
    num_nodes: int = Field(1, ge=1)
    strategy: Literal["auto", "ddp", "fsdp"] = "auto"
    precision: Literal["auto", "32-true", "bf16-mixed"] = Field("auto", description="auto: bf16 on GPU, fp32 on CPU")
    accumulate_grad_batches: int = Field(1, ge=1)
    val_every: int = Field(500, ge=1, description="validate (and write a grid) every N steps")
    ckpt_every: int = Field(500, ge=1)
    log_every: int = Field(10, ge=1)
    max_minutes: Optional[float] = Field(None, gt=0, description="also stop after this much wall time")
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
        raise RecipeError(f"unknown recipe {source!r}", hint=_choices_hint(source, shipped_recipes()) + " (or a YAML path)")
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
            raise RecipeError(f"recipe {source!r} is not valid YAML: {str(e).splitlines()[0]}") from None
        if not isinstance(raw, dict):
            raise RecipeError(f"recipe {source!r} must be a mapping of sections, got {type(raw).__name__}")
        raw.setdefault("name", name)
    for item in overrides:
        apply_override(raw, item)
    _expand_preset(raw)
    try:
        return Recipe.model_validate(raw)
    except ValidationError as e:
        problems = [_describe_error(err) for err in e.errors()]
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


# ----------------------------------------------------------------------------------------------- errors


def _describe_error(err: dict) -> str:
    raw_loc = tuple(p for p in err["loc"] if isinstance(p, (str, int)))
    loc, _ = _walk(Recipe, raw_loc)
    path = ".".join(str(p) for p in loc) or "(top)"
    if err["type"] == "extra_forbidden":
        fields = _fields_at(Recipe, raw_loc[:-1])
        hint = _choices_hint(str(loc[-1]), fields) if fields else ""
        return f"{path}: unknown key" + (f" ({hint})" if hint else "")
    return f"{path}: {err['msg']} (got {err.get('input')!r})"


def _choices_hint(name: str, choices) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    if close:
        return f"did you mean {close[0]!r}?"
    return "known: " + ", ".join(sorted(choices))


def _fields_at(cls: type[BaseModel], loc: tuple) -> list[str]:
    """Field names of the pydantic model found at `loc` inside `cls` (empty if not a model)."""
    found = _walk(cls, loc)[1]
    return list(found.model_fields) if found is not None else []


def _walk(cls: type[BaseModel], loc: tuple) -> tuple[tuple, type[BaseModel] | None]:
    """Follow a pydantic error `loc` down from `cls`: (the loc as the user wrote it, the model class found there
    or None). After a tagged-union field pydantic inserts the member's tag (('model', 'quantizer', 'fsq',
    'levls')): the tag picks the member and is dropped from the returned loc. A union without a tag in the loc
    means its first member (the default kind)."""
    out: list = []
    members: list[tuple[type[BaseModel], Optional[str]]] = [(cls, None)]
    for part in loc:
        tagged = {tag: c for c, tag in members if tag is not None}
        if len(members) > 1 and str(part) in tagged:
            members = [(tagged[str(part)], None)]
            continue
        out.append(part)
        field = members[0][0].model_fields.get(str(part)) if members else None
        members = _members(field.annotation, field.discriminator) if field is not None else []
    return tuple(out), (members[0][0] if members else None)


def _members(annotation, discriminator=None) -> list[tuple[type[BaseModel], Optional[str]]]:
    """(model class, union tag or None) for every pydantic model inside an annotation: itself, or the members
    of a union / Optional. Tags come from `Tag(...)` metadata or from the Literal field a string
    `discriminator` names."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = annotation.model_fields.get(discriminator) if isinstance(discriminator, str) else None
        literal = typing.get_args(field.annotation) if field is not None else ()
        return [(annotation, str(literal[0]) if len(literal) == 1 else None)]
    if typing.get_origin(annotation) is Annotated:
        tags = [m.tag for m in annotation.__metadata__ if isinstance(m, Tag)]
        inner = _members(typing.get_args(annotation)[0], discriminator)
        return [(c, tags[0]) for c, _ in inner] if tags and len(inner) == 1 else inner
    return [m for arg in typing.get_args(annotation) for m in _members(arg, discriminator)]
