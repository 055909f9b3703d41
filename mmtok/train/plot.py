"""Line charts with PIL alone: `draw_panels` renders small multiples of (step, value) series.

Used by mmtok.train.curves. Each panel has its own y range (robust to a few early spikes: the 1st to 99th
percentile of long noisy series), all panels share the step axis, and the last value is printed in the
panel's title. Noisy series (many points) are drawn raw in a light colour with a smoothed line on top.
"""
from __future__ import annotations

import math

from PIL import Image, ImageDraw

from mmtok.modalities.image.grid import font

PANEL = (440, 250)
MARGIN = dict(left=64, right=14, top=30, bottom=34)
RAW, SMOOTH, VAL = (178, 196, 232), (32, 82, 178), (200, 64, 32)
OTHER, GRID, AXIS = (80, 80, 80), (228, 228, 228), (90, 90, 90)


def draw_panels(panels: list[tuple[str, list[tuple[int, float]]]], resumes: list[int], *, title: str = "",
                columns: int = 3) -> Image.Image:
    """An RGB image with one chart per (name, points) in `panels`, `columns` per row."""
    columns = max(1, min(columns, len(panels)))
    rows = math.ceil(len(panels) / columns)
    head = 34 if title else 0
    image = Image.new("RGB", (columns * PANEL[0], head + rows * PANEL[1]), "white")
    draw = ImageDraw.Draw(image)
    if title:
        draw.text((10, 8), title, fill=(0, 0, 0), font=font(18))
    steps = [s for _, pts in panels for s, _ in pts]
    x_range = (min(steps), max(steps)) if steps else (0, 1)
    for i, (name, points) in enumerate(panels):
        x0, y0 = (i % columns) * PANEL[0], head + (i // columns) * PANEL[1]
        _panel(draw, (x0, y0), name, points, x_range, resumes)
    return image


def _panel(draw: ImageDraw.ImageDraw, origin, name: str, points, x_range, resumes) -> None:
    small, label = font(11), font(14)
    left, top = origin[0] + MARGIN["left"], origin[1] + MARGIN["top"]
    right, bottom = origin[0] + PANEL[0] - MARGIN["right"], origin[1] + PANEL[1] - MARGIN["bottom"]
    values = [v for _, v in points]
    last = values[-1] if values else None
    draw.text((left, origin[1] + 8), f"{name}   last {_fmt(last)}" if last is not None else name,
              fill=(0, 0, 0), font=label)

    noisy = len(points) > 20 and not name.startswith("val/") and name != "train/lr"
    smooth = _smoothed(values) if noisy else values
    lo, hi = _y_range(values, smooth, robust=noisy)
    xs_lo, xs_hi = x_range if x_range[1] > x_range[0] else (x_range[0], x_range[0] + 1)

    def px(step: float) -> float:
        return left + (step - xs_lo) / (xs_hi - xs_lo) * (right - left)

    def py(value: float) -> float:
        return bottom - (min(max(value, lo), hi) - lo) / (hi - lo) * (bottom - top)

    for t in _ticks(lo, hi):
        y = py(t)
        draw.line([(left, y), (right, y)], fill=GRID)
        draw.text((left - 6, y), _fmt(t), fill=AXIS, font=small, anchor="rm")
    for t in _ticks(xs_lo, xs_hi, integer=True):
        x = px(t)
        draw.line([(x, bottom), (x, bottom + 4)], fill=AXIS)
        draw.text((x, bottom + 6), f"{int(t)}", fill=AXIS, font=small, anchor="mt")
    draw.text(((left + right) / 2, bottom + 20), "step", fill=AXIS, font=small, anchor="mt")
    for r in resumes:
        x = px(r)
        for y in range(int(top), int(bottom), 6):
            draw.line([(x, y), (x, min(y + 3, bottom))], fill=(150, 150, 150))
    draw.rectangle([left, top, right, bottom], outline=AXIS)

    steps = [s for s, _ in points]
    if noisy:
        draw.line([(px(s), py(v)) for s, v in points], fill=RAW, width=1)
        draw.line([(px(s), py(v)) for s, v in zip(steps, smooth)], fill=SMOOTH, width=2)
    else:
        color = VAL if name.startswith("val/") else (OTHER if name == "train/lr" else SMOOTH)
        if len(points) > 1:
            draw.line([(px(s), py(v)) for s, v in points], fill=color, width=2)
        if name.startswith("val/") or len(points) == 1:
            for s, v in points:
                x, y = px(s), py(v)
                draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=color)


def _smoothed(values: list[float]) -> list[float]:
    """An exponential moving average, bias-corrected, over about 1/30 of the series."""
    alpha = 2 / (max(5, len(values) // 30) + 1)
    out, avg, weight = [], 0.0, 0.0
    for v in values:
        avg = (1 - alpha) * avg + alpha * v
        weight = (1 - alpha) * weight + alpha
        out.append(avg / weight)
    return out


def _y_range(values: list[float], smooth: list[float], robust: bool) -> tuple[float, float]:
    if robust:
        ordered = sorted(values)
        lo = min(ordered[int(0.01 * (len(ordered) - 1))], min(smooth))
        hi = max(ordered[int(0.99 * (len(ordered) - 1))], max(smooth))
    else:
        lo, hi = min(values), max(values)
    if hi - lo < 1e-12 * max(1.0, abs(hi)):
        pad = abs(hi) * 0.05 or 1.0
        return lo - pad, hi + pad
    pad = (hi - lo) * 0.06
    return lo - pad, hi + pad


def _ticks(lo: float, hi: float, count: int = 4, integer: bool = False) -> list[float]:
    """Round numbers between lo and hi, about `count` of them."""
    span = hi - lo
    if span <= 0:
        return [lo]
    raw = span / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    if integer:
        step = max(1, round(step))
    first = math.ceil(lo / step) * step
    n = int(math.floor((hi - first) / step + 1e-9)) + 1
    return [first + k * step for k in range(max(0, n))]


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
        return f"{value:.2e}"
    return f"{value:.4g}"
