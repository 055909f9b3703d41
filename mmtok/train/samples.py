"""Reconstruction grids: inputs in the top row, reconstructions below, written as PNG."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """[B, 3, H, W] in [-1, 1] -> [B, H, W, 3] uint8."""
    x = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def save_grid(inputs: torch.Tensor, recons: torch.Tensor, path: str | Path, pad: int = 2) -> Path:
    """Write a 2-row grid (inputs above, reconstructions below) atomically; returns the path."""
    top, bottom = to_uint8(inputs), to_uint8(recons)
    b, h, w, _ = top.shape
    grid = np.full((2 * h + 3 * pad, b * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for i in range(b):
        x0 = pad + i * (w + pad)
        grid[pad : pad + h, x0 : x0 + w] = top[i]
        grid[2 * pad + h : 2 * pad + 2 * h, x0 : x0 + w] = bottom[i]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    Image.fromarray(grid).save(tmp)
    os.replace(tmp, path)
    return path
