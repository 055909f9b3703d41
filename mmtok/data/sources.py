"""One entry point for data of every modality: `build_dataset` (an IterableDataset) and `make_loader` (its
DataLoader). Each modality declares its source builders by kind (`Modality.sources`, see mmtok.modalities).

A source string is one of:
  "demo"                                 photographs bundled with scikit-image (mmtok.modalities.image.demo)
  "shards/train-{000000..000009}.tar"    webdataset shards: brace ranges, globs ("shards/*.tar"), "a::b"
  "pipe:curl -s https://host/x-{0..9}.tar"  or an http(s)://, gs://, s3:// ... URL, read by webdataset
  "photos/"                              a folder of files, searched recursively
Each sample is {MODALITY: float32 tensor, "skipped": int, "bad": list[str], ...} (images: {"image": float32
[3, R, R] in [-1, 1], "caption": str, ...}, see mmtok.modalities.image.stream). `holdout` splits a folder or shards
into train and held-out val (mmtok.data.holdout).
"""
from __future__ import annotations

import glob
import re
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from mmtok.data.holdout import check_holdout
from mmtok.data.stream import DataStreamError
from mmtok.errors import DataError

FORMS_HINT = ("give 'demo', a folder of images, shard files such as 'shards/train-{000000..000009}.tar' or "
              "'shards/*.tar', or a 'pipe:' URL")
_REMOTE = re.compile(r"^(pipe:|[a-zA-Z][a-zA-Z0-9+.-]*://)")
_SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz")


def is_remote(source: str) -> bool:
    """True for URLs webdataset opens itself (pipe:, http://, gs://, ...); local paths and file: are not."""
    return bool(_REMOTE.match(source)) and not source.startswith("file:")


def expand_shards(source: str) -> list[str]:
    """The shard URLs named by `source`: braces expanded, globs matched, local files checked to exist.

    Raises DataError when a local pattern matches no file, or names files that are missing.
    """
    from webdataset.shardlists import expand_urls

    urls = expand_urls(source)
    if is_remote(source):
        return urls
    found, missing = [], []
    for url in urls:
        path = re.sub(r"^file:(//)?", "", url)
        if any(c in path for c in "*?["):
            found.extend(sorted(glob.glob(path)))
        elif Path(path).is_file():
            found.append(path)
        else:
            missing.append(path)
    if not found:
        raise DataError(f"no shard files match {source}",
                        hint=f"check the path and the brace range / glob ({_nearby(urls[0] if urls else source)})")
    if missing:
        raise DataError(f"{len(missing)} of {len(urls)} shard files named by {source} are missing "
                        f"(first: {missing[0]})", hint="fix the brace range to the files that exist")
    return found


def _nearby(path: str) -> str:
    folder = Path(path).parent
    if not folder.is_dir():
        return f"folder {folder} does not exist"
    tars = sorted(p.name for p in folder.iterdir() if p.name.endswith(_SHARD_SUFFIXES))
    if not tars:
        return f"{folder} holds no .tar files"
    shown = ", ".join(tars[:3]) + (", ..." if len(tars) > 3 else "")
    return f"{folder} holds {len(tars)} .tar file(s): {shown}"


def source_kind(source: str) -> str:
    """"demo", "shards" or "folder" for a source string; DataError when it names no data."""
    if not isinstance(source, str) or not source.strip():
        raise DataError(f"no data at {source!r}", hint=FORMS_HINT)
    if source == "demo":
        return "demo"
    if is_remote(source):
        return "shards"
    path = Path(source)
    if path.is_dir():
        return "folder"
    if any(c in source for c in "{*?[") or "::" in source or source.endswith(_SHARD_SUFFIXES):
        return "shards"
    raise DataError(f"no data at {source}", hint=FORMS_HINT)


def build_dataset(source: str, split: str, spec, *, modality: str = "image", shuffle_buffer: int = 1000,
                  seed: int = 0, max_samples: int | None = None, holdout: float = 0.0):
    """An IterableDataset of `modality` samples from `source`: the builder the modality declares for KIND
    (`Modality.sources`; KIND from `source_kind`: demo, shards, folder), called as
    builder(source, split, spec, seed=, max_samples=, shuffle_buffer=, holdout=). `spec` says what one sample
    is: the recipe's model section (a family's validated config: resolution, sample rate, window, ...); for
    images an int resolution R is enough. Image samples (mmtok.modalities.image.stream.ImageStream) are
    {"image": float32 [3, R, R] in [-1, 1], "caption": str, "skipped": int, "bad": list[str]}.

    split "train": endless (with `max_samples`: that many in all, dealt over ranks and workers), shuffled,
    random crops, seeded by `seed`. split "val": one finite deterministic pass, centre crops, at most
    `max_samples` in all (demo: 256 views when None). `shuffle_buffer` decoded uint8 crops per worker are
    held for shuffling (train shards only; 1000 at R=256 is about 200 MB).
    `holdout` (a fraction in [0, 1), folders and shards only): split "val" yields only the samples held out
    by name (mmtok.data.holdout) and split "train" never yields them; 0 uses everything for both.
    Raises DataError when the source names no data, for a bad holdout, or a holdout on "demo" (whose val
    split is already a separate set of photographs), or when no source of that kind exists for the modality;
    the stream raises DataStreamError when a full pass finds no decodable image.
    """
    from mmtok import modalities

    kind = source_kind(source)
    builder = modalities.get(modality).source(kind)
    return builder(source, split, spec, seed=seed, max_samples=max_samples, shuffle_buffer=shuffle_buffer,
                   holdout=check_holdout(holdout))


def collate_samples(samples: list[dict]) -> dict:
    """A batch of samples of one modality: tensors under one key stacked (e.g. "image" float32 [B, 3, R, R]),
    "skipped" int64 [B] (sum it for the batch's drops), "bad" list[str]: the samples' "bad" lists joined
    ("NAME: REASON" entries, usually empty); any other key (captions, names, ...) a list in sample order."""
    batch = {"skipped": torch.tensor([int(s["skipped"]) for s in samples], dtype=torch.long),
             "bad": [entry for s in samples for entry in s.get("bad", ())]}
    for key in samples[0]:
        if key in batch:
            continue
        values = [s[key] for s in samples]
        batch[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
    return batch


def make_loader(source: str, split: str, spec, batch_size: int, num_workers: int = 0,
                shuffle_buffer: int = 1000, seed: int = 0, max_samples: int | None = None, holdout: float = 0.0,
                modality: str = "image"):
    """A DataLoader of batches {MODALITY: float32 [B, ...], "skipped": int64 [B], "bad": list[str], ...} (see
    collate_samples) over `build_dataset(source, split, spec, ..., holdout=holdout)`; for images
    {"image": float32 [B, 3, R, R] in [-1, 1], ...}. Persistent workers when num_workers > 0, pinned memory
    with CUDA. A val pass that yields no batch at all raises DataStreamError."""
    if batch_size < 1 or num_workers < 0:
        raise DataError(f"bad loader settings: batch_size={batch_size}, num_workers={num_workers}",
                        hint="batch_size must be >= 1 and num_workers >= 0")
    dataset = build_dataset(source, split, spec, modality=modality, shuffle_buffer=shuffle_buffer, seed=seed,
                            max_samples=max_samples, holdout=holdout)
    return SampleLoader(dataset, modality=modality, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_samples,
                        persistent_workers=num_workers > 0, pin_memory=torch.cuda.is_available())


class SampleLoader(DataLoader):
    """A DataLoader whose val passes must yield something: a worker cannot tell that the others found
    nothing either, so the check that the whole pass was empty happens here."""

    def __init__(self, dataset, *, modality: str = "image", **kwargs):
        super().__init__(dataset, **kwargs)
        self.modality = modality

    def __iter__(self):
        it = super().__iter__()
        return it if self.dataset.train else self._checked(it)

    def _checked(self, it):
        count = 0
        for batch in it:
            count += 1
            yield batch
        if count == 0 and self.dataset.max_samples != 0:
            hint = "every sample was undecodable, or the data is empty"
            if self.dataset.holdout:
                hint = ("no held-out sample decoded, or none was held out: give validation data (data.val) "
                        "or a larger holdout fraction")
            raise DataStreamError(f"validation data {self.dataset.describe()} yielded no decodable {self.modality} in a "
                                  "full pass", hint=hint)
