"""Held-out validation from the training data itself: a fixed share of the samples, chosen by name.

`build_dataset(source, split, R, holdout=0.05)` over a folder or shards: the "val" split yields only the
held-out samples and the "train" split never yields them. A sample is held out when
`holdout_score(name) < holdout`, where `name` is the file's path relative to the folder (POSIX separators)
or the webdataset `__key__`, and the score is a keyed hash (BLAKE2b) mapped to [0, 1). So the choice is
deterministic, the same on every machine, rank, worker and Python run, independent of the image bytes, of
the order of the files and of the seed, and a file keeps its side when others are added or removed.

Folders: the file list is known, so the split is exact and never empty: when no file scores below the
fraction (a small folder), the lowest-scoring file is held out; when every file does, the highest-scoring
one stays for training. A folder needs at least 2 image files. Shards are streamed, so their held-out part
is whatever scores below the fraction; if none does, validation stops with a DataError that says so.
"demo" has its own held-out photographs and refuses a holdout (see mmtok.data.sources.build_dataset).
"""
from __future__ import annotations

import hashlib
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
        raise DataError(f"cannot hold out part of {root} for validation: it has {len(files)} image file(s)",
                        hint="add images, or give separate validation data (data.val)")
    scores = [holdout_score(relative_name(f, root)) for f in files]
    held = [s < fraction for s in scores]
    if not any(held):
        held[scores.index(min(scores))] = True
    if all(held):
        held[scores.index(max(scores))] = False
    return [f for f, h in zip(files, held) if not h], [f for f, h in zip(files, held) if h]
