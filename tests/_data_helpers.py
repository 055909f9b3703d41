"""Helpers shared by the data-layer tests: tiny images, shards and comparisons made in memory."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from mmtok.modalities.image.decode import to_rgb

R = 16


def png_bytes(value: int, size=(24, 20)) -> bytes:
    """A solid grey PNG whose pixel value identifies it after decoding (lossless)."""
    buf = io.BytesIO()
    Image.new("RGB", size, (value, value, value)).save(buf, "PNG")
    return buf.getvalue()


def jpeg_bytes(seed: int, size=(40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def write_tar(path: Path, samples: list[tuple[str, dict[str, bytes]]]) -> str:
    """A webdataset shard written by hand: (key, {suffix: bytes}) in order."""
    with tarfile.open(path, "w") as tar:
        for key, entries in samples:
            for suffix, data in entries.items():
                info = tarfile.TarInfo(f"{key}.{suffix}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return str(path)


def ids(samples) -> list[int]:
    """The grey value of each solid-grey sample (image in [-1, 1] -> 0..255)."""
    return [int(round((s["image"].mean().item() + 1) * 127.5)) for s in samples]


def pixel(img: Image.Image) -> tuple:
    return to_rgb(img).getpixel((0, 0))


def close(a, b, tol=1):
    return all(abs(x - y) <= tol for x, y in zip(a, b))
