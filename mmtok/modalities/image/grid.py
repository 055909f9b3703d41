"""Reconstruction grids: inputs in the top row, reconstructions below, labelled, written as PNG.

Small images are enlarged by an integer factor with nearest-neighbour sampling (pixels stay sharp and
honest), so that each cell is at least `min_cell` pixels on its longer side: a 16 x 16 model's grid is
readable rather than 66 x 34 pixels. Rows are labelled "input" / "reconstruction" and, when known, the
step is written above the grid.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from mmtok.files import save_image

MIN_CELL = 256
_STEP = re.compile(r"step[_-]?(\d+)")


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[B, 3, H, W] in [-1, 1] -> [B, H, W, 3] uint8."""
    x = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def upscale_factor(h: int, w: int, min_cell: int = MIN_CELL) -> int:
    """The integer factor that brings the longer side of an h x w image to at least `min_cell` (1 if it is)."""
    return max(1, math.ceil(min_cell / max(1, h, w)))


def font(size: int) -> ImageFont.ImageFont:
    """PIL's bundled font at `size` px (its fixed bitmap font where FreeType is missing)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, ValueError, OSError, ImportError):  # old Pillow or no FreeType
        return ImageFont.load_default()


def save_grid(inputs: torch.Tensor, recons: torch.Tensor, path: str | Path, pad: int = 2, *,
              step: int | None = None, labels: tuple[str, str] = ("input", "reconstruction"),
              min_cell: int = MIN_CELL) -> Path:
    """Write a 2-row grid (inputs above, reconstructions below) atomically; returns the path.

    Images are enlarged by `upscale_factor` (nearest neighbour) to cells of at least `min_cell` px; rows
    carry `labels` on the left; `step` (taken from a "step_000123" file name when not given) is written
    above. `pad` is the gap between cells in source pixels (scaled with them).
    """
    top, bottom = to_uint8(inputs), to_uint8(recons)
    b, h, w, _ = top.shape
    s = upscale_factor(h, w, min_cell)
    top, bottom = _enlarge(top, s), _enlarge(bottom, s)
    ch, cw, gap = h * s, w * s, max(2, pad * min(s, 4))
    if step is None:
        m = _STEP.search(Path(path).stem)
        step = int(m.group(1)) if m else None

    size = max(12, min(28, ch // 10))
    fnt = font(size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = max(probe.textlength(t, font=fnt) for t in labels) if labels else 0
    left = int(text_w) + 2 * gap if labels else 0
    title = f"step {step}" if step is not None else ""
    head = size + 2 * gap if title else 0

    width = left + b * (cw + gap) + gap
    height = head + 2 * ch + 3 * gap
    grid = np.full((height, width, 3), 255, dtype=np.uint8)
    for i in range(b):
        x0 = left + gap + i * (cw + gap)
        grid[head + gap : head + gap + ch, x0 : x0 + cw] = top[i]
        grid[head + 2 * gap + ch : head + 2 * gap + 2 * ch, x0 : x0 + cw] = bottom[i]
    image = Image.fromarray(grid)
    draw = ImageDraw.Draw(image)
    for row, text in enumerate(labels[:2]):
        y = head + gap + row * (ch + gap) + ch // 2
        draw.text((gap, y), text, fill=(0, 0, 0), font=fnt, anchor="lm" if _anchors(fnt) else None)
    if title:
        draw.text((left + gap, gap), title, fill=(0, 0, 0), font=fnt)

    return save_image(image, path)


def _enlarge(images: np.ndarray, s: int) -> np.ndarray:
    """[B, H, W, 3] -> [B, s*H, s*W, 3], each pixel repeated s x s times (nearest neighbour)."""
    return images if s == 1 else images.repeat(s, axis=1).repeat(s, axis=2)


def _anchors(fnt) -> bool:
    """Text anchors need a FreeType font."""
    return isinstance(fnt, ImageFont.FreeTypeFont)
