"""The image data sources, declared by kind in mmtok.modalities.image's Modality.sources ("demo", "shards", "folder").

Each is builder(source, split, spec, *, seed, max_samples, shuffle_buffer, holdout) -> a stream of
{"image": float32 [3, R, R] in [-1, 1], "caption": str, "skipped": int, "bad": list[str]} (see
mmtok.modalities.image.stream); `spec` is R or a model config with `resolution` and `min_crop_fraction` (training
crops of shards and folders; the demo's training views have their own scales).
"""
from __future__ import annotations

from pathlib import Path

from mmtok.errors import DataError


def _resolution(spec) -> int:
    """An image source's R from its spec: an int, or a model config with `resolution`."""
    return int(spec) if isinstance(spec, int) else int(spec.resolution)


def _crops(spec) -> dict:
    """The training-crop setting of a model config's `min_crop_fraction` (an int spec: whole shorter side)."""
    return {} if isinstance(spec, int) else {"min_crop_fraction": float(spec.min_crop_fraction)}


def image_demo(source, split, spec, *, holdout, **kwargs):
    if holdout:
        raise DataError("holdout does not apply to 'demo': its val split is already separate photographs",
                        hint="use split 'val' of 'demo' with holdout=0")
    from mmtok.modalities.image.demo import DemoStream

    return DemoStream(split, _resolution(spec), **kwargs)


def image_shards(source, split, spec, **kwargs):
    from mmtok.data.sources import expand_shards
    from mmtok.modalities.image.shards import ShardStream

    return ShardStream(source, expand_shards(source), split, _resolution(spec), **_crops(spec), **kwargs)


def image_folder(source, split, spec, **kwargs):
    from mmtok.modalities.image.decode import find_images
    from mmtok.modalities.image.folder import FolderStream

    files = find_images(source)
    if not files:
        tars = list(Path(source).glob("*.tar"))
        hint = (f"it holds .tar shards: pass them as a pattern, e.g. '{Path(source) / '*.tar'}'" if tars
                else "put .jpg/.png/.webp files in it (searched recursively)")
        raise DataError(f"no image files in folder {source}", hint=hint)
    return FolderStream(source, files, split, _resolution(spec), **_crops(spec), **kwargs)
