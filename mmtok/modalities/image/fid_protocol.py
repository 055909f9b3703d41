"""What makes an rFID honest: how many images it needs before it means anything, and what reference
statistics must record before they may stand in for the real images of another evaluation.

Reliability, from n = the number of images on the smaller side of the comparison (`rfid_reliability`):

- n >= 5,000: "ok". The standard protocol uses 50,000; FID is biased upwards by a term that shrinks
  roughly as 1/n (Chong & Forsyth 2020, "Effectively unbiased FID"), so numbers are comparable only
  between evaluations on equally many images, and 5,000 is the smallest count in common use.
- 500 <= n < 5,000: "low". Usable to rank checkpoints evaluated on the same images, not to compare with
  published numbers: the 1/n bias is several points at these sizes, and below 2,048 images the 2048 x 2048
  covariance of the Inception features is rank-deficient (at most n - 1 of its 2,048 directions are seen).
- n < 500: "not_meaningful". The covariance sees less than a quarter of the feature directions and the
  bias dominates: two samples of a few hundred images from one distribution are typically tens of points apart,
  often more than the gap between a good and a poor tokenizer. The value is still reported, flagged.

Reference statistics (`--save-reference-stats` / `--reference-stats`) record their source (the data
string, and its absolute path when it is a local path), split, image count, resolution, crop protocol and
the FID network (file name and sha256 of the weights file, and how features are taken). On reuse:

- a different resolution, crop, network or feature protocol is refused (MmtokError, one line naming it):
  the statistics would describe other pixels, and the rFID would measure the protocol change, not the
  tokenizer.
- a different source or image count only warns: reuse on the same data is the point of reference
  statistics, and the same data is often reached by another path (a moved folder, a folder packed into
  shards, a relative path). The warning names both sources.
- a file without this record (written before mmtok kept one, or by pytorch-fid) is refused with a hint to
  regenerate it: what it holds cannot be checked, accepting it is the silent reuse this record exists to
  stop, and regenerating costs one pass over the real images.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from mmtok.errors import MmtokError

RELIABLE_IMAGES = 5000
MEANINGFUL_IMAGES = 500
REFERENCE_FORMAT = "mmtok-fid-reference/1"
FEATURES = "Inception-v3 pool3 (2048-d), bilinear resize to 299, float64 mean/covariance"
STATS_SUFFIXES = (".npz", ".safetensors")

_HASHES: dict[tuple[str, int, int], str] = {}


def rfid_reliability(n: int) -> str:
    """"ok", "low" or "not_meaningful" for an rFID computed from n images (module docstring)."""
    if n >= RELIABLE_IMAGES:
        return "ok"
    return "low" if n >= MEANINGFUL_IMAGES else "not_meaningful"


def rfid_warning(n: int) -> str | None:
    """The sentence printed with an rFID from n images, or None when n is enough."""
    level = rfid_reliability(n)
    if level == "ok":
        return None
    if level == "low":
        return (f"rFID from {n} images is a low-reliability estimate (fewer than {RELIABLE_IMAGES:,}): compare "
                f"it only with rFIDs on the same images, not with published numbers (50,000 images)")
    return (f"rFID from {n} images is not meaningful (fewer than {MEANINGFUL_IMAGES}): the 2048-d feature "
            f"covariance is barely sampled and the small-sample bias dominates; use >= {RELIABLE_IMAGES:,} "
            "images (--num-samples) for a number worth reading")


def rfid_label(n: int) -> str | None:
    """The short flag shown next to the rFID value ("NOT MEANINGFUL: 12 images"), or None."""
    level = rfid_reliability(n)
    if level == "ok":
        return None
    return f"{'LOW RELIABILITY' if level == 'low' else 'NOT MEANINGFUL'}: {n} images"


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, remembered per (path, size, mtime) for this process."""
    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _HASHES[key] = h.hexdigest()
    return _HASHES[key]


def network_identity(weights: str | os.PathLike) -> dict:
    """{"file", "sha256", "features"}: which FID network (by content) and how features are taken."""
    return {"file": Path(weights).name, "sha256": file_sha256(weights), "features": FEATURES}


def source_of(data: str) -> dict:
    """{"data": as given, "path": absolute path when `data` is a local file or folder, else None}."""
    p = Path(data).expanduser()
    return {"data": data, "path": str(p.resolve()) if p.exists() else None}


def describe(*, data: str, split: str, num_images: int, resolution: int, crop: str, network: dict) -> dict:
    """The record saved with reference statistics."""
    import mmtok

    return {"format": REFERENCE_FORMAT, "source": source_of(data), "split": split, "num_images": int(num_images),
            "resolution": int(resolution), "crop": crop, "network": network, "mmtok_version": mmtok.__version__}


def check_stats_path(path: str | os.PathLike, flag: str) -> None:
    """MmtokError unless `path` names a statistics file mmtok can write / read (by its suffix)."""
    if Path(path).suffix not in STATS_SUFFIXES:
        raise MmtokError(f"{flag} {path}: reference statistics are .npz or .safetensors files",
                         hint=f"name the file {Path(path).with_suffix('.npz').name}")


def check_reference(path: str | os.PathLike, meta: dict | None, *, data: str, split: str, resolution: int,
                    crop: str, network: dict) -> list[str]:
    """Refuse (MmtokError) reference statistics that describe other pixels or another network than this
    evaluation; return warnings for a different source. See the module docstring."""
    regen = f"regenerate them: mmtok eval MODEL --data DATA --save-reference-stats {path}"
    if meta is None:
        raise MmtokError(f"reference statistics {path} do not record their source, resolution, crop or FID "
                         "network (written by an older mmtok or another tool), so their reuse cannot be checked",
                         hint=regen)
    if meta.get("format") != REFERENCE_FORMAT:
        raise MmtokError(f"reference statistics {path} have format {meta.get('format')!r}; this mmtok reads "
                         f"{REFERENCE_FORMAT!r}", hint=regen)
    if meta.get("resolution") != resolution:
        raise MmtokError(f"reference statistics {path} were computed at {meta.get('resolution')}px; this "
                         f"evaluation is at {resolution}px", hint=f"evaluate at --resolution {meta.get('resolution')}, "
                         f"or {regen}")
    if meta.get("crop") != crop:
        raise MmtokError(f"reference statistics {path} used the crop '{meta.get('crop')}'; this evaluation uses "
                         f"'{crop}'", hint=regen)
    theirs = meta.get("network") or {}
    if theirs.get("sha256") != network["sha256"] or theirs.get("features") != network["features"]:
        what = ("network" if theirs.get("sha256") != network["sha256"] else "feature protocol")
        raise MmtokError(
            f"reference statistics {path} were computed with another FID {what}: {theirs.get('file')} "
            f"(sha256 {str(theirs.get('sha256'))[:12]}) vs {network['file']} (sha256 {network['sha256'][:12]}) "
            "here", hint=f"pass the same --fid-weights as when they were saved, or {regen}")
    warnings = []
    src, here = meta.get("source") or {}, source_of(data)
    same = (src.get("path") == here["path"]) if src.get("path") and here["path"] else src.get("data") == data
    if not same or meta.get("split") != split:
        warnings.append(f"reference statistics {path} were computed on '{src.get('data')}' ({meta.get('split')} "
                        f"split, {meta.get('num_images')} images), this evaluation reads '{data}' ({split} split): "
                        "the rFID compares these reconstructions with those other images")
    return warnings


def count_warning(path: str | os.PathLike, meta: dict, num_images: int) -> str | None:
    """A warning when the reference covers a different number of images than were reconstructed."""
    if meta.get("num_images") == num_images:
        return None
    return (f"reference statistics {path} cover {meta.get('num_images')} images, this evaluation reconstructed "
            f"{num_images}")
