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

With `holdout` > 0, "val" keeps only the samples whose `__key__` is held out and "train" only the others
(mmtok.data.holdout.ShardHoldout: chosen before training from the tars' member names, at least one sample on each
side; remote shards are refused). A dropped sample is named "KEY in SHARD", an
unreadable tar by its URL (see mmtok.data.stream). A sample's "caption" is its "txt" entry (`mmtok data pack`
writes it from NAME.txt), else "caption" / "text" of its "json", else "".
"""
from __future__ import annotations

import random
from typing import Iterator

from mmtok.data.holdout import ShardHoldout
from mmtok.data.stream import DataStreamError, Place, SkipCounter, shard_caption, strided
from mmtok.modalities.image.decode import IMAGE_KEYS, ImageDecodeError, decode_image, image_to_uint8
from mmtok.modalities.image.stream import ImageStream

_HINT = ("samples need an image entry (jpg, png, webp, ...); check the shards with "
         "`tar tf SHARD | head`, or rebuild them with `mmtok data pack FOLDER OUT_PATTERN`")


class ShardStream(ImageStream):
    """Images from webdataset shards `urls` (already expanded and checked by the caller)."""

    def __init__(self, source: str, urls: list[str], split, resolution: int, *, seed: int = 0,
                 max_samples: int | None = None, shuffle_buffer: int = 0, holdout: float = 0.0,
                 min_crop_fraction: float = 1.0):
        super().__init__(split, resolution, seed=seed, max_samples=max_samples, shuffle_buffer=shuffle_buffer,
                         holdout=holdout, min_crop_fraction=min_crop_fraction)
        self.source, self.urls = source, list(urls)
        self.rule = ShardHoldout(source, self.urls, self.holdout) if self.holdout else None  # chosen up front
        self.held_counts = self.rule.counts if self.rule else None

    def _items(self, place: Place, rng: random.Random, skips: SkipCounter) -> Iterator:
        import webdataset as wds

        good, kept = [0], [0]  # decoded images; samples on this split's side of the holdout

        def handler(exn: Exception) -> bool:  # a tar that cannot be opened or read: count it, go on
            skips.skip(self._url_of(exn), f"unreadable shard data ({type(exn).__name__}: {_first(exn)})")
            return True

        def mine_only(src):  # this split's side of the holdout, decided by key before any decoding
            for sample in src:
                if self.rule is None or self.rule.held(str(sample.get("__key__"))) == (not self.train):
                    kept[0] += 1
                    yield sample

        if self.train:
            shards = wds.ResampledShards(self.urls, seed=rng.randrange(2**62), worker_seed=lambda: 0,
                                         deterministic=True)
            samples = wds.DataPipeline(shards, self._coverage_guard(good, kept, skips),
                                       wds.tarfile_to_samples(handler=handler), mine_only)
            yield from self._decoded(iter(samples), good, skips, rng)
            return
        if self.max_samples is None and len(self.urls) >= place.total:
            samples = wds.DataPipeline(wds.SimpleShardList(self.urls), wds.split_by_node, wds.split_by_worker,
                                       wds.tarfile_to_samples(handler=handler), mine_only)
            mine = iter(samples)
        else:
            samples = wds.DataPipeline(wds.SimpleShardList(self.urls), wds.tarfile_to_samples(handler=handler),
                                       mine_only)
            mine = (s for _, s in strided(iter(samples), place, self.max_samples))
        yield from self._decoded(mine, good, skips, rng)
        if good[0] == 0 and place.total == 1 and self.max_samples != 0:
            raise self._nothing(skips, kept[0])

    def _nothing(self, skips: SkipCounter, kept: int) -> DataStreamError:
        if self.holdout and kept == 0:
            return DataStreamError(
                f"{self.describe()} is empty: no sample key of its {len(self.urls)} shard(s) falls in it",
                hint="give validation data (data.val) or a larger holdout fraction")
        return DataStreamError(
            f"no decodable image in the {len(self.urls)} shard(s) of {self.describe()} "
            f"({skips.total} sample(s) dropped: {skips.describe()})", hint=_HINT)

    def _url_of(self, exn: Exception) -> str:
        """The shard URL webdataset appended to the exception's args, else the source."""
        for arg in reversed(getattr(exn, "args", ()) or ()):
            if isinstance(arg, str) and arg in self.urls:
                return arg
        return self.source

    def _decoded(self, samples: Iterator[dict], good: list, skips: SkipCounter, rng) -> Iterator:
        for sample in samples:
            key = next((k for k in IMAGE_KEYS if k in sample), None)
            where = f"{sample.get('__key__')} in {sample.get('__url__')}"
            if key is None:
                keys = ", ".join(sorted(k for k in sample if not k.startswith("__"))) or "none"
                skips.skip(where, f"no image entry (entries: {keys})")
                continue
            try:
                img = decode_image(sample[key], min_size=self.decode_side)
            except ImageDecodeError as e:
                skips.skip(where, e.message)
                continue
            good[0] += 1
            yield (image_to_uint8(img, self.resolution, random_crop=self.train, rng=rng, flip=self.train,
                                  min_crop_fraction=self.min_crop_fraction),
                   shard_caption(sample))

    def _coverage_guard(self, good: list, kept: list, skips: SkipCounter):
        """A pipeline stage over the resampled shard URLs: when asked for another shard after every shard
        has been read in full at least once and not one image decoded, raise instead of looping forever."""
        everything = set(self.urls)

        def guard(src):
            seen = set()
            for item in src:
                if good[0] == 0 and seen >= everything:
                    raise self._nothing(skips, kept[0])
                seen.add(item["url"])
                yield item

        return guard


def _first(exn: Exception) -> str:
    text = str(exn.args[0]) if exn.args else str(exn)
    return text.splitlines()[0][:200] if text else ""
