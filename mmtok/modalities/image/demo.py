"""`demo`: colour photographs that ship inside scikit-image, for runs that need data but have none (no network).

Only colour photographs (no greyscale, no drawings or test charts), so reconstruction grids show whether a
model keeps colour. The motorcycle stereo pair stays together in training (its halves are nearly the same
picture), so no validation photo has a near-duplicate in training.

train: random square views of DEMO_TRAIN: a side of 1/8 to 1/2 of the image's shorter side (never below
R when the image allows it, so views are not blurred by upscaling), log-uniform, at a random position,
resized to R (bicubic, antialiased), mirrored half the time. Endless.
val: a fixed list of views (same distribution, no mirroring, drawn from a fixed seed, independent of the run
seed) of DEMO_VAL, a disjoint held-out set of photographs, so validation scores measure generalisation.
`max_samples` views (256 by default), view i read by worker i mod workers.
"""
from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Iterator

from PIL import Image

from mmtok.data.stream import Place, SkipCounter, strided
from mmtok.errors import DataError
from mmtok.modalities.image.decode import pil_to_uint8, read_image
from mmtok.modalities.image.stream import ImageStream

DEMO_TRAIN = (
    "astronaut.png", "rocket.jpg", "hubble_deep_field.jpg", "retina.jpg", "motorcycle_left.png",
    "motorcycle_right.png", "ihc.png",
)
DEMO_VAL = ("chelsea.png", "coffee.png")
DEMO_VAL_SAMPLES = 256


def demo_dir() -> Path:
    """The folder holding scikit-image's bundled sample images."""
    try:
        import importlib.util

        spec = importlib.util.find_spec("skimage")
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the demo data needs scikit-image, which is not installed",
                        hint="pip install scikit-image, or give --data a folder of images or shards")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def load_demo_images(split: str) -> list[Image.Image]:
    """The demo photographs of `split` ("train" or "val") as RGB images."""
    names, folder = DEMO_TRAIN if split == "train" else DEMO_VAL, demo_dir()
    missing = [n for n in names if not (folder / n).is_file()]
    if missing:
        raise DataError(f"demo images missing from {folder}: {', '.join(missing)}",
                        hint="reinstall scikit-image (pip install --force-reinstall scikit-image)")
    return [read_image(folder / n) for n in names]


def view_box(size: tuple[int, int], resolution: int, rng: random.Random) -> tuple[int, int, int, int]:
    """A random square (left, top, right, bottom) inside an image of `size`, side as described above."""
    w, h = size
    short = min(w, h)
    hi = max(1.0, short / 2)
    lo = min(max(short / 8, resolution), hi)
    side = max(1, min(short, round(math.exp(rng.uniform(math.log(lo), math.log(hi))))))
    x, y = rng.randint(0, w - side), rng.randint(0, h - side)
    return x, y, x + side, y + side


class DemoStream(ImageStream):
    """Views of the bundled photographs (see the module docstring)."""

    def __init__(self, split, resolution: int, *, seed: int = 0, max_samples: int | None = None,
                 shuffle_buffer: int = 0):
        super().__init__(split, resolution, seed=seed, max_samples=max_samples, shuffle_buffer=0)
        self.source = "demo"
        self._cache: list[Image.Image] | None = None

    def _known_size(self) -> int:
        return DEMO_VAL_SAMPLES if self.max_samples is None else self.max_samples

    def __getstate__(self):  # workers load their own copy rather than receive pickled pixels
        return {**self.__dict__, "_cache": None}

    def _items(self, place: Place, rng: random.Random, skips: SkipCounter) -> Iterator:
        if self._cache is None:
            self._cache = load_demo_images(self.split)
        images, r = self._cache, self.resolution
        if self.train:
            while True:
                img = rng.choice(images)
                out = img.resize((r, r), Image.BICUBIC, box=view_box(img.size, r, rng), reducing_gap=3.0)
                if rng.random() < 0.5:
                    out = out.transpose(Image.FLIP_LEFT_RIGHT)
                yield pil_to_uint8(out)
        fixed = random.Random(f"mmtok-demo-val-{r}")
        n = DEMO_VAL_SAMPLES if self.max_samples is None else self.max_samples
        views = [(i % len(images), view_box(images[i % len(images)].size, r, fixed)) for i in range(n)]
        for _, (k, box) in strided(iter(views), place, None):
            yield pil_to_uint8(images[k].resize((r, r), Image.BICUBIC, box=box, reducing_gap=3.0))
