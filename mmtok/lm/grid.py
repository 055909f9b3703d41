"""A labelled picture of generated images: one row per prompt, its text on the left, images enlarged by an
integer factor (nearest neighbour, so a 64 px sample stays honest about its resolution)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from mmtok.files import save_image
from mmtok.modalities.image.grid import font, to_uint8, upscale_factor


def save_rows(rows: list[tuple[str, torch.Tensor]], path: str | Path, min_cell: int = 128, max_label: int = 360) -> Path:
    """Write rows of (label, images float [N, 3, H, W] in [-1, 1]) as one PNG, atomically; returns the path.
    Labels longer than `max_label` px are wrapped."""
    fnt = font(14)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_width = min(max_label, int(max(probe.textlength(label, font=fnt) for label, _ in rows)) + 12)
    h, w = rows[0][1].shape[-2:]
    s = upscale_factor(h, w, min_cell)
    ch, cw, gap = h * s, w * s, 6
    n = max(len(images) for _, images in rows)
    canvas = np.full((gap + len(rows) * (ch + gap), label_width + n * (cw + gap) + gap, 3), 255, np.uint8)
    for r, (_, images) in enumerate(rows):
        y = gap + r * (ch + gap)
        for i, img in enumerate(to_uint8(images)):
            x = label_width + gap + i * (cw + gap)
            canvas[y:y + ch, x:x + cw] = img.repeat(s, 0).repeat(s, 1)
    image = Image.fromarray(canvas)
    draw = ImageDraw.Draw(image)
    for r, (label, _) in enumerate(rows):
        words, lines = label.split(), [""]
        for word in words:  # wrap the label to the label column
            trial = (lines[-1] + " " + word).strip()
            if draw.textlength(trial, font=fnt) > label_width - 2 * gap and lines[-1]:
                lines.append(word)
            else:
                lines[-1] = trial
        draw.multiline_text((gap, gap + r * (ch + gap)), "\n".join(lines[:6]), fill=(0, 0, 0), font=fnt)
    return save_image(image, path)
