"""Held-out validation from the training data itself: a fixed share of the samples, chosen by name.

`build_dataset(source, split, R, holdout=0.05)` over a folder or shards: the "val" split yields only the
held-out samples and the "train" split never yields them. A sample is held out when
`holdout_score(name) < holdout`, where `name` is the file's path relative to the folder (POSIX separators)
or the webdataset `__key__`, and the score is a keyed hash (BLAKE2b) mapped to [0, 1). So the choice is
deterministic, the same on every machine, rank, worker and Python run, independent of the image bytes, of
the order of the files and of the seed, and a file keeps its side when others are added or removed.

Folders: the file list is known, so the split is exact and never empty: when no file scores below the
fraction (a small folder), the lowest-scoring file is held out; when every file does, the highest-scoring
one stays for training. A folder needs at least 2 files. Local shards get the same rule (`ShardHoldout`): their
sample keys are listed up front from the tar headers (no decoding), so a small shard set also holds out at least
one sample and trains on at least one, decided before training. Remote shards (pipe:, http) cannot be listed:
a holdout on them is refused in one line (give data.val).
"demo" has its own held-out photographs and refuses a holdout (see mmtok.data.sources.build_dataset).
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

from mmtok.errors import DataError

_KEY = b"mmtok-holdout-v1"


def check_holdout(fraction: float) -> float:
    """`fraction` as a float in [0, 1); DataError otherwise."""
    try:
        value = float(fraction)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0.0 <= value < 1.0:  # NaN fails too
        raise DataError(f"holdout must be a fraction in [0, 1), got {fraction!r}",
                        hint="e.g. holdout=0.05 validates on 5% of the training data")
    return value


def holdout_score(name: str) -> float:
    """A stable number in [0, 1) for a sample name: the same everywhere, for every run."""
    digest = hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=8, key=_KEY).digest()
    return int.from_bytes(digest, "big") / 2**64


def is_held_out(name: str, fraction: float) -> bool:
    return fraction > 0 and holdout_score(name) < fraction


def relative_name(path: str | Path, root: str | Path) -> str:
    """The name a folder file is held out by: its path relative to `root`, with "/" separators."""
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return Path(path).as_posix()


def split_files(root: str | Path, files: list, fraction: float) -> tuple[list, list]:
    """(train files, held-out files) of a folder's `files`, in their given order (see the module docstring)."""
    fraction = check_holdout(fraction)
    if fraction == 0:
        return list(files), []
    if len(files) < 2:
        raise DataError(f"cannot hold out part of {root} for validation: it has {len(files)} file(s)",
                        hint="add files, or give separate validation data (data.val)")
    scores = [holdout_score(relative_name(f, root)) for f in files]
    held = [s < fraction for s in scores]
    if not any(held):
        held[scores.index(min(scores))] = True
    if all(held):
        held[scores.index(max(scores))] = False
    return [f for f, h in zip(files, held) if not h], [f for f, h in zip(files, held) if h]


class ShardHoldout:
    """Which samples of local webdataset shards `urls` are held out (module docstring): `held(key)`; `counts` is
    (held out, all samples), or None when the listing stopped early. DataError for remote shards, or fewer than 2
    samples in all.

    The tars' member names are read in order (headers only) without keeping them: a count, the lowest- and the
    highest-scoring key. A large set stops after LIST_LIMIT samples once it has seen keys on both sides of the
    fraction: the plain rule then holds (the fraction of millions of samples is never empty)."""

    LIST_LIMIT = 200_000

    def __init__(self, source: str, urls: list[str], fraction: float):
        from mmtok.data.sources import is_remote

        self.fraction = check_holdout(fraction)
        self.forced_in: set[str] = set()
        self.forced_out: set[str] = set()
        if is_remote(source) or any(is_remote(u) for u in urls):
            raise DataError(f"cannot hold out part of {source} for validation: remote shards cannot be listed to "
                            "choose the held-out samples before training", hint="give validation data (data.val)")
        n = held = 0
        lowest = highest = None  # (score, key)
        complete = True
        for key in shard_keys(urls):
            score = holdout_score(key)
            n, held = n + 1, held + (score < self.fraction)
            lowest = min(lowest, (score, key)) if lowest else (score, key)
            highest = max(highest, (score, key)) if highest else (score, key)
            if n >= self.LIST_LIMIT and 0 < held < n:
                complete = False
                break
        if n < 2:
            raise DataError(f"cannot hold out part of {source} for validation: its shards hold {n} sample(s)",
                            hint="add samples, or give separate validation data (data.val)")
        if held == 0:
            self.forced_in.add(lowest[1])
        elif held == n and complete:
            self.forced_out.add(highest[1])
        self.counts = (held + len(self.forced_in) - len(self.forced_out), n) if complete else None

    def held(self, key: str) -> bool:
        if key in self.forced_in:
            return True
        return key not in self.forced_out and is_held_out(key, self.fraction)


def shard_keys(urls: list[str]):
    """The sample keys of local tar shards in order, read from their member names as webdataset groups them
    (NAME.EXT -> NAME, consecutive members of one sample once); an unreadable tar is skipped here (streaming names
    it)."""
    import tarfile

    from webdataset.tariterators import base_plus_ext

    for url in urls:
        path = re.sub(r"^file:(//)?", "", url)
        previous = None
        try:
            with tarfile.open(path) as tar:
                for member in tar:
                    key, _ = base_plus_ext(member.name)
                    if member.isfile() and key is not None and key != previous:
                        previous = key
                        yield key
        except (OSError, tarfile.TarError):
            continue
