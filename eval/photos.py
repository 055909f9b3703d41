"""Real colour photographs from Debian packages, split into a training folder and a disjoint held-out folder.

Where the photos come from (install with `apt-get install opencv-doc lomiri-wallpapers-16.04
lomiri-wallpapers-20.04 tuxpaint-stamps-default`; about 290 MB of packages, nothing else is downloaded):

  opencv      opencv-doc: the sample images of OpenCV's examples (examples/data: faces, fruit, animals,
              buildings, stereo pairs, aerial views, ...).
  wallpapers  lomiri-wallpapers-16.04 and -20.04: desktop-wallpaper photographs (landscapes, plants,
              objects) credited to their photographers in the file names.
  tuxpaint    tuxpaint-stamps-default: Tux Paint's stamps, many of them photographs of one animal, plant or
              object cut out on a transparent background (composited on white, as mmtok reads any image).

A file is taken from the packages' own file lists (/var/lib/dpkg/info/PACKAGE.list), so other images that
happen to lie in the same folders are never picked up. Simple, deterministic rules keep photographs only:

  decodable   the file opens with mmtok's reader (RGB, transparency composited on white)
  tiny        the shorter side is at least MIN_SIDE (64) pixels, so the 64 x 64 protocol never upscales
  greyscale   in a 64 x 64 thumbnail, the 95th percentile of chroma (max - min over R, G, B) is at least
              MIN_CHROMA (16 of 255): a greyscale or near-greyscale picture is out
  drawings    at least MIN_COLOURS (300) distinct colours (5 bits a channel) in a 128-pixel thumbnail:
              flat logos, signs, diagrams and cartoons have fewer
  by name     Tux Paint folders of drawings (cartoon, roadsigns, flags, alphabets) and a short list of files
              checked by eye that pass the numbers but are not photographs (DENY below)

Split: byte-identical copies are kept once; near-duplicates share a group (a stereo pair, numbered shots of
one scene, a mirrored stamp: the name with a trailing number, L/R, A/B or _mirror removed). Within each
source, the groups are ordered by the SHA-256 of their key and the first ceil(heldout_fraction x groups)
are held out, so every source is represented in both folders in proportion. The split depends only on
the packages' file names and contents: the same on every machine with the same package versions.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from mmtok.modalities.image.decode import IMAGE_SUFFIXES, ImageDecodeError, read_image

MIN_SIDE = 64
MIN_CHROMA = 16.0
MIN_COLOURS = 300
DPKG_INFO = Path("/var/lib/dpkg/info")
APT_HINT = "apt-get install opencv-doc lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 tuxpaint-stamps-default"


@dataclass(frozen=True)
class Source:
    name: str
    packages: tuple[str, ...]
    prefix: str                        # only files under this folder
    skip_dirs: frozenset[str] = frozenset()
    deny: frozenset[str] = frozenset()  # paths under prefix, checked by eye: not photographs, or edited copies


SOURCES = (
    Source("opencv", ("opencv-doc",), "/usr/share/doc/opencv-doc/examples/data/",
           deny=frozenset({"WindowsLogo.jpg", "HappyFish.jpg", "pic2.png", "pic4.png", "pic5.png",
                           "starry_night.jpg", "ela_modified.jpg", "ml.png"})),
    Source("wallpapers", ("lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04"), "/usr/share/backgrounds/",
           deny=frozenset({"Fossa_by_Jasper_Roks.jpg", "Painting-Colors_by__herobrine7gamer.jpg",
                           "umang_by_Abhishek_Mudgal.jpg"})),
    Source("tuxpaint", ("tuxpaint-stamps-default",), "/usr/share/tuxpaint/stamps/",
           skip_dirs=frozenset({"cartoon", "roadsigns", "flags", "alphabets"}),
           deny=frozenset({"animals/mammals/aquatic/whale.png", "clothes/button.png", "clothes/hats/feathered_hat.png",
                           "clothes/hats/propeller_hat.png", "food/pizza.png", "seasonal/easter/bunny.png",
                           "seasonal/easter/butterfly.png", "seasonal/easter/chick-in-egg.png",
                           "seasonal/easter/bunny-egg.png", "seasonal/easter/chick-hatched.png",
                           "seasonal/christmas/Santa.png"})),
)


def package_files(package: str, dpkg_info: Path = DPKG_INFO) -> list[Path] | None:
    """The files `package` installed (from dpkg's list), or None when it is not installed."""
    for name in (f"{package}.list", f"{package}:all.list"):
        if (dpkg_info / name).is_file():
            return [Path(line) for line in (dpkg_info / name).read_text().splitlines() if line.strip()]
    return None


def why_not_photo(path: Path) -> str | None:
    """None when the image at `path` passes the numeric rules above, else the rule it fails."""
    try:
        img = read_image(path, min_size=128)  # JPEG decoding may skip detail; sides stay >= 128
    except ImageDecodeError as e:
        return f"undecodable ({e.message})"
    w, h = img.size
    if min(w, h) < MIN_SIDE:
        return f"tiny ({w}x{h})"
    thumb = np.asarray(img.resize((64, 64), Image.BILINEAR), dtype=np.int16)
    chroma = float(np.percentile(thumb.max(-1) - thumb.min(-1), 95))
    if chroma < MIN_CHROMA:
        return f"greyscale (chroma {chroma:.0f})"
    small = img.copy()
    small.thumbnail((128, 128), Image.BILINEAR)
    q = np.asarray(small, dtype=np.int32).reshape(-1, 3) >> 3
    colours = len(np.unique(q[:, 0] << 10 | q[:, 1] << 5 | q[:, 2]))
    if colours < MIN_COLOURS:
        return f"few colours ({colours})"
    return None


def group_key(path: Path) -> str:
    """Near-duplicates share a key: aloeL/aloeR, leuvenA/leuvenB, rubberwhale1/2, frog/frog-1,
    fireman200b/fireman240a, dumper/dumper_mirror, left/right (a stereo pair)."""
    stem = re.sub(r"_mirror$", "", path.stem)
    if stem in ("left", "right"):
        return "left-right"
    stem = re.sub(r"[-_ ]?\d+[a-z]?$", "", stem)
    stem = re.sub(r"(?<=[a-z])[LRAB]$", "", stem)
    return stem.lower()


def heldout_groups(kept: list[dict], fraction: float) -> set[str]:
    """The groups to hold out: per source (of a group's first file), the first ceil(fraction x groups)
    in SHA-256 order of the group key."""
    by_source: dict[str, list[str]] = {}
    owner: dict[str, str] = {}
    for entry in kept:
        if entry["group"] not in owner:
            owner[entry["group"]] = entry["source"]
            by_source.setdefault(entry["source"], []).append(entry["group"])
    held: set[str] = set()
    for groups in by_source.values():
        groups.sort(key=lambda g: hashlib.sha256(g.encode()).hexdigest())
        held.update(groups[:math.ceil(fraction * len(groups))])
    return held


def candidates(source: Source, dpkg_info: Path = DPKG_INFO) -> tuple[list[Path], list[str]]:
    """(image files of `source`'s installed packages under its prefix, sorted; packages not installed)."""
    files, missing = set(), []
    for package in source.packages:
        listed = package_files(package, dpkg_info)
        if listed is None:
            missing.append(package)
            continue
        files.update(p for p in listed if str(p).startswith(source.prefix)
                     and p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    return sorted(files), missing


def select(sources=SOURCES, *, heldout_fraction: float = 0.2, dpkg_info: Path = DPKG_INFO) -> dict:
    """Every candidate with its verdict: {"train": [...], "heldout": [...], "rejected": [...], "missing": [...]}.

    Each kept entry is {"source", "path", "group"}; each rejected one {"source", "path", "reason"}.
    """
    out: dict = {"train": [], "heldout": [], "rejected": [], "missing": []}
    kept: list[dict] = []
    seen: dict[str, str] = {}  # content hash -> the first path with it
    for source in sources:
        files, missing = candidates(source, dpkg_info)
        out["missing"] += missing
        for path in files:
            rel = path.relative_to(source.prefix)
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if rel.as_posix() in source.deny:
                reason = "not a photograph (checked by eye)"
            elif set(rel.parts[:-1]) & source.skip_dirs:
                reason = "a folder of drawings"
            elif digest in seen:
                reason = f"the same file as {seen[digest]}"
            else:
                reason = why_not_photo(path)
            if reason:
                out["rejected"].append({"source": source.name, "path": str(path), "reason": reason})
                continue
            seen[digest] = str(path)
            kept.append({"source": source.name, "path": str(path), "group": group_key(path)})
    held = heldout_groups(kept, heldout_fraction)
    for entry in kept:
        out["heldout" if entry["group"] in held else "train"].append(entry)
    return out


def collect_photos(out_dir: str | Path, *, heldout_fraction: float = 0.2, sources=SOURCES,
                   dpkg_info: Path = DPKG_INFO) -> dict:
    """Copy the selected photos into OUT/train and OUT/heldout (names: SOURCE__PATH_WITH__SEPARATORS);
    write OUT/manifest.json (every file kept or rejected, with the reason). Returns the manifest.

    Raises FileNotFoundError naming the apt-get command when no source package is installed.
    """
    chosen = select(sources, heldout_fraction=heldout_fraction, dpkg_info=dpkg_info)
    if not chosen["train"] or not chosen["heldout"]:
        raise FileNotFoundError(
            f"no photos found (packages not installed: {', '.join(chosen['missing']) or 'none'}); "
            f"install them with: {APT_HINT}")
    out_dir = Path(out_dir)
    for split in ("train", "heldout"):
        folder = out_dir / split
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        for entry in chosen[split]:
            prefix = next(s.prefix for s in sources if s.name == entry["source"])
            flat = "__".join(Path(entry["path"]).relative_to(prefix).parts)
            shutil.copyfile(entry["path"], folder / f"{entry['source']}__{flat}")
    manifest = {
        "sources": {s.name: {"packages": list(s.packages), "folder": s.prefix} for s in sources},
        "rules": {"min_side": MIN_SIDE, "min_chroma_p95": MIN_CHROMA, "min_colours": MIN_COLOURS,
                  "heldout_fraction": heldout_fraction},
        "counts": {split: _count(chosen[split]) for split in ("train", "heldout", "rejected")},
        **chosen,
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def _count(entries: list[dict]) -> dict:
    counts: dict = {}
    for e in entries:
        counts[e["source"]] = counts.get(e["source"], 0) + 1
    return {**counts, "total": len(entries)}


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="Collect real colour photos from Debian packages (see the module doc).")
    ap.add_argument("out", help="folder to write train/, heldout/ and manifest.json into")
    ap.add_argument("--heldout-fraction", type=float, default=0.2)
    args = ap.parse_args()
    m = collect_photos(args.out, heldout_fraction=args.heldout_fraction)
    print(json.dumps(m["counts"], indent=1))
