"""open_clip teachers: the image tower of an open_clip architecture (built with pretrained=None) loaded from a
local open_clip checkpoint (full CLIP state dict with `visual.*` keys, or the image tower's alone)."""
from __future__ import annotations

import contextlib
import logging
import os

from torch import Tensor, nn

from mmtok.errors import MmtokError
from mmtok.teachers.base import Teacher, layer_index
from mmtok.teachers.timm_teacher import TimmTeacher
from mmtok.teachers.weights import load_exact, read_state_dict


class OpenClipTeacher(Teacher):
    """Features of one block of an open_clip VisionTransformer tower. With `norm` the tower's ln_post is applied;
    global_ is the class token at that layer (the tower pools by it) or the patch mean otherwise. The tower's
    own image embedding is `global_ @ visual.proj` at layer -1 with norm."""

    def __init__(self, visual: nn.Module, name: str, layer: int, norm: bool, resolution: int | None, mean, std):
        super().__init__()
        self.visual = visual
        self.norm = norm
        self.num_layers = len(visual.transformer.resblocks)
        self._index = layer_index(layer, self.num_layers, name, "blocks")
        self._pool_token = getattr(visual, "pool_type", "tok") == "tok" and getattr(visual, "attn_pool", None) is None
        self._setup(name, resolution or visual.image_size[0], mean, std, layer)

    def features(self, x: Tensor) -> tuple[Tensor, Tensor]:
        out = self.visual.forward_intermediates(x, indices=[self._index], stop_early=True, intermediates_only=True,
                                                normalize_intermediates=self.norm, output_fmt="NCHW",
                                                output_extra_tokens=True)
        fmap = out["image_intermediates"][0]
        if self._pool_token:
            return fmap, out["image_intermediates_prefix"][0][:, 0]
        return fmap, fmap.mean((2, 3))


@contextlib.contextmanager
def _quiet_warnings():
    # open_clip logs "No pretrained weights loaded ... initialized randomly" on the root logger: we load them next.
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def _registry_norm(arch: str) -> tuple | None:
    """(mean, std) when every pretrained tag open_clip knows for `arch` agrees on them, else None (no download)."""
    from open_clip import pretrained

    norms = set()
    for tag in pretrained.list_pretrained_tags_by_model(arch):
        cfg = pretrained.get_pretrained_cfg(arch, tag)
        if cfg.get("mean") and cfg.get("std"):
            norms.add((tuple(cfg["mean"]), tuple(cfg["std"])))
    return norms.pop() if len(norms) == 1 else None


def build_open_clip_teacher(arch: str, weights: str | os.PathLike, layer: int, norm: bool, resolution: int | None,
                            mean, std, kwargs: dict) -> Teacher:
    import open_clip

    from mmtok import assets

    what = f"open_clip {arch} image tower"
    how = (f"teacher.weights must be an open_clip {arch} checkpoint (.safetensors/.bin/.pth state dict, e.g. "
           f"open_clip_model.safetensors) matching teacher.arch and teacher.kwargs; put it in {assets.asset_dir()} "
           "or give its path")
    file = assets.locate(weights, f"{what} weights", how) if weights is not None else None  # None: no weights
    if arch not in open_clip.list_models():
        from mmtok.registry import did_you_mean

        raise MmtokError(f"unknown open_clip architecture {arch!r}", hint=did_you_mean(arch, open_clip.list_models()))
    try:
        with _quiet_warnings():
            model = open_clip.create_model(arch, pretrained=None, pretrained_text=False, pretrained_image=False,
                                           **kwargs)
    except TypeError as e:
        raise MmtokError(f"open_clip {arch}: bad teacher.kwargs {kwargs} ({e})") from e
    visual = model.visual
    del model  # the text tower is not needed
    if file is not None:
        state = read_state_dict(file, what, how)
        if any(k.startswith("visual.") for k in state):
            state = {k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")}
        load_exact(visual, state, file, what, how)
    visual.eval()

    own = getattr(visual, "preprocess_cfg", None) or {}
    default_mean, default_std = _registry_norm(arch) or (own.get("mean", (0.5,) * 3), own.get("std", (0.5,) * 3))
    mean, std = mean or default_mean, std or default_std
    name = f"open_clip:{arch}"
    if hasattr(visual, "trunk"):  # a timm image tower (SigLIP, ConvNeXt, ...): the trunk's layers
        return TimmTeacher(visual.trunk, name, layer, norm, resolution, mean, std)
    if not hasattr(visual, "forward_intermediates") or not hasattr(visual, "transformer"):
        raise MmtokError(f"open_clip {arch}: its {type(visual).__name__} image tower is not supported as a teacher",
                         hint="use a ViT or timm-tower open_clip model, or the timm kind")
    return OpenClipTeacher(visual, name, layer, norm, resolution, mean, std)
