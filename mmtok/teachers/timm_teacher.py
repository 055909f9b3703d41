"""timm teachers: any timm architecture with `forward_intermediates` (ViTs, ConvNeXt, EfficientNet, ...), built
with pretrained=False and loaded from a local state dict."""
from __future__ import annotations

import inspect
import os

from torch import Tensor, nn

from mmtok.errors import MmtokError
from mmtok.teachers.base import Teacher, layer_index
from mmtok.teachers.weights import load_exact, read_state_dict


class TimmTeacher(Teacher):
    """Features of one layer of a timm model (see mmtok.teachers.config for the layer semantics).

    patches: the layer's output as a feature map; global_: the class token at that layer when the model pools
    by its class token (`global_pool == 'token'`), else the mean of the patch features."""

    def __init__(self, model: nn.Module, name: str, layer: int, norm: bool, resolution: int | None = None,
                 mean=None, std=None):
        super().__init__()
        if not hasattr(model, "forward_intermediates") or not getattr(model, "feature_info", None):
            raise MmtokError(f"teacher {name}: this timm architecture has no forward_intermediates",
                             hint="pick a timm architecture that supports it (ViT, ConvNeXt, EfficientNet, ...)")
        self.model = model
        self.norm = norm
        params = inspect.signature(model.forward_intermediates).parameters
        self._kwargs = {"intermediates_only": True, "output_fmt": "NCHW"}
        if "norm" in params:
            self._kwargs["norm"] = norm
        if "stop_early" in params:
            self._kwargs["stop_early"] = True
        self._prefix = int(getattr(model, "num_prefix_tokens", 0) or 0)
        if self._prefix and "return_prefix_tokens" in params:
            self._kwargs["return_prefix_tokens"] = True
        else:
            self._prefix = 0
        self._pool_token = self._prefix > 0 and getattr(model, "global_pool", "") == "token"
        self.num_layers = len(model.feature_info)
        self._index = layer_index(layer, self.num_layers, name, "layers")
        cfg = getattr(model, "pretrained_cfg", None) or {}
        self._setup(name, resolution or _default_resolution(model, cfg), mean or cfg.get("mean", (0.5,) * 3),
                    std or cfg.get("std", (0.5,) * 3), layer)

    def features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        out = self.model.forward_intermediates(x, indices=[self._index], **self._kwargs)[0]
        if self._prefix:
            fmap, prefix = out
            if self._pool_token:
                return fmap, prefix[:, 0]
        else:
            fmap = out
        return fmap, fmap.mean((2, 3))


def _default_resolution(model: nn.Module, cfg: dict) -> int:
    patch_embed = getattr(model, "patch_embed", None)
    size = getattr(patch_embed, "img_size", None) if patch_embed is not None else None
    if size is None:
        size = cfg.get("input_size", (3, 224, 224))[1:]
    size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
    return int(size[0])


def create_timm(arch: str, kwargs: dict) -> nn.Module:
    import timm

    if not timm.is_model(arch.split(".")[0]):  # a pretrained tag (arch.tag) only sets mean / std / input size
        from mmtok.registry import did_you_mean

        family = timm.list_models(arch.split("_")[0] + "*") or timm.list_models()
        raise MmtokError(f"unknown timm architecture {arch!r}", hint=did_you_mean(arch, family))
    try:
        return timm.create_model(arch, pretrained=False, **kwargs)
    except TypeError as e:
        raise MmtokError(f"timm {arch}: bad teacher.kwargs {kwargs} ({e})", hint="see timm's model arguments") from e


def load_timm_weights(model: nn.Module, file: str | os.PathLike, what: str, how: str) -> None:
    """Load a timm-named state dict exactly; a file without the classifier head drops the model's head."""
    state = read_state_dict(file, what, how)
    head = (getattr(model, "pretrained_cfg", None) or {}).get("classifier")
    heads = head if isinstance(head, (tuple, list)) else [head] if head else []
    own = model.state_dict()
    head_keys = [k for k in own if any(k.startswith(h + ".") for h in heads)]
    if head_keys and not any(k in state for k in head_keys) and hasattr(model, "reset_classifier"):
        model.reset_classifier(0)  # a backbone-only file: the teacher never uses the head
    load_exact(model, state, file, what, how)


def build_timm_teacher(arch: str, weights: str | os.PathLike | None, layer: int, norm: bool, resolution: int | None,
                       mean, std, kwargs: dict) -> TimmTeacher:
    """`weights` None: the architecture only (its weights come from a checkpoint or bundle)."""
    from mmtok import assets

    what = f"timm {arch}"
    how = (f"teacher.weights must be a timm {arch} state dict (.safetensors/.pth/.bin) matching teacher.arch "
           f"and teacher.kwargs; put it in {assets.asset_dir()} or give its path")
    file = assets.locate(weights, f"{what} teacher weights", how) if weights is not None else None
    model = create_timm(arch, kwargs)
    if file is not None:
        load_timm_weights(model, file, what, how)
    return TimmTeacher(model.eval(), f"timm:{arch}", layer, norm, resolution, mean, std)
