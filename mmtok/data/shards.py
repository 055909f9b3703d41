"""Webdataset tar shards: local patterns, globs, `pipe:` and remote URLs, streamed and decoded with skip counts.

train: shards resampled with replacement (an endless stream that needs no epochs), drawn independently by
every worker of every rank from a seed of its own, samples through a shuffle buffer, random crops.
val: one finite, deterministic pass with centre crops. Without `max_samples` and with at least as many
shards as workers in all, shards are split by node then by worker (webdataset's split_by_node and
split_by_worker); otherwise every worker reads the shards in order and decodes only the samples whose
index i has i mod workers == its own, so the first `max_samples` samples are the same whatever the
number of workers and ranks.

A pass (val) or a full coverage of the shard set (train) with no decodable image raises DataStreamError
instead of streaming nothing forever.
"""
from __future__ import annotations

import random
from typing import Iterator

from mmtok.data.image import IMAGE_KEYS, ImageDecodeError, decode_image, image_to_uint8
from mmtok.data.stream import DataStreamError, ImageStream, Place, SkipCounter, strided

_HINT = ("samples need an image entry (jpg, png, webp, ...); check the shards with "
         "`tar tf SHARD | head`, or rebuild them with `mmtok data pack FOLDER OUT_PATTERN`")


class ShardStream(ImageStream):
    """Images from webdataset shards `urls` (already expanded and checked by the caller)."""

    def __init__(self, source: str, urls: list[str], split, resolution: int, *, seed: int = 0,
                 max_samples: int | None = None, shuffle_buffer: int = 0):
        super().__init__(split, resolution, seed=seed, max_samples=max_samples, shuffle_buffer=shuffle_buffer)
        self.source, self.urls = source, list(urls)

    def _images(self, place: Place, rng: random.Random, skips: SkipCounter) -> Iterator:
        import webdataset as wds

        good = [0]

        def handler(exn: Exception) -> bool:  # a tar that cannot be opened or read: count it, go on
            skips.skip(f"unreadable shard data ({type(exn).__name__}: {_first(exn)})")
            return True

        if self.train:
            shards = wds.ResampledShards(self.urls, seed=rng.randrange(2**62), worker_seed=lambda: 0,
                                         deterministic=True)
            samples = wds.DataPipeline(shards, self._coverage_guard(good, skips),
                                       wds.tarfile_to_samples(handler=handler))
            yield from self._decoded(iter(samples), good, skips, rng)
            return
        if self.max_samples is None and len(self.urls) >= place.total:
            samples = wds.DataPipeline(wds.SimpleShardList(self.urls), wds.split_by_node, wds.split_by_worker,
                                       wds.tarfile_to_samples(handler=handler))
            mine = iter(samples)
        else:
            samples = wds.DataPipeline(wds.SimpleShardList(self.urls), wds.tarfile_to_samples(handler=handler))
            mine = (s for _, s in strided(iter(samples), place, self.max_samples))
        yield from self._decoded(mine, good, skips, rng)
        if good[0] == 0 and place.total == 1 and self.max_samples != 0:
            raise DataStreamError(
                f"no decodable image in the {len(self.urls)} shard(s) of {self.source} "
                f"({skips.total} sample(s) dropped: {skips.describe()})", hint=_HINT)

    def _decoded(self, samples: Iterator[dict], good: list, skips: SkipCounter, rng) -> Iterator:
        for sample in samples:
            key = next((k for k in IMAGE_KEYS if k in sample), None)
            where = f"{sample.get('__key__')} in {sample.get('__url__')}"
            if key is None:
                keys = ", ".join(sorted(k for k in sample if not k.startswith("__"))) or "none"
                skips.skip(f"{where}: no image entry (entries: {keys})")
                continue
            try:
                img = decode_image(sample[key], min_size=self.resolution)
            except ImageDecodeError as e:
                skips.skip(f"{where}: {e.message}")
                continue
            good[0] += 1
            yield image_to_uint8(img, self.resolution, random_crop=self.train, rng=rng, flip=self.train)

    def _coverage_guard(self, good: list, skips: SkipCounter):
        """A pipeline stage over the resampled shard URLs: when asked for another shard after every shard
        has been read in full at least once and not one image decoded, raise instead of looping forever."""
        everything = set(self.urls)

        def guard(src):
            seen = set()
            for item in src:
                if good[0] == 0 and seen >= everything:
                    raise DataStreamError(
                        f"no decodable image in any of the {len(everything)} shard(s) of {self.source} "
                        f"({skips.total} sample(s) dropped: {skips.describe()})", hint=_HINT)
                seen.add(item["url"])
                yield item

        return guard


def _first(exn: Exception) -> str:
    text = str(exn.args[0]) if exn.args else str(exn)
    return text.splitlines()[0][:200] if text else ""
