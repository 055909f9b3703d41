"""A folder of image files (found recursively), streamed with the same decode / skip / count rules as shards.

train: every worker of every rank takes its own slice of the files (file i goes to worker i mod workers),
reshuffled each pass, endlessly; a worker whose slice is empty or wholly undecodable reads the whole list.
val: one deterministic pass over the first `max_samples` files in sorted order, centre crops, file i read
by worker i mod workers.
With `holdout` > 0, "val" reads only the held-out files and "train" only the others (mmtok.data.holdout).
A file that cannot be read or decoded is dropped and named by its path (see mmtok.data.stream).
A sample's "caption" is the text of NAME.txt beside the image (stripped), "" without one.

train keeps each file it has decoded, already resized (shorter side R, or ceil(R / min_crop_fraction) when training
crops vary in scale), in its worker's memory, up to CACHE_BYTES per worker, and crops later passes from that copy:
with min_crop_fraction 1 the very samples decoding again would give (only the crop and the mirror are random),
without the decode; below 1, crops are resized from that copy rather than from the original. A small folder of
large photographs is otherwise bound by its loader (a 4-megapixel JPEG takes tens of milliseconds to decode, more
than a small model's step per image on a CPU); a file edited during training is read as it was first seen.
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Iterator

from mmtok.data.captions import FolderCaptions
from mmtok.data.holdout import split_files
from mmtok.data.stream import DataStreamError, Place, SkipCounter, strided
from mmtok.modalities.image.decode import ImageDecodeError, decode_image, image_to_uint8, resize_shorter
from mmtok.modalities.image.stream import ImageStream

CACHE_BYTES = 512 * 2**20  # per loader worker; at R = 256 about 1,800 photographs, at R = 64 about 28,000
_HINT = "the files are truncated, corrupt or not images; check a few with an image viewer"


class FolderStream(ImageStream):
    """Images from the files `files` (found under `root` by the caller)."""

    def __init__(self, root: str, files: list[str], split, resolution: int, *, seed: int = 0,
                 max_samples: int | None = None, shuffle_buffer: int = 0, holdout: float = 0.0,
                 min_crop_fraction: float = 1.0):
        super().__init__(split, resolution, seed=seed, max_samples=max_samples, shuffle_buffer=shuffle_buffer,
                         holdout=holdout, min_crop_fraction=min_crop_fraction)
        self.root = str(root)
        train_files, val_files = split_files(root, [str(f) for f in files], self.holdout)
        self.files = val_files if self.holdout and split == "val" else train_files
        self.held_counts = (len(val_files), len(files)) if self.holdout else None
        self.source = self.root
        self.captions = FolderCaptions(self.root, self.files)
        self._resized: dict[str, object] = {}  # train: path -> PIL image, shorter side decode_side (module docstring)
        self._resized_bytes = 0

    def _known_size(self) -> int:
        return len(self.files)

    def _items(self, place: Place, rng: random.Random, skips: SkipCounter) -> Iterator:
        good = [0]
        if not self.train:
            for _, path in strided(iter(self.files), place, self.max_samples):
                yield from self._decoded(path, good, skips, rng)
            if good[0] == 0 and place.total == 1 and self.max_samples != 0:
                raise self._nothing(skips)
            return
        mine = self.files[place.index::place.total] or self.files
        while True:
            before = good[0]
            order = list(mine)
            rng.shuffle(order)
            for path in order:
                yield from self._decoded(path, good, skips, rng)
            if good[0] == before == 0:
                if len(mine) == len(self.files):
                    raise self._nothing(skips)
                mine = self.files  # this slice is all bad: try everything before giving up

    def _decoded(self, path: str, good: list, skips: SkipCounter, rng) -> Iterator:
        img = self._resized.get(path)
        if img is None:
            try:
                data = Path(path).read_bytes()
            except OSError as e:
                skips.skip(path, f"cannot read: {e.strerror or e}")
                return
            try:
                img = decode_image(data, min_size=self.decode_side)
            except ImageDecodeError as e:
                skips.skip(path, e.message)
                return
            if self.train:
                img = resize_shorter(img, self.decode_side)
                size = img.width * img.height * 3
                if self._resized_bytes + size <= CACHE_BYTES:
                    self._resized[path], self._resized_bytes = img, self._resized_bytes + size
        good[0] += 1
        yield (image_to_uint8(img, self.resolution, random_crop=self.train, rng=rng, flip=self.train,
                              min_crop_fraction=self.min_crop_fraction),
               self.captions.get(path))

    def _nothing(self, skips: SkipCounter) -> DataStreamError:
        return DataStreamError(
            f"no decodable image among the {len(self.files)} image file(s) of {self.describe()} "
            f"({skips.total} dropped: {skips.describe()})", hint=_HINT)
