"""Packing files into webdataset tar shards, for every modality: `pack_files` (a seeded order, a seeded validation
share, captions from manifests or sidecar files, keys from relative paths, bad files skipped and reported) writes what
a modality's packer
encodes (images: mmtok.modalities.image.pack; audio: mmtok.modalities.audio.pack); `PackReport` says what was
written. Shard patterns: "shards/photos-%06d.tar"; validation shards are named by `val_pattern(out_pattern)`: "-val"
joined to the name before the shard number ("photos-%06d.tar" -> "photos-val-%06d.tar"), or "train" replaced by
"val" ("x-train-%06d.tar" -> "x-val-%06d.tar").
"""
from __future__ import annotations

import os
import random
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional

from mmtok.data.bad import one_line_reason
from mmtok.errors import DataError

_FIELD = re.compile(r"%0?\d*d")


@dataclass
class PackReport:
    """What a packer (e.g. mmtok.modalities.image.pack.pack_folder) wrote. Patterns use brace ranges ("shards/photos-{000000..000002}.tar") and are
    None when nothing was written to that split."""

    src: str
    modality: str = "image"
    train_written: int = 0
    val_written: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path relative to src, reason)
    captions: int = 0  # samples that got a caption (a manifest row or a sidecar NAME.txt, mmtok.data.captions)
    caption_sources: str = ""  # where the captions came from, one line (mmtok.data.captions.FolderCaptions.describe)
    ignored: int = 0  # files that are neither images nor captions
    train_pattern: Optional[str] = None
    val_pattern: Optional[str] = None
    train_shards: list[str] = field(default_factory=list)
    val_shards: list[str] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)  # older shard files just past the range written
    min_side: int = 256
    small: list[tuple[str, int, int]] = field(default_factory=list)  # (path, width, height), shorter side < min_side
    seconds: float = 0.0  # audio: the packed duration
    caption_label: str = "caption"  # what a sample's "txt" is, in the summary ("caption", "transcript")
    train_recipe: str = "quickstart"  # the shipped recipe the summary's train command names

    @property
    def skipped_count(self) -> int:
        return len(self.skipped)

    def to_dict(self) -> dict:
        return {**asdict(self), "skipped": [{"file": f, "reason": r} for f, r in self.skipped],
                "small": [{"file": f, "width": w, "height": h} for f, w, h in self.small]}

    def small_warning(self, shown: int = 3) -> str | None:
        """One line about the images smaller than `min_side` (None when there are none)."""
        if not self.small:
            return None
        n = len(self.small)
        names = ", ".join(f"{f} ({w}x{h})" for f, w, h in self.small[:shown]) + (", ..." if n > shown else "")
        return (f"{n} image{'s have' if n != 1 else ' has'} a shorter side below {self.min_side} px: {names}; "
                f"training at a larger resolution upscales them (blurry targets)")


def check_pattern(out_pattern: str) -> None:
    """DataError unless `out_pattern` has one printf shard-number field (%06d) in its file name and ends in .tar."""
    hint = "e.g. shards/photos-%06d.tar writes photos-000000.tar, photos-000001.tar, ..."
    name = os.path.basename(out_pattern).replace("%%", "")
    try:
        first = out_pattern % 0
    except (TypeError, ValueError):
        first = None
    if first is None or len(_FIELD.findall(out_pattern.replace("%%", ""))) != 1 or not _FIELD.search(name):
        raise DataError(f"OUT_PATTERN {out_pattern!r} needs exactly one shard-number field like %06d in its "
                        "file name", hint=hint)
    if not first.endswith((".tar", ".tar.gz", ".tgz")):
        raise DataError(f"OUT_PATTERN {out_pattern!r} must end in .tar", hint=hint)


def val_pattern(out_pattern: str) -> str:
    """The validation shard pattern that goes with a train pattern (see the module docstring)."""
    folder, name = os.path.split(out_pattern)
    m = _FIELD.search(name)
    prefix, rest = name[: m.start()], name[m.start():]
    stem = prefix.rstrip("-_.")
    sep = prefix[len(stem):] or "-"
    if re.search(r"(^|[-_.])train$", stem):
        stem = stem[: -len("train")] + "val"
    else:
        stem = f"{stem}-val" if stem else "val"
    return os.path.join(folder, stem + sep + rest)


def report_path(out_pattern: str) -> Path:
    """Where a JSON summary of the packing goes: beside the shards, named after them (shards/photos-pack.json)."""
    folder, name = os.path.split(out_pattern)
    stem = name[: _FIELD.search(name).start()].rstrip("-_.") or "shards"
    return Path(folder or ".") / f"{stem}-pack.json"


def brace_pattern(out_pattern: str, count: int) -> str:
    """The brace pattern naming shards 0..count-1 of `out_pattern` (a plain file name when count is 1)."""
    if count == 1:
        return out_pattern % 0
    m = _FIELD.search(out_pattern)
    head, tail = out_pattern[: m.start()].replace("%%", "%"), out_pattern[m.end():].replace("%%", "%")
    return f"{head}{{{m.group(0) % 0}..{m.group(0) % (count - 1)}}}{tail}"


def sample_key(rel: Path, taken: set[str]) -> str:
    """A webdataset key for the file at `rel`: its path without suffix, "/" -> "__", other characters outside
    [A-Za-z0-9_-] -> "_", made unique among `taken` with a numeric suffix (and added to it)."""
    base = re.sub(r"[^A-Za-z0-9_\-]+", "_", "__".join(rel.with_suffix("").parts)).strip("_") or "image"
    key, n = base, 1
    while key in taken:
        key, n = f"{base}_{n}", n + 1
    taken.add(key)
    return key


def check_options(out_pattern: str, shard_size: int, val_fraction: float) -> None:
    """DataError for a bad shard pattern (check_pattern), shard size or validation fraction."""
    check_pattern(out_pattern)
    if shard_size < 1:
        raise DataError(f"shard size must be at least 1, got {shard_size}", hint="e.g. --shard-size 1000")
    if not 0.0 <= val_fraction < 1.0:
        raise DataError(f"val fraction must be in [0, 1), got {val_fraction}", hint="e.g. --val-fraction 0.05")


def check_source(src: str | os.PathLike) -> Path:
    """`src` as a Path; DataError unless it is an existing folder."""
    src = Path(src)
    if not src.is_dir():
        what = "is a file, not a folder" if src.exists() else "does not exist"
        raise DataError(f"source folder {src} {what}", hint="give the folder that holds your files")
    return src


def pack_files(src: Path, files: list[Path], out_pattern: str, encode: Callable[[Path, Path], dict],
               report: PackReport, *, shard_size: int = 1000, val_fraction: float = 0.0, seed: int = 0,
               progress: Callable[[int, int, str], None] | None = None) -> PackReport:
    """The packing every modality shares: `files` (under `src`) in a seeded random order, a seeded share of them
    (`val_fraction`) into validation shards, each sample {"__key__": sample_key(...), **encode(path, rel),
    "txt": its caption / transcript (a manifest row or NAME.txt beside the file, mmtok.data.captions) if any}.
    `encode` returns the sample's entries
    ({extension: bytes}) or raises for a file that must be skipped (its MmtokError message, or the exception
    described, becomes the reason in `report.skipped`). Fills and returns `report`."""
    import webdataset as wds

    from mmtok.errors import MmtokError

    check_options(out_pattern, shard_size, val_fraction)
    n = len(files)
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_val = min(max(1, round(val_fraction * n)), n - 1) if val_fraction > 0 else 0
    val_ids, train_ids = order[:n_val], order[n_val:]
    patterns = {"train": out_pattern, "val": val_pattern(out_pattern) if n_val else None}
    Path(out_pattern % 0).parent.mkdir(parents=True, exist_ok=True)

    from mmtok.data.captions import FolderCaptions

    captions = FolderCaptions(src, files)
    report.caption_sources = captions.describe(report.caption_label + "s")
    taken, done = set(), 0
    for split, ids in (("train", train_ids), ("val", val_ids)):
        writer = None
        for i in ids:
            path, rel = files[i], files[i].relative_to(src)
            try:
                entries = encode(path, rel)
            except Exception as e:  # unreadable or undecodable: skip it, say why
                report.skipped.append((rel.as_posix(), e.message if isinstance(e, MmtokError) else one_line_reason(e)))
            else:
                sample = {"__key__": sample_key(rel, taken), **entries}
                caption = captions.get(path)
                if caption:
                    sample["txt"] = caption
                    report.captions += 1
                if writer is None:
                    writer = wds.ShardWriter(patterns[split], maxcount=shard_size, verbose=0)
                writer.write(sample)
                setattr(report, f"{split}_written", getattr(report, f"{split}_written") + 1)
            done += 1
            if progress is not None:
                progress(done, n, rel.as_posix())
        if writer is not None:
            count = writer.shard  # the number of shards opened (close() deletes it)
            writer.close()
            setattr(report, f"{split}_shards", [patterns[split] % k for k in range(count)])
            setattr(report, f"{split}_pattern", brace_pattern(patterns[split], count))
            k = count
            while os.path.exists(patterns[split] % k):
                report.stale.append(patterns[split] % k)
                k += 1
    report.ignored = _count_ignored(src, set(files) | set(captions.sidecars(files)) | set(captions.manifest_paths()))
    return report


def _count_ignored(src: Path, used: set[Path]) -> int:
    count = 0
    for dirpath, dirnames, filenames in os.walk(src, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        count += sum(1 for f in filenames if not f.startswith(".") and Path(dirpath) / f not in used)
    return count
