"""Audio streams: folders of audio files, webdataset shards and the built-in demo speech, with the same worker /
rank placement, seeding, shuffling and skip accounting as the image streams (mmtok.data.stream).

Every sample is {"audio": float32 [C, S] in [-1, 1], "text": str, "name": str, "skipped": int, "bad": list[str]}:
S samples at the model's sample rate (mmtok.modalities.audio.decode.AudioSpec), "text" the transcript (a folder's
manifest row or NAME.txt beside the file, mmtok.data.captions; a shard's "txt" entry) or "", "name" the segment's
"FILE#k" (a shard's "KEY#k") in validation, "" in training.
train: endless, one random segment per file visit (a file shorter than the segment is zero-padded), files
reshuffled every pass (shards: resampled), seeded per (seed, pass, rank, worker), a shuffle buffer over segments.
val: one deterministic pass over consecutive, non-overlapping segments of every file in sorted order (a file
shorter than one segment gives one padded segment), at most `max_samples` segments in all, segment i read by
worker i mod workers.
A file that cannot be read, does not decode or is silent is skipped, counted and named (mmtok.data.stream).
When no file of the data is as long as one segment, the stream stops with one DataStreamError saying so.
"""
from __future__ import annotations

import random
from typing import Iterator

import numpy as np

from mmtok.data.captions import FolderCaptions
from mmtok.data.holdout import ShardHoldout, split_files
from mmtok.data.stream import (
    DataStreamError,
    Place,
    SkipCounter,
    Stream,
    _share,
    shard_caption,
    strided,
)
from mmtok.modalities.audio.decode import (
    AUDIO_KEYS,
    AudioDecodeError,
    AudioSpec,
    audio_frames,
    decode_audio,
    fixed_segment,
    prepare,
    random_segment,
    read_audio,
    segment_count,
)

_HINT = "the files are truncated, corrupt, silent or not audio; check a few with an audio player"


class AudioStream(Stream):
    """Base of the audio sources: subclasses implement `_items(place, rng, skips)`, yielding
    (float32 [C, S] array, text, name: "FILE#k" for segment k of a validation pass, "" in training) and calling
    `skips.skip(name, reason)` for each file they drop."""

    def __init__(self, split: str, spec: AudioSpec, **kwargs):
        super().__init__(split, **kwargs)
        self.spec = spec

    def _to_sample(self, item) -> dict:
        import torch

        wave, text, name = item
        return {"audio": torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)), "text": text, "name": name}

    def _too_short(self, longest: float) -> DataStreamError:
        return DataStreamError(
            f"the {self.spec.seconds:g} s segment is longer than every audio file of {self.describe()} (longest "
            f"{longest:.2f} s)", hint="shorten model.segment_seconds, or give longer recordings")



class AudioFileStream(AudioStream):
    """Audio from a list of files (a folder searched by the caller, or the demo's clips). With `holdout`, the
    files are split by their path relative to `root` (mmtok.data.holdout)."""

    def __init__(self, root: str, files: list, split: str, spec: AudioSpec, *, source: str | None = None, **kwargs):
        super().__init__(split, spec, **kwargs)
        self.root = str(root)
        train_files, val_files = split_files(root, [str(f) for f in files], self.holdout)
        self.files = val_files if self.holdout and split == "val" else train_files
        self.held_counts = (len(val_files), len(files)) if self.holdout else None
        self.source = source or self.root
        self.captions = FolderCaptions(self.root, self.files)

    def _known_size(self) -> None:
        return None  # a file is cut into several segments: a val pass's length is known only once read

    def _decoded(self, path: str, skips: SkipCounter):
        """(prepared wave [C, N], transcript), or None after counting the file as skipped."""
        try:
            wave, sr = read_audio(path)
        except AudioDecodeError as e:
            skips.skip(path, e.message)
            return None
        return prepare(wave, sr, self.spec), self.captions.get(path)

    def _items(self, place: Place, rng: random.Random, skips: SkipCounter) -> Iterator:
        seg = self.spec.segment
        state = {"good": 0, "longest": 0.0}
        if self.train:
            mine = self.files[place.index::place.total] or self.files
            while True:
                before = state["good"]
                order = list(mine)
                rng.shuffle(order)
                for path in order:
                    item = self._decoded(path, skips)
                    if item is None:
                        continue
                    state["good"] += 1
                    state["longest"] = max(state["longest"], item[0].shape[1] / self.spec.sample_rate)
                    yield random_segment(item[0], seg, rng), item[1], ""
                everything = len(mine) == len(self.files)
                if state["good"] == before == 0:
                    if everything:
                        raise self._nothing(skips)
                    mine = self.files  # this slice is all bad: try everything before giving up
                elif state["longest"] < self.spec.seconds:
                    if everything:
                        raise self._too_short(state["longest"])
                    mine = self.files  # this slice is all short: look at everything before giving up
        yield from self._val_segments(place, skips, state)
        if place.total == 1 and self.max_samples != 0:
            if state["good"] == 0:
                raise self._nothing(skips)
            if state["longest"] < self.spec.seconds:
                raise self._too_short(state["longest"])

    def _val_segments(self, place: Place, skips: SkipCounter, state: dict) -> Iterator:
        """Segment i of the pass goes to worker i mod workers; each worker decodes only the files it needs."""
        cache: tuple[str, object] | None = None
        for _, (path, k) in strided(self._segment_index(), place, self.max_samples):
            if cache is None or cache[0] != path:
                cache = (path, self._decoded(path, skips))
                if cache[1] is not None:
                    state["good"] += 1
                    state["longest"] = max(state["longest"], cache[1][0].shape[1] / self.spec.sample_rate)
            if cache[1] is not None:
                yield fixed_segment(cache[1][0], self.spec.segment, k), cache[1][1], f"{self._name(path)}#{k}"

    def _name(self, path: str) -> str:
        from mmtok.data.holdout import relative_name

        return relative_name(path, self.root)

    def _segment_index(self) -> Iterator[tuple[str, int]]:
        """(file, segment number) over every file in order, counted from the file headers (a file whose header
        does not read gives one entry, where decoding then names the problem)."""
        for path in self.files:
            info = audio_frames(path)
            n = 1 if info is None else segment_count(int(info[0] * self.spec.sample_rate / info[1]), self.spec.segment)
            for k in range(n):
                yield path, k

    def _nothing(self, skips: SkipCounter) -> DataStreamError:
        return DataStreamError(f"no decodable audio among the {len(self.files)} file(s) of {self.describe()} "
                               f"({skips.total} dropped: {skips.describe()})", hint=_HINT)


class AudioShardStream(AudioStream):
    """Audio from webdataset shards `urls` (expanded and checked by the caller): a sample's first entry among
    AUDIO_KEYS is decoded, its "txt" entry (if any) is the transcript. train: shards resampled with replacement;
    val: one ordered pass, sample i (before segmenting) decoded by worker i mod workers."""

    def __init__(self, source: str, urls: list[str], split: str, spec: AudioSpec, **kwargs):
        super().__init__(split, spec, **kwargs)
        self.source, self.urls = source, list(urls)
        self.rule = ShardHoldout(source, self.urls, self.holdout) if self.holdout else None  # chosen up front
        self.held_counts = self.rule.counts if self.rule else None

    def _items(self, place: Place, rng: random.Random, skips: SkipCounter) -> Iterator:
        import webdataset as wds

        state = {"good": 0, "longest": 0.0, "kept": 0}

        def handler(exn: Exception) -> bool:
            skips.skip(self.source, f"unreadable shard data ({type(exn).__name__}: {str(exn)[:200]})")
            return True

        def mine_only(src):
            for sample in src:
                if self.rule is None or self.rule.held(str(sample.get("__key__"))) == (not self.train):
                    state["kept"] += 1
                    yield sample

        if self.train:
            shards = wds.ResampledShards(self.urls, seed=rng.randrange(2**62), worker_seed=lambda: 0,
                                         deterministic=True)
            samples = wds.DataPipeline(shards, self._coverage_guard(state, skips),
                                       wds.tarfile_to_samples(handler=handler), mine_only)
            for wave, text, _ in self._decoded(iter(samples), skips, state):
                yield random_segment(wave, self.spec.segment, rng), text, ""
            return
        samples = wds.DataPipeline(wds.SimpleShardList(self.urls), wds.tarfile_to_samples(handler=handler), mine_only)
        count = 0
        for _, sample in strided(iter(samples), place, None):
            for wave, text, key in self._decoded(iter([sample]), skips, state):
                for k in range(segment_count(wave.shape[1], self.spec.segment)):
                    if self.max_samples is not None and count >= _share(self.max_samples, place):
                        return
                    count += 1
                    yield fixed_segment(wave, self.spec.segment, k), text, f"{key}#{k}"
        if place.total == 1 and self.max_samples != 0:
            if state["good"] == 0:
                raise self._nothing(skips, state["kept"])
            if state["longest"] < self.spec.seconds:
                raise self._too_short(state["longest"])

    def _decoded(self, samples: Iterator[dict], skips: SkipCounter, state: dict) -> Iterator:
        for sample in samples:
            key = next((k for k in AUDIO_KEYS if k in sample), None)
            where = f"{sample.get('__key__')} in {sample.get('__url__')}"
            if key is None:
                keys = ", ".join(sorted(k for k in sample if not k.startswith("__"))) or "none"
                skips.skip(where, f"no audio entry (entries: {keys})")
                continue
            try:
                wave, sr = decode_audio(sample[key])
            except AudioDecodeError as e:
                skips.skip(where, e.message)
                continue
            wave = prepare(wave, sr, self.spec)
            state["good"] += 1
            state["longest"] = max(state["longest"], wave.shape[1] / self.spec.sample_rate)
            yield wave, shard_caption(sample), str(sample.get("__key__"))

    def _coverage_guard(self, state: dict, skips: SkipCounter):
        """Over the resampled shard URLs: once every shard was read in full, stop with one error when no audio
        decoded, or when none was as long as a segment."""
        everything = set(self.urls)

        def guard(src):
            seen = set()
            for item in src:
                if seen >= everything:
                    if state["good"] == 0:
                        raise self._nothing(skips, state["kept"])
                    if state["longest"] < self.spec.seconds:
                        raise self._too_short(state["longest"])
                seen.add(item["url"])
                yield item

        return guard

    def _nothing(self, skips: SkipCounter, kept: int) -> DataStreamError:
        if self.holdout and kept == 0:
            return DataStreamError(f"{self.describe()} is empty: no sample key of its {len(self.urls)} shard(s) "
                                   "falls in it", hint="give validation data (data.val) or a larger holdout fraction")
        return DataStreamError(f"no decodable audio in the {len(self.urls)} shard(s) of {self.describe()} "
                               f"({skips.total} sample(s) dropped: {skips.describe()})",
                               hint="samples need an audio entry (flac, wav, ogg, mp3); rebuild them with "
                               "`mmtok data pack FOLDER OUT_PATTERN`")
