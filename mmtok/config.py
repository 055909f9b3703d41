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
from pydantic import BaseModel, BeforeValidator, Field, ValidationError

from mmtok.errors import RecipeError
from mmtok.recipe_errors import describe_errors as _describe_errors
from mmtok.recipe_errors import yaml_where
from mmtok.registry import did_you_mean
from mmtok.schema import Strict

# ----------------------------------------------------------------------------------------------- training


class OptimConfig(Strict):
    lr: float = Field(1e-4, ge=0, description="peak learning rate (0 keeps the weights where they start: a check "
                      "of a fine-tuning setup)")
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: int = Field(0, ge=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="cosine decay ends at lr * this")
    grad_clip: Optional[float] = Field(1.0, gt=0)
    ema_decay: Optional[float] = Field(0.999, gt=0, lt=1, description="EMA copy of the weights (null: off)")
    freeze: list[str] = Field(default_factory=list, description="globs of parameter names kept frozen (e.g. "
                              "'qformer.*'); each must match a parameter")


class InitConfig(Strict):
    """Start training from existing weights of the same family (not applied on --resume: the checkpoint has them)."""

    path: Optional[str] = Field(None, description="a run directory, .ckpt file or bundle to copy weights from")
    weights: Literal["ema", "raw"] = Field("ema", description="which copy of a checkpoint's weights to take")
    partial: list[str] = Field(default_factory=list, description="globs of keys that may be missing from the "
                               "source, extra in it or of another shape (kept fresh / dropped); all else is strict")
    exclude: list[str] = Field(default_factory=list, description="globs of keys never copied (kept fresh), e.g. "
                               "'quantizer.*' to re-initialise a codebook, 'adversary.*' for a fresh discriminator")


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
    """A validated recipe. `model` and `loss` are the family's own schemas: `load` validates every recipe with
    `recipe_class(family)`, a subclass whose model and loss fields are that family's (mmtok.families)."""

    name: str = "custom"
    seed: int = 0
    model: Any = None
    loss: Any = None
    init: InitConfig = Field(default_factory=InitConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)


_RECIPE_CLASSES: dict[str, type[Recipe]] = {}


def recipe_class(family: str) -> type[Recipe]:
    """The Recipe schema of one family (made once per family): its model and loss sections are required."""
    if family not in _RECIPE_CLASSES:
        from pydantic import create_model

        from mmtok import families

        fam = families.get(family)
        _RECIPE_CLASSES[family] = create_model(
            f"Recipe[{family}]", __base__=Recipe, __module__=__name__,
            model=(fam.model_config, ...), loss=(fam.loss_config, Field(default_factory=fam.loss_config)))
    return _RECIPE_CLASSES[family]


# ----------------------------------------------------------------------------------------------- loading


def recipe_dir():
    return importlib.resources.files("mmtok.recipes")


def shipped_recipes(lm: bool = False) -> dict[str, str]:
    """Shipped tokenizer recipe name -> its description (`_describe`). Recipes named lm_*.yaml are the LLM stage's
    (`mmtok lm train`, mmtok.lm), not tokenizer recipes: `lm=True` lists those instead."""
    out = {}
    for entry in sorted(recipe_dir().iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml") and entry.name.startswith("lm_") == lm:
            out[entry.name[:-5]] = _describe(entry.read_text())
    return out


def _describe(text: str) -> str:
    """A recipe's description: its leading comment block after the first line (the command that runs it), joined
    into one line; the first line when the block has only that."""
    block = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        block.append(line.lstrip("# ").rstrip())
    return " ".join(b for b in block[1:] if b) or (block[0] if block else "")


def read_recipe_text(source: str) -> tuple[str, str]:
    """(name, YAML text) of a shipped recipe name or a YAML path."""
    path = Path(source)
    if source.endswith((".yaml", ".yml")) or path.exists():
        if not path.is_file():
            raise RecipeError(f"recipe file not found: {source}", hint="give a YAML path or a shipped name (mmtok recipes)")
        return path.stem, path.read_text()
    entry = recipe_dir() / f"{source}.yaml"
    if not entry.is_file():
        raise RecipeError(f"unknown recipe {source!r}", hint=did_you_mean(source, shipped_recipes(), list_known=False) + " (or a YAML path)")
    return source, entry.read_text()


def load(source: str | dict, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """A validated Recipe from a shipped name, a YAML path or a dict, with `KEY=VALUE` overrides applied."""
    raw = read_raw(source, overrides)
    cls = recipe_class(_expand_preset(raw))
    label = source if isinstance(source, str) else "recipe"
    try:
        recipe = cls.model_validate(raw)
    except ValidationError as e:
        problems = describe_errors(e, cls)
        raise RecipeError(f"recipe {label!r} has {len(problems)} problem(s):", problems) from None
    from mmtok import families

    problems = families.get(recipe.model.family).recipe_problems(recipe)  # e.g. a loss term the model cannot make
    if problems:
        raise RecipeError(f"recipe {label!r} has {len(problems)} problem(s):", problems)
    return recipe


def load_stored(source: str | dict, overrides: list[str] | tuple[str, ...] = ()) -> Recipe:
    """A recipe mmtok wrote itself (a run's recipe.yaml, a checkpoint's recipe, a bundle's model section): already
    resolved, so its model section's preset is not merged in again. A field added to mmtok after it was written takes
    its schema default (which keeps the behaviour it was trained with), not the preset's current value; the preset's
    name stays on the model section as a label."""
    raw = read_raw(source, overrides)
    model = raw.get("model")
    preset = model.pop("preset", None) if isinstance(model, dict) and model.get("family") else None
    recipe = load(raw)
    if preset is None:
        return recipe
    return recipe.model_copy(update={"model": recipe.model.model_copy(update={"preset": preset})})


def read_raw(source: str | dict, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """The unvalidated recipe dict of a shipped name, a YAML path or a dict (copied), overrides applied; the
    name defaults to the file's stem. RecipeError for unreadable YAML or a non-mapping."""
    if isinstance(source, dict):
        raw = copy.deepcopy(source)
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
    return raw


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


def _expand_preset(raw: dict) -> str:
    """Merge the model section over its preset's fields (in place); returns the recipe's family name."""
    from mmtok import families
    from mmtok.errors import MmtokError

    model = raw.get("model")
    if not isinstance(model, dict):
        raise RecipeError("the recipe has no model section", hint="add model: {preset: NAME} (mmtok recipes shows "
                          "shipped recipes; every family's presets are listed in its config module)")
    try:
        if model.get("preset"):
            base = families.preset(str(model["preset"]))
            if model.get("family") not in (None, base["family"]):
                raise RecipeError(f"model.preset {model['preset']!r} belongs to family {base['family']!r}, "
                                  f"not {model['family']!r}", hint="drop model.family or choose its preset")
            raw["model"] = model = _deep_merge(base, model)
        if not model.get("family"):
            raise RecipeError("model: give a preset or a family", hint="known families: " + ", ".join(families.names()))
        return families.get(str(model["family"])).name
    except RecipeError:
        raise
    except MmtokError as e:
        where = "model.preset" if model.get("preset") else "model.family"
        raise RecipeError(f"{where}: {e.message}", hint=e.hint) from None


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
