"""The image streams' base: `ImageStream` yields {"image": float32 [3, R, R] in [-1, 1], "caption": str,
"skipped": int, "bad": list[str]} (mmtok.data.stream.Stream does the placement, seeding, shuffling and skip
accounting); its sources are the demo photographs, folders and shards (demo.py, folder.py, shards.py)."""
from __future__ import annotations

import random
from typing import Iterator

from mmtok.data.stream import Place, SkipCounter, Split, Stream
from mmtok.errors import DataError
from mmtok.modalities.image.decode import uint8_to_unit


class ImageStream(Stream):
    """Base of the image sources. Subclasses implement `_images(place, rng, skips)`, yielding uint8 [3, R, R]
    tensors, or (uint8 tensor, caption str) pairs when the source has captions, and calling
    `skips.skip(name, reason)` for each sample they drop. A shuffle buffer holds the uint8 crops."""

    def __init__(self, split: Split, resolution: int, **kwargs):
        super().__init__(split, **kwargs)
        if resolution < 1:
            raise DataError(f"resolution must be positive, got {resolution}")
        self.resolution = int(resolution)

    def _images(self, place: Place, rng: random.Random, skips: SkipCounter) -> Iterator:
        raise NotImplementedError

    def _items(self, place: Place, rng: random.Random, skips: SkipCounter) -> Iterator:
        return self._images(place, rng, skips)

    def _to_sample(self, item) -> dict:
        image, caption = item if isinstance(item, tuple) else (item, "")
        return {"image": uint8_to_unit(image), "caption": caption}
