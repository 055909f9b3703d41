"""What `mmtok.load` returns for an image bundle (`ImageTokenizer`: images in, ids out, and back, with every input
checked) and the image keys of its tokenizer.json (`bundle_meta`).

    tok = mmtok.load("bundles/vq16")
    ids = tok.encode(["cat.jpg", pil_image])   # LongTensor [B, h, w], row-major grid, ids in [0, K)
    images = tok.decode(ids)                  # float32 [B, 3, R, R] in [-1, 1]
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mmtok.errors import MmtokError
from mmtok.export.tokenizer import RANGE_TOLERANCE, BaseTokenizer


class ImageTokenizer(BaseTokenizer):
    """An image bundle: `encode(images)` -> ids [B, h, w] (+ [levels]), `decode(ids)` -> images in [-1, 1]."""

    def __init__(self, model: nn.Module, meta: dict, config: dict, path: Path | None = None):
        super().__init__(model, meta, config, path)
        size = meta["input_size"]
        self.channels, self.resolution = int(size[0]), int(size[-1])

    # ------------------------------------------------------------------------------------------- encode

    def preprocess(self, images: Any, *, check_range: bool = True) -> torch.Tensor:
        """float32 [B, C, R, R] in [-1, 1] on this tokenizer's device from: a tensor / array [B, C, R, R]
        (or [C, R, R]) already in [-1, 1]; a PIL image; an image path; or a list of these. PIL images and
        paths are converted to RGB, resized (shorter side to R, bicubic) and centre-cropped to R x R."""
        items = images if isinstance(images, (list, tuple)) else [images]
        if not items:
            raise MmtokError("encode got an empty list", hint="pass at least one image")
        tensors = [self._one(item, check_range) for item in items]
        return torch.cat(tensors).to(self.device)

    def _one(self, item: Any, check_range: bool) -> torch.Tensor:
        from PIL import Image

        if isinstance(item, (str, os.PathLike)):
            from mmtok.modalities.image.decode import read_image

            item = read_image(item)
        if isinstance(item, Image.Image):
            from mmtok.modalities.image.decode import image_to_tensor, to_rgb

            return image_to_tensor(to_rgb(item), self.resolution, random_crop=False).unsqueeze(0)
        if isinstance(item, np.ndarray):
            item = torch.from_numpy(item)
        if not isinstance(item, torch.Tensor):
            raise MmtokError(f"encode cannot take a {type(item).__name__}",
                             hint="pass a float tensor [B, 3, H, W] in [-1, 1], PIL images, image paths, or a list")
        return self.check_images(item, check_range=check_range)

    def check_images(self, x: torch.Tensor, *, check_range: bool = True) -> torch.Tensor:
        """x as float32 [B, C, R, R]; MmtokError naming the problem for a wrong dtype, shape or value range."""
        c, r = self.channels, self.resolution
        expected = f"float images [B, {c}, {r}, {r}] in [-1, 1] (x = pixel / 127.5 - 1)"
        if not x.is_floating_point():
            raise MmtokError(f"encode got a {str(x.dtype).replace('torch.', '')} tensor; it expects {expected}",
                             hint="convert with x.float() / 127.5 - 1, or pass PIL images or paths")
        if x.dim() == 3:
            x = x.unsqueeze(0)
        if x.dim() != 4 or x.shape[1] != c:
            raise MmtokError(f"encode got a tensor of shape {tuple(x.shape)}; it expects {expected}",
                             hint="channels first; pass PIL images or paths to have them converted")
        if tuple(x.shape[-2:]) != (r, r):
            raise MmtokError(f"encode got {x.shape[-2]}x{x.shape[-1]} images; this tokenizer takes {r}x{r}",
                             hint=f"resize the shorter side to {r} and centre-crop, or pass PIL images or paths "
                             "(done for you)")
        x = x.float()
        if x.numel() and not bool(torch.isfinite(x).all()):
            raise MmtokError("encode got images with NaN or infinite values", hint=f"it expects {expected}")
        lo, hi = (float(x.min()), float(x.max())) if x.numel() else (0.0, 0.0)
        if lo < -1 - RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
            guess = " (looks like 0..255 pixels)" if lo >= -RANGE_TOLERANCE and hi > 2 else ""
            raise MmtokError(f"encode got values in [{lo:.4g}, {hi:.4g}]{guess}; it expects images in [-1, 1]",
                             hint="normalise with x / 127.5 - 1 (0..255) or x * 2 - 1 (0..1)")
        if check_range and x.numel() and lo >= 0:
            raise MmtokError(f"encode got values in [{lo:.4g}, {hi:.4g}], all >= 0: these look like [0, 1] images; "
                             "it expects images in [-1, 1]",
                             hint="normalise with x * 2 - 1; if they really are [-1, 1] images with no pixel darker "
                             "than mid-grey, pass check_range=False")
        return x.clamp(-1, 1)

    @torch.no_grad()
    def encode(self, images: Any, *, check_range: bool = True) -> torch.Tensor:  # noqa: D102 (named options)
        """Token ids, LongTensor [B, h, w] (row-major grid, values in [0, K); [B, h, w, levels] for a residual
        quantizer), for `images` in any form `preprocess` takes."""
        return self.model.encode(self.preprocess(images, check_range=check_range))

    # ------------------------------------------------------------------------------------------- decode

    def check_ids(self, ids: Any) -> torch.Tensor:
        """ids as int64 [B, *grid] on this device (grid: [h, w], or [n] for 1-D tokens) from [B, *grid], [*grid]
        or flat row-major [B, prod(grid)] integers (residual quantizers: [B, *grid, n] with 1 <= n <= levels,
        [*grid, n], or flat [B, prod(grid) * levels]); MmtokError naming the problem for floats, a wrong grid or
        values outside [0, K)."""
        ids = self.as_id_tensor(ids)
        grid, L = self.token_grid, self.levels
        per_sample = self.spec.ids_per_sample
        sample_dims = len(grid) + (1 if L else 0)
        if ids.dim() == sample_dims and tuple(ids.shape[:len(grid)]) == grid:
            ids = ids.unsqueeze(0)
        elif ids.dim() == 2 and ids.shape[1] == per_sample and sample_dims > 1:
            ids = self.spec.unflatten(ids)  # flat sequences in the layout's order
        ok = ids.dim() == sample_dims + 1 and tuple(ids.shape[1:1 + len(grid)]) == grid
        if ok and L:
            ok = 1 <= ids.shape[-1] <= L
        if not ok:
            g = ", ".join(str(x) for x in grid)
            want = f"[B, {g}, n] (1 <= n <= {L})" if L else f"[B, {g}]"
            raise MmtokError(f"decode got ids of shape {tuple(ids.shape)}; this tokenizer's grid is "
                             f"{'x'.join(str(x) for x in grid)}",
                             hint=f"pass {want}" + (f" or flat [B, {per_sample}] row-major sequences"
                                                    if sample_dims > 1 else ""))
        return self.check_range(ids)

    def postprocess(self, out: torch.Tensor) -> torch.Tensor:
        return out.float().clamp(-1, 1)

    @torch.no_grad()
    def semantic_embedding(self, ids: Any) -> torch.Tensor:
        """The semantic branch's features of ids, float32 [B, h*w, C] (row-major; what an understanding model is
        fed; [B, N, C] causal embeddings for 1-D tokens), for tokenizers with one (meta["semantic"] says what)."""
        if not hasattr(self.model, "semantic_embedding"):
            raise MmtokError(f"this {self.meta.get('family', '?')} tokenizer has no semantic branch",
                             hint="semantic families (e.g. sde) give one; decode(ids) gives pixels")
        return self.model.semantic_embedding(self.check_ids(ids)).float()

    @torch.no_grad()
    def generation_embedding(self, ids: Any) -> torch.Tensor:
        """SEED's generation embedding of ids, float32 [B, C] (the teacher's global-embedding space), for tokenizers
        with one (the seed family)."""
        if not hasattr(self.model, "generation_embedding"):
            raise MmtokError(f"this {self.meta.get('family', '?')} tokenizer has no generation embedding",
                             hint="the seed family gives one")
        return self.model.generation_embedding(self.check_ids(ids)).float()

    @staticmethod
    def to_pil(images: torch.Tensor) -> list:
        """[B, 3, H, W] in [-1, 1] -> a list of RGB PIL images (pixel = round((x + 1) * 127.5))."""
        from PIL import Image

        from mmtok.modalities.image.grid import to_uint8

        return [Image.fromarray(a) for a in to_uint8(images)]


def bundle_meta(meta: dict) -> dict:
    """The image modality's tokenizer.json keys: input normalisation and resizing, row-major id layout, special
    tokens."""
    from mmtok.contract import TokenSpec

    spec = TokenSpec.from_meta(meta)
    k, levels, ids_per_sample = spec.codebook_size, spec.levels, spec.ids_per_sample
    width = max(5, len(str(k - 1)))
    r = int(meta["input_size"][-1])
    one_d = len(meta["token_grid"]) == 1
    return {
        "input": {
            "shape": meta["input_size"], "layout": "[B, C, H, W], RGB, channels first", "dtype": "float32",
            "value_range": [-1.0, 1.0], "normalisation": "x = pixel / 127.5 - 1 for 8-bit pixels (0 -> -1, 255 -> 1)",
            "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
            "resize": f"shorter side to {r} (bicubic, antialiased), then a centre crop {r}x{r}",
        },
        "ids": {
            "dtype": "int64", "shape": ["B", *meta["token_grid"], *([levels] if levels else [])], "range": [0, k],
            "layout": spec.order,
            "per_sample": ids_per_sample,
            "offset": 0,
            "offsets_note": "ids are codebook indices starting at 0; add your own vocabulary offset in the LM"
                            + (f" (e.g. level i at i * {k}, so the levels do not share tokens)" if levels else ""),
        },
        "vocab_size": k,
        "special_tokens": {
            "begin": "<img>", "end": "</img>", "code_format": f"<img_{{:0{width}d}}>",
            "note": f"suggested: one image = begin, then the {ids_per_sample} codes in "
                    f"{'sequence' if one_d else 'row-major'} order as code_format.format(id), then end; "
                    f"{k * max(levels, 1)} + 2 new tokens in all",
        },
    }
