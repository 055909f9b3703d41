"""Stick figures of joint positions (PIL only): strips of originals over reconstructions, and animated GIFs.

Joints are [N, T, J, 3] in metres, Y up. Each figure is drawn in an oblique side view (the XZ plane turned by
30 degrees about Y), centred horizontally on the window's mean root position, 1 m = `scale` pixels, so a
figure's travel within a window stays visible. Bones come from the layout's skeleton (left side blue, right
side red, the rest black); a "positions" layout without a skeleton draws its joints as dots.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

VIEW = math.radians(30)
COLOURS = {"left": (40, 90, 200), "right": (200, 50, 40), "centre": (30, 30, 30)}


def _project(joints: np.ndarray, centre: float, scale: float, size: tuple[int, int]) -> np.ndarray:
    """[..., J, 3] metres -> [..., J, 2] pixels: u = x cos + z sin - centre, v = ground at 85% of the height."""
    u = joints[..., 0] * math.cos(VIEW) + joints[..., 2] * math.sin(VIEW) - centre
    w, h = size
    return np.stack([w / 2 + u * scale, h * 0.85 - joints[..., 1] * scale], axis=-1)


def _bones(layout) -> list[tuple[int, int, tuple]]:
    sk = layout.skeleton
    if sk is None:
        return []
    out = []
    for p, j in sk.bones:
        name = sk.joints[j]
        side = "left" if name.startswith("left") else "right" if name.startswith("right") else "centre"
        out.append((p, j, COLOURS[side]))
    return out


def draw_figure(draw: ImageDraw.ImageDraw, pts: np.ndarray, bones, width: int = 2) -> None:
    """One stick figure: pixel points [J, 2]."""
    if bones:
        for p, j, colour in bones:
            draw.line([tuple(pts[p]), tuple(pts[j])], fill=colour, width=width)
    for x, y in pts:
        draw.ellipse([x - 1.5, y - 1.5, x + 1.5, y + 1.5], fill=COLOURS["centre"])


def _to_numpy(joints) -> np.ndarray:
    return joints.detach().cpu().double().numpy() if hasattr(joints, "detach") else np.asarray(joints, np.float64)


def _centre(joints: np.ndarray) -> float:
    root = joints[:, 0]
    return float((root[:, 0] * math.cos(VIEW) + root[:, 2] * math.sin(VIEW)).mean())


def save_strips(real, recon, layout, path: str | Path, *, fps: float, frames: int = 8, scale: float = 40.0,
                cell: tuple[int, int] = (80, 96), labels: list[str] | None = None) -> Path:
    """PNG of each sample n as two rows (original, reconstruction) of `frames` poses evenly spaced in its window.
    real, recon: joints [N, T, J, 3] (tensors or arrays, metres)."""
    real, recon = _to_numpy(real), _to_numpy(recon)
    n, t = real.shape[:2]
    k = min(frames, t)
    idx = np.linspace(0, t - 1, k).round().astype(int)
    w, h = cell
    label_w, gap = 96, 6
    img = Image.new("RGB", (label_w + k * w, n * (2 * h + gap)), "white")
    draw = ImageDraw.Draw(img)
    bones = _bones(layout)
    for i in range(n):
        centre = _centre(real[i])
        for row, (joints, what) in enumerate(((real[i], "original"), (recon[i], "reconstruction"))):
            top = i * (2 * h + gap) + row * h
            name = labels[i] if labels and row == 0 else ""
            draw.text((4, top + 4), f"{what}\n{name}".strip(), fill=(0, 0, 0))
            for c, f in enumerate(idx):
                left = label_w + c * w
                pts = _project(joints[f], centre, scale, (w, h)) + np.array([left, top])
                draw.line([(left, top + h * 0.85), (left + w - 4, top + h * 0.85)], fill=(200, 200, 200))
                draw_figure(draw, pts, bones)
                if row == 0 and i == 0:
                    draw.text((left + 2, top + 2), f"{f / fps:.1f}s", fill=(120, 120, 120))
        draw.line([(0, (i + 1) * (2 * h + gap) - gap // 2), (img.width, (i + 1) * (2 * h + gap) - gap // 2)],
                  fill=(220, 220, 220))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def save_animation(real, recon, layout, path: str | Path, *, fps: float, scale: float = 60.0,
                   size: tuple[int, int] = (160, 160), title: str = "") -> Path:
    """Animated GIF of one clip, original (left) and reconstruction (right) side by side, at `fps`.
    real, recon: joints [T, J, 3] (metres)."""
    real, recon = _to_numpy(real), _to_numpy(recon)
    w, h = size
    bones = _bones(layout)
    centre = _centre(real)
    frames = []
    for f in range(real.shape[0]):
        img = Image.new("RGB", (2 * w, h), "white")
        draw = ImageDraw.Draw(img)
        for col, (joints, what) in enumerate(((real, "original"), (recon, "reconstruction"))):
            draw.line([(col * w, h * 0.85), ((col + 1) * w - 4, h * 0.85)], fill=(200, 200, 200))
            draw_figure(draw, _project(joints[f], centre, scale, (w, h)) + np.array([col * w, 0]), bones)
            draw.text((col * w + 4, 4), what, fill=(0, 0, 0))
        draw.text((4, h - 14), f"{title} {f / fps:.2f}s".strip(), fill=(100, 100, 100))
        frames.append(img.convert("P", palette=Image.ADAPTIVE, colors=16))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=max(20, round(1000 / fps)), loop=0)
    return path
