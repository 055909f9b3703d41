"""Images in, tensors out: any PIL mode to RGB, bytes to RGB, RGB to a `[3, R, R]` float tensor in [-1, 1].

The tensor contract used everywhere in mmtok: float32, channels first, RGB, pixel value `v` in 0..255 maps to
`v / 127.5 - 1`, so black is exactly -1 and white exactly +1.
"""
from __future__ import annotations

import io
import math
import os
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from mmtok.data.bad import one_line_reason
from mmtok.errors import DataError

# file suffixes read as images (folders, packing) and sample keys read as images (shards), in priority order
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm", ".pgm", ".pnm", ".jfif")
IMAGE_KEYS = tuple(s[1:] for s in IMAGE_SUFFIXES)


class ImageDecodeError(DataError):
    """Bytes that are not a decodable image (truncated, corrupt, or not an image at all)."""


def to_rgb(img: Image.Image) -> Image.Image:
    """The image as 8-bit RGB, whatever its mode.

    Transparency (RGBA, LA, PA, P or L/RGB with a transparent colour) is composited on white; 16-bit
    grey (I;16*) is scaled by 255/65535; 32-bit integer grey (I) is taken as 8-bit when every value is
    in 0..255 and as 16-bit otherwise; float grey (F) as 0..1 when its maximum is <= 1, else 0..255;
    1-bit becomes 0/255; CMYK, YCbCr and the rest use PIL's conversion.
    """
    if img.mode == "RGB" and "transparency" not in img.info:
        return img
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return Image.fromarray(_grey_to_uint8(img), "L").convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if img.mode == "1":
        img = img.convert("L")
    return img.convert("RGB")


def _grey_to_uint8(img: Image.Image) -> np.ndarray:
    arr = np.asarray(img)
    if img.mode.startswith("I;16"):
        scaled = arr.astype(np.float64) / 257.0
    elif img.mode == "F":
        arr = np.nan_to_num(arr.astype(np.float64))
        scaled = arr * 255.0 if arr.size and arr.max() <= 1.0 else arr
    elif arr.size and arr.min() >= 0 and arr.max() <= 255:
        scaled = arr.astype(np.float64)
    else:
        scaled = np.clip(arr.astype(np.float64), 0, 65535) / 257.0
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def decode_image(data: bytes, *, min_size: int | None = None) -> Image.Image:
    """Decode encoded image bytes (JPEG, PNG, WebP, ...) to an RGB PIL image, EXIF orientation applied.

    `min_size` lets JPEG decoding skip detail: both sides stay at least `min_size` pixels (when the
    original is that large). Raises ImageDecodeError for bytes that do not decode.
    """
    try:
        with Image.open(io.BytesIO(data)) as img:
            if min_size:
                img.draft("RGB", (min_size, min_size))
            img.load()
            img = ImageOps.exif_transpose(img)
            return to_rgb(img)
    except Exception as e:  # PIL raises many types (OSError, SyntaxError, ValueError, struct.error, ...)
        raise ImageDecodeError(f"cannot decode image: {describe_error(e)}",
                               hint="the file is truncated, corrupt or not an image") from None


def describe_error(e: Exception) -> str:
    """A short one-line reason for an image that failed to open or decode."""
    if isinstance(e, Image.UnidentifiedImageError):
        return "not a recognised image format"
    return one_line_reason(e)


def read_image(path: str | os.PathLike, *, min_size: int | None = None) -> Image.Image:
    """The image file at `path` as RGB; ImageDecodeError when it cannot be read or decoded."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ImageDecodeError(f"cannot read {path}: {e.strerror or e}") from None
    return decode_image(data, min_size=min_size)


def resize_shorter(img: Image.Image, resolution: int) -> Image.Image:
    """Shorter side resized to `resolution` (bicubic, antialiased); an image already that size is returned as is."""
    w, h = img.size
    scale = resolution / min(w, h)
    nw, nh = max(resolution, round(w * scale)), max(resolution, round(h * scale))
    return img if (nw, nh) == (w, h) else img.resize((nw, nh), Image.BICUBIC, reducing_gap=3.0)


def crop_side(resolution: int, min_crop_fraction: float) -> int:
    """The largest shorter side a training crop of `resolution` is cut from: ceil(R / min_crop_fraction)."""
    return math.ceil(resolution / min_crop_fraction - 1e-9)


def resize_and_crop(img: Image.Image, resolution: int, *, random_crop: bool,
                    rng: random.Random | None = None, min_crop_fraction: float = 1.0) -> Image.Image:
    """Shorter side resized to `resolution` (bicubic, antialiased), then a square crop: centred, or at a
    uniformly random position when `random_crop` (drawn from `rng`). With `random_crop` and `min_crop_fraction`
    f < 1 the shorter side is first resized to a whole number of pixels drawn uniformly in [R, ceil(R / f)], so a crop
    covers between f and all of it (ADM's and LlamaGen's random_crop_arr, f = 0.8 there)."""
    side = resolution
    if random_crop and min_crop_fraction < 1:
        side = (rng or random).randint(resolution, crop_side(resolution, min_crop_fraction))
    img = resize_shorter(img, side)
    nw, nh = img.size
    if random_crop:
        rng = rng or random
        x, y = rng.randint(0, nw - resolution), rng.randint(0, nh - resolution)
    else:
        x, y = (nw - resolution) // 2, (nh - resolution) // 2
    return img.crop((x, y, x + resolution, y + resolution))


def pil_to_uint8(img: Image.Image):
    """An RGB PIL image as a uint8 tensor [3, H, W]."""
    import torch

    arr = np.asarray(img.convert("RGB") if img.mode != "RGB" else img, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def uint8_to_unit(x):
    """uint8 pixels (any shape) as float32 in [-1, 1]: 0 -> -1, 255 -> +1."""
    return x.float().div_(127.5).sub_(1.0)


def image_to_tensor(img: Image.Image, resolution: int, *, random_crop: bool,
                    rng: random.Random | None = None, flip: bool = False):
    """`img` (any mode) as a float32 tensor [3, R, R], RGB, values in [-1, 1] (pixel v -> v / 127.5 - 1).

    Shorter side resized to R (bicubic, antialiased), then a centre crop (validation) or a random crop
    (training, positions drawn from `rng`). `flip` mirrors the result horizontally with probability 1/2.
    """
    return uint8_to_unit(image_to_uint8(img, resolution, random_crop=random_crop, rng=rng, flip=flip))


def image_to_uint8(img: Image.Image, resolution: int, *, random_crop: bool,
                   rng: random.Random | None = None, flip: bool = False, min_crop_fraction: float = 1.0):
    """Like image_to_tensor but uint8 [3, R, R] in 0..255 (a quarter of the memory, for shuffle buffers);
    `min_crop_fraction` as in resize_and_crop."""
    out = resize_and_crop(to_rgb(img), resolution, random_crop=random_crop, rng=rng,
                          min_crop_fraction=min_crop_fraction)
    if flip and (rng or random).random() < 0.5:
        out = out.transpose(Image.FLIP_LEFT_RIGHT)
    return pil_to_uint8(out)


def find_images(root: str | os.PathLike) -> list[Path]:
    """Image files under `root`, recursively, sorted; hidden files and folders (".name") are left out."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES):
                found.append(Path(dirpath) / name)
    return found
