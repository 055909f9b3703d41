"""Tokenizer families: one package per family under mmtok/families/<name>/, or a `Family` registered anywhere.

A family is what the rest of mmtok knows about a tokenizer: its name and modality, its recipe schemas (the
`model` section, tagged by `family`; the `loss` section, a `mmtok.losses.config.LossConfig`), its presets as
plain data (including tiny `test_*` ones) and two builders: `model(model_cfg) -> nn.Module` (encode / decode /
forward -> TokenizerOutput, and `spec`, see mmtok.contract) and `objective(recipe) -> Objective` (see
mmtok.contract). Builders are callables or "module:attribute" strings imported on first use, so
reading a recipe imports no torch.

Each package's `config` module (torch-free) calls `register(Family(...))`; `discover()` imports every such
module it finds under mmtok/families/, so no central file names a family.
"""
from __future__ import annotations

import copy
import importlib
import pkgutil
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from mmtok.registry import Registry


@dataclass(frozen=True)
class Family:
    name: str
    modality: str  # "image", "audio", "motion": which data sources and metric suites apply
    model_config: type  # pydantic schema of the recipe's model section, with `family: Literal[name]`
    loss_config: type  # a mmtok.losses.config.LossConfig subclass: TERMS, DEFAULTS, knobs
    model: str | Callable  # (model_config, active_terms=(), pretrained=True) -> nn.Module
    objective: str | Callable  # Recipe -> Objective
    presets: Mapping[str, dict] = field(default_factory=dict)  # name -> model fields (plain data)
    check_recipe: str | Callable | None = None  # (Recipe) -> [problem]: checks across sections, torch-free
    # `mmtok import FORMAT`: format name -> reader (path, *, config, weights) -> (mmtok.export.interop.Source,
    # rules_for(model_cfg) -> [Rule]); the family owns the name rules of the releases of its architecture
    formats: Mapping[str, str | Callable] = field(default_factory=dict)
    # `mmtok export --format hf`: (model, recipe) -> (a transformers model holding the same weights, the check of its
    # own encode / decode against the model's: {"inputs", "ids_equal", "max_output_difference"})
    hf_export: str | Callable | None = None
    # `mmtok train`, before the model is built: (recipe, run_dir, fresh) -> the recipe to train with, for model
    # fields a family derives from the training data (e.g. motion Mean/Std from the training split); the result is
    # what the run's recipe.yaml records, so a resumed run (fresh=False) must reuse what the fresh one wrote
    prepare: str | Callable | None = None

    def recipe_problems(self, recipe) -> list[str]:
        """What `check_recipe` finds in a validated recipe (one line each; [] without a check)."""
        return list(_resolve(self.check_recipe)(recipe)) if self.check_recipe else []

    def prepare_recipe(self, recipe, run_dir, fresh: bool):
        """The recipe to train with (`prepare`'s result; the recipe itself without a `prepare`)."""
        return _resolve(self.prepare)(recipe, run_dir, fresh) if self.prepare else recipe

    @property
    def loss_terms(self) -> tuple[str, ...]:
        return tuple(self.loss_config.TERMS)

    def build_model(self, model_cfg, active_terms=(), pretrained: bool = True):
        """The model; `active_terms` (the terms with a weight > 0) lets it skip computing unweighted terms;
        `pretrained=False` skips reading pretrained parts (teachers) from their asset files because a
        checkpoint or bundle is about to supply every weight (a bundle is self-contained)."""
        return _resolve(self.model)(model_cfg, active_terms=tuple(active_terms), pretrained=pretrained)

    def build_objective(self, recipe):
        return _resolve(self.objective)(recipe)


FAMILIES = Registry("tokenizer family")
PRESETS = Registry("preset")  # preset name -> family name (one namespace over all families)
FORMATS = Registry("import format")  # `mmtok import` format name -> family name (one namespace over all families)
_discovered = False


def register(family: Family) -> Family:
    """Make `family` and its presets known (names must be new)."""
    FAMILIES.register(family.name, family)
    for name in family.presets:
        PRESETS.register(name, family.name)
    for name in family.formats:
        FORMATS.register(name, family.name)
    return family


def discover() -> None:
    """Import the torch-free `config` module of every package under mmtok/families/ (once)."""
    global _discovered
    if _discovered:
        return
    _discovered = True
    for info in pkgutil.iter_modules(__path__):
        if info.ispkg:
            importlib.import_module(f"{__name__}.{info.name}.config")


def get(name: str) -> Family:
    """The family called `name` (MmtokError with a did-you-mean when unknown)."""
    discover()
    return FAMILIES.get(name)


def names() -> list[str]:
    discover()
    return FAMILIES.names()


def resolve(builder: str | Callable) -> Callable:
    """A builder given as a callable or a "module:attribute" string (imported now)."""
    return _resolve(builder)


def preset(name: str) -> dict:
    """The model fields of a named preset (a fresh copy), including `family` and `preset`."""
    discover()
    family = get(PRESETS.get(name))
    return {"family": family.name, "preset": name, **copy.deepcopy(dict(family.presets[name]))}


def _resolve(builder: str | Callable) -> Callable:
    if callable(builder):
        return builder
    module, _, attr = builder.partition(":")
    return getattr(importlib.import_module(module), attr)


def build_model(model_cfg, active_terms=(), pretrained: bool = True) -> Any:
    """The tokenizer nn.Module for a validated model section (its `family` picks the builder)."""
    return get(model_cfg.family).build_model(model_cfg, active_terms, pretrained)
