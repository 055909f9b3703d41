"""Hugging Face vision teachers (CLIP / SigLIP vision towers, DINOv2, ViT, ...) from a local model folder
(config.json + weights), through transformers' AutoModel with local_files_only. transformers is optional."""
from __future__ import annotations

import json
import os
from pathlib import Path

from torch import Tensor, nn

from mmtok.errors import AssetError, MmtokError
from mmtok.teachers.base import Teacher, layer_index

NORM_NAMES = ("post_layernorm", "layernorm", "norm")  # the final norm, as CLIP/SigLIP, ViT/DINOv2 and others name it


class HFTeacher(Teacher):
    """Features of one hidden state of a Hugging Face vision transformer: layer i is the output of block i
    (hidden_states[1:][i]); with `norm` the model's final norm (post_layernorm / layernorm) is applied. Prefix
    tokens (class, registers) are the tokens beyond the patch grid; global_ is the first of them, or the patch
    mean when there is none (SigLIP)."""

    def __init__(self, vision: nn.Module, name: str, layer: int, norm: bool, resolution: int, patch: int, mean, std):
        super().__init__()
        self.vision = vision
        self.patch = int(patch)
        norms = [getattr(vision, n) for n in NORM_NAMES if isinstance(getattr(vision, n, None), nn.Module)]
        self.norm_module = norms[0] if norm and norms else None
        self.num_layers = int(vision.config.num_hidden_layers)
        self._index = layer_index(layer, self.num_layers, name, "blocks")
        self._setup(name, resolution, mean, std, layer)

    def features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        out = self.vision(pixel_values=x, output_hidden_states=True)
        tokens = out.hidden_states[1:][self._index]
        if self.norm_module is not None:
            tokens = self.norm_module(tokens)
        h, w = x.shape[-2] // self.patch, x.shape[-1] // self.patch
        prefix = tokens.shape[1] - h * w
        if prefix < 0:
            raise MmtokError(f"teacher {self.name}: {tokens.shape[1]} tokens for a {h} x {w} patch grid")
        fmap = tokens[:, prefix:].transpose(1, 2).reshape(tokens.shape[0], -1, h, w)
        return fmap, (tokens[:, 0] if prefix else fmap.mean((2, 3)))


def _import_transformers():
    try:
        import transformers
    except ImportError as e:
        raise MmtokError("teacher kind 'hf' needs the transformers package, which is not installed",
                         hint="pip install transformers (mmtok does not depend on it), or use a timm / open_clip "
                         "teacher") from e
    return transformers


def build_hf_teacher(weights: str | os.PathLike, layer: int, norm: bool, resolution: int | None, mean, std,
                     kwargs: dict) -> HFTeacher:
    from mmtok import assets

    how = ("teacher.weights must be a Hugging Face model folder (config.json + model.safetensors, and "
           f"preprocessor_config.json for mean/std); put it in {assets.asset_dir()} or give its path")
    folder = assets.locate(weights, "Hugging Face teacher folder", how, directory=True)
    if not (folder / "config.json").is_file():
        raise AssetError(f"Hugging Face teacher folder {folder} has no config.json", hint=how)
    transformers = _import_transformers()
    try:
        model, info = transformers.AutoModel.from_pretrained(str(folder), local_files_only=True,
                                                             output_loading_info=True, **kwargs)
    except Exception as e:  # noqa: BLE001 - unreadable / incomplete folders: one line
        first = str(e).splitlines()[0] if str(e) else ""
        raise AssetError(f"Hugging Face teacher folder {folder} cannot be loaded ({type(e).__name__}: {first})",
                         hint=how) from e
    vision = getattr(model, "vision_model", model)
    prefix = "vision_model."
    missing = [k for k in info.get("missing_keys", []) if vision is model or k.startswith(prefix)]
    bad = missing + [str(k) for k in info.get("mismatched_keys", [])]
    if bad:
        shown = ", ".join(bad[:3]) + (f" ...({len(bad) - 3} more)" if len(bad) > 3 else "")
        raise AssetError(f"{folder} does not fit its config.json ({type(model).__name__}; missing or mismatched: "
                         f"{shown})", hint=how)
    config = vision.config
    patch = getattr(config, "patch_size", None)
    if patch is None:
        raise MmtokError(f"Hugging Face teacher {folder.name}: {type(vision).__name__} has no patch_size",
                         hint="use a vision transformer (CLIP, SigLIP, DINOv2, ViT)")
    patch = patch[0] if isinstance(patch, (tuple, list)) else patch
    pre = _preprocessor(folder)
    mean, std = mean or pre.get("image_mean"), std or pre.get("image_std")
    if mean is None or std is None:
        raise MmtokError(f"Hugging Face teacher {folder}: no preprocessor_config.json to take mean / std from",
                         hint="set teacher.mean and teacher.std, or copy the repo's preprocessor_config.json")
    size = getattr(config, "image_size", 224)
    res = resolution or int(size[0] if isinstance(size, (tuple, list)) else size)
    return HFTeacher(vision.eval(), f"hf:{folder.name}", layer, norm, res, patch, mean, std)


def _preprocessor(folder: Path) -> dict:
    file = folder / "preprocessor_config.json"
    try:
        return json.loads(file.read_text()) if file.is_file() else {}
    except (OSError, ValueError) as e:
        raise AssetError(f"{file} is unreadable ({e})", hint="fix or delete it (mean/std then come from "
                         "teacher.mean / teacher.std)") from e
