"""Pack a folder of images into webdataset tar shards: `pack_folder(src, "shards/photos-%06d.tar", ...)`, through
the shared machinery of mmtok.data.pack.

Each sample is `{"__key__": sanitised relative path, "<ext>": image bytes, "txt": caption}`:
- JPEG (and camera MPO), PNG (8-bit) and WebP files are stored byte for byte, under "jpg", "png", "webp";
  anything else (TIFF, BMP, GIF, PPM, 16-bit PNG) is re-encoded as 8-bit RGB PNG (EXIF orientation applied).
- a caption is a sidecar text file with the image's name and ".txt" (photo.jpg -> photo.txt), UTF-8.
- every image is decoded in full first; files that fail are skipped and reported with the reason.
- images whose shorter side is below `min_side` (256 by default, a typical training resolution) are packed
  but listed in `PackReport.small`: training at a larger resolution would upscale them.
Samples are written in a seeded random order (so each shard mixes the folders). With `val_fraction` > 0,
a seeded random `round(val_fraction * n)` of the n image files (at least 1, never all) goes to validation
shards named by `val_pattern(out_pattern)`: "-val" joined to the name before the shard number
("photos-%06d.tar" -> "photos-val-%06d.tar"), or "train" replaced by "val" ("x-train-%06d.tar" -> "x-val-%06d.tar").
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Callable

from mmtok.data.pack import PackReport, check_options, check_source, pack_files
from mmtok.errors import DataError
from mmtok.modalities.image.decode import ImageDecodeError, describe_error, find_images, to_rgb

_KEEP = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "WEBP": "webp"}
_DEEP_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def encode_for_shard(data: bytes) -> tuple[str, bytes]:
    """(extension, bytes) to store for an image file's bytes; raises on anything that does not fully decode."""
    ext, out, _ = _encode(data)
    return ext, out


def _encode(data: bytes) -> tuple[str, bytes, tuple[int, int]]:
    """encode_for_shard, plus the decoded image's (width, height) after EXIF orientation."""
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as img:
        fmt, mode = img.format, img.mode
        img.load()
        rgb = to_rgb(ImageOps.exif_transpose(img))
    ext = _KEEP.get(fmt)
    if ext is not None and mode not in _DEEP_MODES:
        return ext, data, rgb.size
    out = io.BytesIO()
    rgb.save(out, "PNG")
    return "png", out.getvalue(), rgb.size


def pack_folder(src: str | os.PathLike, out_pattern: str, shard_size: int = 1000, val_fraction: float = 0.0,
                seed: int = 0, *, progress: Callable[[int, int, str], None] | None = None,
                min_side: int = 256) -> PackReport:
    """Write the images under `src` (recursive) into shards `out_pattern % i` (train) and
    `val_pattern(out_pattern) % i` (val), `shard_size` samples each. `progress(done, total, file)` is called
    after each file. Images with a shorter side below `min_side` are listed in the report's `small`.
    Raises DataError for a missing folder, a folder without images or a bad pattern."""
    src = check_source(src)
    check_options(out_pattern, shard_size, val_fraction)
    files = find_images(src)
    if not files:
        raise DataError(f"no image files in {src}", hint="put .jpg/.png/.webp files in it (searched recursively)")
    report = PackReport(src=str(src), min_side=int(min_side))

    def encode(path: Path, rel: Path) -> dict:
        try:
            ext, data, (w, h) = _encode(path.read_bytes())
        except Exception as e:  # noqa: BLE001 - any failure to decode is this file's reason to be skipped
            raise ImageDecodeError(describe_error(e)) from e
        if min(w, h) < report.min_side:
            report.small.append((rel.as_posix(), w, h))
        return {ext: data}

    pack_files(src, files, out_pattern, encode, report, shard_size=shard_size, val_fraction=val_fraction, seed=seed,
               progress=progress)
    report.small.sort()
    return report
