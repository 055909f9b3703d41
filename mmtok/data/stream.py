"""The streaming base shared by every source of every modality (`Stream`): worker/rank placement, seeds, skip
accounting, shuffling, captions beside files and in shards.

Every source yields samples `{MODALITY: tensor, ..., "skipped": int, "bad": list[str]}` (images:
mmtok.modalities.image.stream; audio and motion: their modalities' streams). A caption is a folder's NAME.txt
beside the file or a shard's "txt" entry (or the caption / text of its "json"), "" when there is none.

"bad" lists, as "NAME: REASON" strings, the samples this worker dropped (corrupt, undecodable, unreadable)
since its previous yielded sample *for the first time*: a sample is named once per worker over the life of
the dataset object (persistent DataLoader workers keep it across passes), however many passes re-read it.
NAME is the file path (folders) or "KEY in SHARD" (webdataset shards). Workers and ranks do not share what
they have named, so the same bad sample can appear once per worker: collect the names into a set
(mmtok.data.BadSamples does this).

"skipped" counts drops since the previous yielded sample, the ones after the last sample being added to it:
- val: every drop of this pass, so summing "skipped" over a pass gives the exact number of samples dropped
  in that pass, pass after pass;
- train (endless, re-reads its data): first-time drops only, i.e. len("bad"), so the sum over a stream
  counts distinct bad samples (per worker), not one per pass.
"""
from __future__ import annotations

import os
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Iterator, Literal

from torch.utils.data import IterableDataset, get_worker_info

from mmtok.data.holdout import check_holdout
from mmtok.errors import DataError

Split = Literal["train", "val"]


class DataStreamError(DataError):
    """A DataError raised while streaming. Re-raised from a DataLoader worker, torch rebuilds the exception
    from the worker's whole traceback text; this class keeps only the original one-line message and hint."""

    def __init__(self, message: str, hint: str | None = None):
        if hint is None and "Original Traceback" in message:
            last = [ln for ln in message.strip().splitlines() if ln.strip()][-1]
            message = last.split(": ", 1)[1] if ": " in last else last
            if message.endswith(")") and " (hint: " in message:
                message, hint = message[:-1].rsplit(" (hint: ", 1)
        super().__init__(message, hint)


@dataclass(frozen=True)
class Place:
    """Where this iterator runs: distributed rank among `world`, DataLoader worker among `workers`."""

    rank: int = 0
    world: int = 1
    worker: int = 0
    workers: int = 1

    @property
    def index(self) -> int:
        return self.rank * self.workers + self.worker

    @property
    def total(self) -> int:
        return self.world * self.workers

    @staticmethod
    def current() -> "Place":
        """Rank from torch.distributed when initialised (else the RANK/WORLD_SIZE variables webdataset also
        reads), worker from the DataLoader."""
        import torch.distributed as dist

        rank, world = 0, 1
        if dist.is_available() and dist.is_initialized():
            rank, world = dist.get_rank(), dist.get_world_size()
        elif "RANK" in os.environ and "WORLD_SIZE" in os.environ:
            rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return Place(rank, world, worker, workers)


class SkipCounter:
    """Samples dropped in one pass: since the last `take()`, in all, the first reason (for error messages),
    and the "NAME: REASON" entries of samples dropped for the first time. `seen` holds the names already
    reported (it outlives the pass); with `distinct` the pending count includes first-time drops only."""

    def __init__(self, seen: set[str] | None = None, distinct: bool = False):
        self.pending = 0
        self.total = 0
        self.reasons: list[str] = []
        self.seen = seen if seen is not None else set()
        self.distinct = distinct
        self.new: list[str] = []

    def skip(self, name: str, reason: str) -> None:
        entry = f"{name}: {reason}"
        first = name not in self.seen
        if first:
            self.seen.add(name)
            self.new.append(entry)
        if first or not self.distinct:
            self.pending += 1
        self.total += 1
        if not self.reasons:
            self.reasons.append(entry)

    def take(self) -> tuple[int, list[str]]:
        """(drops to count, first-time "NAME: REASON" entries) since the previous take()."""
        n, new = self.pending, self.new
        self.pending, self.new = 0, []
        return n, new

    def describe(self) -> str:
        """The first reason, for one-line messages."""
        return ("e.g. " + self.reasons[0]) if self.reasons else "no sample at all"


def shard_caption(sample: dict) -> str:
    """The caption of a webdataset sample: its "txt" entry, else "caption" / "text" of its "json", else ""."""
    import json

    if "txt" in sample:
        text = sample["txt"]
        return (text.decode("utf-8", errors="replace") if isinstance(text, bytes) else str(text)).strip()
    if "json" in sample:
        try:
            data = json.loads(sample["json"])
        except ValueError:
            return ""
        if isinstance(data, dict):
            return str(data.get("caption") or data.get("text") or "").strip()
    return ""


class Stream(IterableDataset, ABC):
    """Base of every source of every modality. A subclass implements `_items(place, rng, skips)`, yielding its
    items and calling `skips.skip(name, reason)` for each sample it drops, and `_to_sample(item)`, which turns an
    item into the sample dict ({MODALITY: tensor, ...} without "skipped" / "bad"). Items wait in the shuffle
    buffer in the subclass's compact form (e.g. uint8 images), samples are made as they leave it.

    train: infinite (unless `max_samples`, dealt over ranks and workers), shuffled through a buffer of
    `shuffle_buffer` items, seeded per (seed, pass, rank, worker). val: finite and deterministic; `max_samples`
    caps the samples drawn from the source. `holdout` (applied by the subclasses, see mmtok.data.holdout): split
    "val" sees only the held-out part, "train" never sees it.
    """

    def __init__(self, split: Split, *, seed: int = 0, max_samples: int | None = None, shuffle_buffer: int = 0,
                 holdout: float = 0.0):
        super().__init__()
        if split not in ("train", "val"):
            raise DataError(f"unknown split {split!r}", hint="use 'train' or 'val'")
        if max_samples is not None and max_samples < 0:
            raise DataError(f"max_samples must be >= 0, got {max_samples}")
        self.split, self.seed = split, int(seed)
        self.max_samples, self.shuffle_buffer = max_samples, int(shuffle_buffer)
        self.holdout = check_holdout(holdout)
        self.source = ""  # what the data is, for messages; set by subclasses
        self.held_counts: tuple[int, int] | None = None  # with a holdout: (held out, all), when the source knows
        self._passes = 0
        self._named: set[str] = set()  # bad samples this worker has already reported in a "bad" list

    def describe(self) -> str:
        """The source for messages, with the held-out part when there is one."""
        if not self.holdout:
            return self.source
        part = "held-out" if self.split == "val" else "training"
        return f"the {part} part of {self.source} (holdout {self.holdout:g})"

    @property
    def train(self) -> bool:
        return self.split == "train"

    def pass_size(self) -> int | None:
        """How many samples one "val" pass reads (before any is dropped as undecodable), when the source knows
        without reading them (a listed folder, the demo, counted held-out shards); None otherwise."""
        known = self._known_size()
        if known is None or self.train:
            return None
        return known if self.max_samples is None else min(known, self.max_samples)

    def _known_size(self) -> int | None:
        """Subclasses that know their val pass's length say it here."""
        return self.held_counts[0] if self.held_counts else None

    @abstractmethod
    def _items(self, place: Place, rng: random.Random, skips: SkipCounter) -> Iterator:
        """This pass's items for this worker (train: endless unless the source is finite by nature)."""

    @abstractmethod
    def _to_sample(self, item) -> dict:
        """An item as the sample dict, without "skipped" / "bad"."""

    def __iter__(self) -> Iterator[dict]:
        place = Place.current()
        rng = random.Random(f"{self.seed}-{self._passes}-{place.rank}-{place.worker}")
        self._passes += 1
        skips = SkipCounter(self._named, distinct=self.train)
        items = self._items(place, rng, skips)
        if self.train and self.max_samples is not None:
            items = _take(items, _share(self.max_samples, place))
        if self.train and self.shuffle_buffer > 1:
            items = _shuffled(items, self.shuffle_buffer, rng)
        held, held_skips = None, (0, [])
        for item in items:  # hold one back so drops after the last sample still reach the caller
            if held is not None:
                yield {**self._to_sample(held), "skipped": held_skips[0], "bad": held_skips[1]}
            held, held_skips = item, skips.take()
        if held is not None:
            n, bad = skips.take()
            yield {**self._to_sample(held), "skipped": held_skips[0] + n, "bad": held_skips[1] + bad}


def _share(n: int, place: Place) -> int:
    """This worker's part of `n` items dealt round-robin over every worker of every rank."""
    return n // place.total + (1 if place.index < n % place.total else 0)


def _take(items: Iterator, n: int) -> Iterator:
    if n <= 0:
        return
    for i, item in enumerate(items, 1):
        yield item
        if i >= n:
            return


def _shuffled(items: Iterator, size: int, rng: random.Random) -> Iterator:
    """A shuffle buffer of up to `size` items. It starts yielding after min(size, 100) items and grows by one
    item per item yielded until full, so the first batch does not wait for the whole buffer."""
    end = object()
    items, buf, start = iter(items), [], min(size, 100)
    for item in items:
        buf.append(item)
        if len(buf) < size:
            extra = next(items, end)
            if extra is not end:
                buf.append(extra)
        if len(buf) >= start:
            j = rng.randrange(len(buf))
            buf[j], buf[-1] = buf[-1], buf[j]
            yield buf.pop()
    rng.shuffle(buf)
    yield from buf


def strided(items: Iterator, place: Place, limit: int | None) -> Iterator[tuple[int, object]]:
    """(index, item) for the items of the first `limit` (all when None) whose index belongs to this worker:
    item i goes to worker i mod total, so every worker and rank together see each item exactly once."""
    for i, item in enumerate(items):
        if limit is not None and i >= limit:
            return
        if i % place.total == place.index:
            yield i, item
