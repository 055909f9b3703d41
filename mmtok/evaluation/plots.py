"""The codebook-usage plot, drawn with PIL (no plotting library needed).

Code frequencies sorted in descending order, log-scale y: hot codes stand out at the left, dead codes
(count 0, which a log axis cannot show) are drawn as a red band along the bottom at the right.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mmtok.files import save_image

WIDTH, HEIGHT = 900, 420
LEFT, RIGHT, TOP, BOTTOM = 80, 20, 40, 60
BAR, DEAD, AXIS, GRID, TEXT = (52, 101, 164), (204, 0, 0), (0, 0, 0), (225, 225, 225), (30, 30, 30)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size default font
        return ImageFont.load_default()


def usage_plot(counts, path: str | os.PathLike, title: str = "") -> Path:
    """Write the usage plot of per-code counts [K] (any integer array) as PNG, atomically; returns the path."""
    c = np.sort(np.asarray(counts, dtype=np.float64).reshape(-1))[::-1]
    k = c.size
    used = int((c > 0).sum())
    img = Image.new("RGB", (WIDTH, HEIGHT), "white")
    d = ImageDraw.Draw(img)
    font, small = _font(14), _font(11)
    x0, x1, y0, y1 = LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM, TOP  # y0: baseline (bottom), y1: top
    top_exp = max(1, math.ceil(math.log10(c[0]))) if used else 1
    floor = math.log10(0.5)  # the axis starts just below 1, so a code used once still shows a bar

    def y_of(v: float) -> float:
        return y0 - (y0 - y1) * (math.log10(v) - floor) / (top_exp - floor)

    for e in range(top_exp + 1):  # decade grid lines and labels
        y = y_of(10.0**e)
        d.line([(x0, y), (x1, y)], fill=GRID)
        d.text((x0 - 8, y), f"1e{e}" if e > 3 else f"{10 ** e:g}", fill=TEXT, font=small, anchor="rm")
    plot_w = x1 - x0
    for px in range(plot_w):  # one column per pixel: the largest count among the codes it covers
        lo = px * k // plot_w
        hi = max(lo + 1, (px + 1) * k // plot_w)
        if lo >= k:
            break
        v = c[lo:hi].max()
        x = x0 + px
        if v > 0:
            d.line([(x, y0), (x, y_of(v))], fill=BAR)
        else:
            d.line([(x, y0), (x, y0 - 6)], fill=DEAD)
    d.line([(x0, y0), (x1, y0)], fill=AXIS)
    d.line([(x0, y0), (x0, y1)], fill=AXIS)
    for frac in (0, 0.25, 0.5, 0.75, 1.0):  # x ticks: code rank
        x = x0 + frac * plot_w
        d.line([(x, y0), (x, y0 + 4)], fill=AXIS)
        d.text((x, y0 + 6), str(round(frac * k)), fill=TEXT, font=small, anchor="ma")
    d.text(((x0 + x1) / 2, HEIGHT - 22), "codes, sorted by frequency (rank)", fill=TEXT, font=font, anchor="ma")
    d.text((12, (y0 + y1) / 2), "count", fill=TEXT, font=font, anchor="lm")
    head = title or f"codebook usage: {used}/{k} codes used ({100.0 * used / max(k, 1):.1f}%)"
    d.text((x0, 12), head, fill=TEXT, font=font)
    if used < k:
        d.text((x1, 12), f"{k - used} dead codes (red)", fill=DEAD, font=font, anchor="ra")
    return save_image(img, path)
