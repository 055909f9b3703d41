"""The `mmtok lm train` recipe: schema, YAML loading and `--set` overrides (torch-free).

    name: lm_smollm2
    seed: 0
    model: {path: lm/smol-vq}                     # a directory from `mmtok lm extend`
    lora: {r: 16, alpha: 32}                      # omit (or null) for full fine-tuning
    data: {train: tokens/stamps, val: holdout, block_size: 512, batch_size: 4, caption_dropout: 0.1}
    loss: {image: 1.0, text: 1.0}
    optim: {lr: 3.0e-4, warmup_steps: 20}
    trainer: {max_steps: 300, val_every: 100}     # the tokenizer recipes' trainer section (devices, precision, ...)

The same rules as tokenizer recipes: unknown keys are errors with a did-you-mean, every problem at once.
"""
from __future__ import annotations

from typing import Literal, Optional, Union

import yaml
from pydantic import Field, ValidationError

from mmtok.config import TrainerConfig, read_raw
from mmtok.errors import RecipeError
from mmtok.recipe_errors import describe_errors
from mmtok.schema import Strict


class LMModelConfig(Strict):
    path: str = Field(..., description="an extended model directory (from `mmtok lm extend`)")
    dtype: Literal["auto", "float32", "bfloat16"] = Field("float32", description="weights' dtype while training "
                                                          "(trainer.precision sets the compute precision)")
    gradient_checkpointing: bool = Field(False, description="recompute activations in backward (less memory)")


class LoRAConfig(Strict):
    r: int = Field(16, ge=1)
    alpha: float = Field(32.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: Union[Literal["all-linear"], list[str]] = Field(
        "all-linear", description="peft's target_modules: 'all-linear' (every linear layer but the head) or names")


class LMDataConfig(Strict):
    train: str = Field(..., description="a token directory from `mmtok tokenize`")
    val: Optional[str] = Field("holdout", description="a token directory, 'holdout' (a hash-chosen part of train, by "
                               "sample key) or null")
    holdout_fraction: float = Field(0.05, gt=0, lt=1)
    val_pairs: int = Field(64, ge=1, description="held-out pairs per validation (each scored in both directions)")
    modality: Optional[str] = Field(None, description="which of the layout's modalities the tokens are (default: "
                                    "the one extended with the token shards' bundle)")
    group_shards: int = Field(4, ge=1, description="token shards held in memory at once; training batches are "
                              "drawn from them for a while, then the next ones are read (shards shuffled per pass)")
    block_size: int = Field(512, ge=16, description="tokens per packed training row")
    batch_size: int = Field(4, ge=1, description="packed rows per step")
    max_caption_tokens: int = Field(64, ge=1, description="captions are cut to this many tokens")
    t2i_fraction: float = Field(0.5, ge=0, le=1, description="share of caption -> span sequences (text -> image, "
                                "audio or motion; the rest: span -> caption)")
    caption_dropout: float = Field(0.1, ge=0, lt=1, description="caption -> image sequences whose caption is dropped "
                                   "(what classifier-free guidance needs)")


class LMLossConfig(Strict):
    image: float = Field(1.0, ge=0, description="weight of the modality's span targets (codes, end of row, end of "
                         "span; the name says image for every modality)")
    text: float = Field(1.0, ge=0, description="weight of caption-token targets")


class LMOptimConfig(Strict):
    lr: float = Field(2e-4, gt=0)
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = Field(0.0, ge=0)
    warmup_steps: int = Field(0, ge=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="cosine decay ends at lr * this")
    grad_clip: Optional[float] = Field(1.0, gt=0)


class LMRecipe(Strict):
    name: str = "lm"
    seed: int = 0
    model: LMModelConfig
    lora: Optional[LoRAConfig] = None
    data: LMDataConfig
    loss: LMLossConfig = Field(default_factory=LMLossConfig)
    optim: LMOptimConfig = Field(default_factory=LMOptimConfig)
    trainer: TrainerConfig = Field(default_factory=TrainerConfig)


def load_recipe(source: str | dict, overrides: list[str] | tuple[str, ...] = ()) -> LMRecipe:
    """A validated LMRecipe from a shipped name (recipes/lm_*.yaml), a YAML path or a dict, overrides applied."""
    raw = read_raw(source, overrides)
    try:
        return LMRecipe.model_validate(raw)
    except ValidationError as e:
        problems = describe_errors(e, LMRecipe)
        label = source if isinstance(source, str) else "recipe"
        raise RecipeError(f"recipe {label!r} has {len(problems)} problem(s):", problems) from None


def dump_recipe(recipe: LMRecipe) -> str:
    return yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False)
