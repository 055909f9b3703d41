"""The image streams' base: `ImageStream` yields {"image": float32 [3, R, R] in [-1, 1], "caption": str,
"skipped": int, "bad": list[str]} (mmtok.data.stream.Stream does the placement, seeding, shuffling and skip
accounting); its sources are the demo photographs, folders and shards (demo.py, folder.py, shards.py)."""
from __future__ import annotations

from mmtok.data.stream import Split, Stream
from mmtok.errors import DataError
from mmtok.modalities.image.decode import crop_side, uint8_to_unit


class ImageStream(Stream):
    """Base of the image sources. Subclasses implement `_items(place, rng, skips)`, yielding uint8 [3, R, R]
    tensors, or (uint8 tensor, caption str) pairs when the source has captions, and calling
    `skips.skip(name, reason)` for each sample they drop. A shuffle buffer holds the uint8 crops."""

    def __init__(self, split: Split, resolution: int, *, min_crop_fraction: float = 1.0, **kwargs):
        if split in ("train", "val") and resolution < 1:
            raise DataError(f"resolution must be positive, got {resolution}")
        super().__init__(split, **kwargs)
        self.resolution = int(resolution)
        self.min_crop_fraction = float(min_crop_fraction)  # training crops (decode.resize_and_crop)

    @property
    def decode_side(self) -> int:
        """The shorter side a decoded image must keep (JPEG draft decoding): what its crops are cut from."""
        return crop_side(self.resolution, self.min_crop_fraction) if self.train else self.resolution

    def _to_sample(self, item) -> dict:
        image, caption = item if isinstance(item, tuple) else (item, "")
        return {"image": uint8_to_unit(image), "caption": caption}
