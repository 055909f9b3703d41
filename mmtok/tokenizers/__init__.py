"""Tokenizer families and their named presets. `build(model_cfg)` makes a tokenizer from a recipe's model."""
from __future__ import annotations

import copy

from mmtok.registry import PRESETS, TOKENIZERS
from mmtok.tokenizers import vqgan  # noqa: F401  (registers the family and its presets)


def preset_fields(name: str) -> dict:
    """The model fields of a named preset (a fresh copy), including `family` and `preset`."""
    return copy.deepcopy(PRESETS.get(name))


def build(model_cfg, **kwargs):
    """A tokenizer nn.Module for a validated model config (its `family` picks the class)."""
    return TOKENIZERS.get(model_cfg.family)(model_cfg, **kwargs)
