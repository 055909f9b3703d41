"""Real colour photographs from Debian packages, split into a training folder and a disjoint held-out folder;
or (--photographs) photographs only, split three ways: train, dev (settings are tuned on it), report (once).

Where the photos come from (install with `apt-get install opencv-doc lomiri-wallpapers lomiri-wallpapers-16.04
lomiri-wallpapers-20.04 tuxpaint-stamps-default mate-backgrounds`; about 330 MB of packages,
nothing else is downloaded):

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

Photographs only (`python eval/photos.py OUT --photographs`; PHOTOGRAPHS in eval/photo_sources.py), for
development data: no Tux Paint, so no cut-outs. Sources: opencv as above; wallpapers as above plus
lomiri-wallpapers; mate (mate-backgrounds, /usr/share/backgrounds/mate/nature only; ukui-wallpapers was
looked at too: none of its 12 files is a photograph); sklearn (scikit-learn's two sample photos of load_sample_images,
china.jpg and flower.jpg, copied from the installed package; left out when it is not installed). The numeric
rules above, and every candidate checked by eye: illustrations, renders, abstract art, logos and composites
are denied by name, each with its reason (and three smooth photographs allowed past the few-colours rule).
Near-duplicates share a group by name key (as above), by SAME_SCENE, or by look (`look_apart`): 16 x 16
greyscale thumbnails, standardised to zero mean and unit spread, whose mean absolute difference (the smaller
of as-is and mirrored) is below NEAR (0.15): the same picture at another size, exposure or colour grade, or
mirrored (such copies measured under 0.1 here, distinct photographs 0.42 and more). Per source, the groups in
SHA-256 order of their key: the first round(0.18 n) go to report, the next round(0.17 n) to dev, the rest
(about 65%) to train, so a source of 3 groups or more is in every split (one of 1 or 2 only in train).
Writes OUT/train, OUT/dev, OUT/report and OUT/manifest.json (files, sources, groups, look-alike pairs,
rules, rejections with reasons).
"""
from __future__ import annotations

import hashlib
import importlib.util
import itertools
import json
import math
import re
import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from photo_sources import BACKGROUNDS, OPENCV, PHOTOGRAPHS, SAME_SCENE, Source
from PIL import Image

from mmtok.modalities.image.decode import IMAGE_SUFFIXES, ImageDecodeError, read_image

MIN_SIDE = 64
MIN_CHROMA = 16.0
MIN_COLOURS = 300
NEAR = 0.15                           # look_apart below this: one group (photographs only)
SPLITS = {"report": 0.18, "dev": 0.17}  # photographs only: per source, the rest of the groups go to train
DPKG_INFO = Path("/var/lib/dpkg/info")
APT_HINT = ("apt-get install opencv-doc lomiri-wallpapers lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 "
            "tuxpaint-stamps-default mate-backgrounds")

SOURCES = (
    Source("opencv", ("opencv-doc",), OPENCV,
           deny=frozenset({"WindowsLogo.jpg", "HappyFish.jpg", "pic2.png", "pic4.png", "pic5.png",
                           "starry_night.jpg", "ela_modified.jpg", "ml.png"})),
    Source("wallpapers", ("lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04"), BACKGROUNDS,
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


def source_root(source: Source) -> str | None:
    """The folder `source`'s files lie under: its prefix, or that inside its Python package (None: not installed)."""
    if not source.module:
        return source.prefix
    spec = importlib.util.find_spec(source.module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return f"{Path(next(iter(spec.submodule_search_locations))) / source.prefix}/"


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


def look(path: Path) -> np.ndarray:
    """The image's 16 x 16 greyscale thumbnail, standardised to zero mean and unit spread."""
    a = np.asarray(read_image(path, min_size=128).convert("L").resize((16, 16), Image.BOX), dtype=np.float32)
    return (a - a.mean()) / (a.std() + 1e-3)


def look_apart(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two looks, the smaller of `b` as it is and mirrored."""
    return min(float(np.abs(a - b).mean()), float(np.abs(a - b[:, ::-1]).mean()))


def merge_look_alikes(kept: list[dict], near: float = NEAR) -> list[dict]:
    """Join the groups of images that look alike (look_apart < near): each entry's "group" becomes the smallest
    key among the groups joined with it. Returns the pairs that looked alike: [{"a", "b", "apart"}] (paths)."""
    looks = [look(Path(e["path"])) for e in kept]
    parent = {e["group"]: e["group"] for e in kept}

    def root(g: str) -> str:
        while parent[g] != g:
            g = parent[g]
        return g

    pairs = []
    for i, j in itertools.combinations(range(len(kept)), 2):
        apart = look_apart(looks[i], looks[j])
        if apart < near:
            pairs.append({"a": kept[i]["path"], "b": kept[j]["path"], "apart": round(apart, 3)})
            gi, gj = root(kept[i]["group"]), root(kept[j]["group"])
            parent[max(gi, gj)] = min(gi, gj)
    for e in kept:
        e["group"] = root(e["group"])
    return pairs


def _groups_by_source(kept: list[dict]) -> list[list[str]]:
    """Per source (of a group's first file), its groups in SHA-256 order of the group key."""
    by_source: dict[str, list[str]] = {}
    owner: dict[str, str] = {}
    for entry in kept:
        if entry["group"] not in owner:
            owner[entry["group"]] = entry["source"]
            by_source.setdefault(entry["source"], []).append(entry["group"])
    return [sorted(groups, key=lambda g: hashlib.sha256(g.encode()).hexdigest()) for groups in by_source.values()]


def heldout_groups(kept: list[dict], fraction: float) -> set[str]:
    """The groups to hold out: per source (of a group's first file), the first ceil(fraction x groups)
    in SHA-256 order of the group key."""
    held: set[str] = set()
    for groups in _groups_by_source(kept):
        held.update(groups[:math.ceil(fraction * len(groups))])
    return held


def split_groups(kept: list[dict], fractions: Mapping[str, float] = SPLITS) -> dict[str, str]:
    """Each group's split: per source, in SHA-256 order of the group key, the first round(f x groups) to the first
    split of `fractions`, the next to the second, ..., the rest to "train"."""
    where: dict[str, str] = {}
    for groups in _groups_by_source(kept):
        start = 0
        for split, fraction in fractions.items():
            n = math.floor(fraction * len(groups) + 0.5)
            where.update(dict.fromkeys(groups[start:start + n], split))
            start += n
        where.update(dict.fromkeys(groups[start:], "train"))
    return where


def candidates(source: Source, dpkg_info: Path = DPKG_INFO) -> tuple[list[Path], list[str]]:
    """(image files of `source`'s installed packages under its prefix, sorted; packages not installed)."""
    root = source_root(source)
    if source.module:
        listings = [(f"python:{source.module}", None if root is None else list(Path(root).rglob("*")))]
    else:
        listings = [(package, package_files(package, dpkg_info)) for package in source.packages]
    files, missing = set(), []
    for package, listed in listings:
        if listed is None:
            missing.append(package)
            continue
        files.update(p for p in listed if str(p).startswith(root)
                     and p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    return sorted(files), missing


def screen(sources=SOURCES, dpkg_info: Path = DPKG_INFO) -> tuple[list[dict], list[dict], list[str]]:
    """(kept: [{"source", "path", "group"}], rejected: [{"source", "path", "reason"}], packages not installed)."""
    kept: list[dict] = []
    rejected: list[dict] = []
    missing: list[str] = []
    seen: dict[str, str] = {}  # content hash -> the first path with it
    for source in sources:
        files, not_installed = candidates(source, dpkg_info)
        missing += not_installed
        for path in files:
            rel = path.relative_to(source_root(source)).as_posix()
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            if rel in source.deny:
                why = source.deny[rel] if isinstance(source.deny, Mapping) else ""
                reason = "not a photograph (checked by eye)" + (f": {why}" if why else "")
            elif set(Path(rel).parts[:-1]) & source.skip_dirs:
                reason = "a folder of drawings"
            elif digest in seen:
                reason = f"the same file as {seen[digest]}"
            else:
                reason = why_not_photo(path)
                if reason and reason.startswith("few colours") and rel in source.allow:
                    reason = None  # checked by eye: a photograph
            if reason:
                rejected.append({"source": source.name, "path": str(path), "reason": reason})
                continue
            seen[digest] = str(path)
            kept.append({"source": source.name, "path": str(path), "group": group_key(path)})
    return kept, rejected, missing


def select(sources=SOURCES, *, heldout_fraction: float = 0.2, dpkg_info: Path = DPKG_INFO) -> dict:
    """Every candidate with its verdict: {"train": [...], "heldout": [...], "rejected": [...], "missing": [...]}.

    Each kept entry is {"source", "path", "group"}; each rejected one {"source", "path", "reason"}.
    """
    kept, rejected, missing = screen(sources, dpkg_info)
    held = heldout_groups(kept, heldout_fraction)
    return {"train": [e for e in kept if e["group"] not in held], "heldout": [e for e in kept if e["group"] in held],
            "rejected": rejected, "missing": missing}


def select_photographs(sources=PHOTOGRAPHS, *, dpkg_info: Path = DPKG_INFO, near: float = NEAR,
                       fractions: Mapping[str, float] = SPLITS) -> dict:
    """Photographs only, three ways: {"train", "dev", "report": [{"source", "path", "group"}], "groups": {key:
    {"source", "split", "files"}}, "look_alike": [{"a", "b", "apart"}], "rejected": [...], "missing": [...]}.
    A group: the name key, mapped by SAME_SCENE, joined with every group that has an image looking alike."""
    kept, rejected, missing = screen(sources, dpkg_info)
    for e in kept:
        e["group"] = SAME_SCENE.get(e["group"], e["group"])
    look_alike = merge_look_alikes(kept, near)
    where = split_groups(kept, fractions)
    groups: dict[str, dict] = {}
    for e in kept:
        groups.setdefault(e["group"], {"source": e["source"], "split": where[e["group"]], "files": []})
        groups[e["group"]]["files"].append(e["path"])
    splits = {split: [e for e in kept if where[e["group"]] == split] for split in ("train", *reversed(fractions))}
    return {**splits, "groups": groups, "look_alike": look_alike, "rejected": rejected, "missing": missing}


def _write(out_dir: Path, chosen: dict, splits: tuple[str, ...], sources) -> None:
    """Copy each split's files into OUT/SPLIT as SOURCE__PATH_WITH__SEPARATORS (path under the source's folder)."""
    for split in splits:
        folder = out_dir / split
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        for entry in chosen[split]:
            shutil.copyfile(entry["path"], folder / _out_name(entry, sources))


def _out_name(entry: dict, sources) -> str:
    root = source_root(next(s for s in sources if s.name == entry["source"]))
    return f"{entry['source']}__{'__'.join(Path(entry['path']).relative_to(root).parts)}"


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
    _write(out_dir, chosen, ("train", "heldout"), sources)
    manifest = {
        "sources": {s.name: {"packages": list(s.packages), "folder": s.prefix} for s in sources},
        "rules": {"min_side": MIN_SIDE, "min_chroma_p95": MIN_CHROMA, "min_colours": MIN_COLOURS,
                  "heldout_fraction": heldout_fraction},
        "counts": {split: _count(chosen[split]) for split in ("train", "heldout", "rejected")},
        **chosen,
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def collect_photographs(out_dir: str | Path, *, sources=PHOTOGRAPHS, dpkg_info: Path = DPKG_INFO,
                        near: float = NEAR) -> dict:
    """Photographs only: copy them into OUT/train, OUT/dev and OUT/report; write OUT/manifest.json (files, sources,
    groups, look-alike pairs, rules, rejections). Returns the manifest.

    Raises FileNotFoundError naming the apt-get command when a source's Debian package is not installed (a
    missing Python package, scikit-learn, only leaves its source out), ValueError when a split would be empty.
    """
    chosen = select_photographs(sources, dpkg_info=dpkg_info, near=near)
    debs = [m for m in chosen["missing"] if not m.startswith("python:")]
    if debs:
        raise FileNotFoundError(f"packages not installed: {', '.join(debs)}; install them with: {APT_HINT}")
    splits = ("train", *reversed(SPLITS))
    if not all(chosen[split] for split in splits):
        raise ValueError(f"too few photographs for {', '.join(splits)}: {len(chosen['groups'])} groups")
    for split in splits:
        for entry in chosen[split]:
            entry["file"] = f"{split}/{_out_name(entry, sources)}"
    out_dir = Path(out_dir)
    _write(out_dir, chosen, splits, sources)
    manifest = {
        "selection": "photographs only (PHOTOGRAPHS, eval/photo_sources.py): train, dev (tune on it), report (once)",
        "sources": {s.name: {"packages": list(s.packages) or [f"python:{s.module}"],
                             "folder": source_root(s) or s.prefix} for s in sources},
        "rules": {"min_side": MIN_SIDE, "min_chroma_p95": MIN_CHROMA, "min_colours": MIN_COLOURS,
                  "deny": "checked by eye: illustrations, renders, abstract art, logos, composites (reasons below)",
                  "allow": {s.name: dict(s.allow) for s in sources if s.allow},  # by eye: photographs, few colours
                  "groups": "name key (group_key), then same_scene, joined when look_apart < near (standardised "
                            "16 x 16 greyscale thumbnails, mean absolute difference, also mirrored)",
                  "same_scene": SAME_SCENE, "near": near,
                  "split": "per source, groups in SHA-256 order of their key: the first round(report x n) report, "
                           "the next round(dev x n) dev, the rest train", "fractions": SPLITS},
        "counts": {split: _count(chosen[split]) for split in (*splits, "rejected")},
        "files": {split: [e["file"] for e in chosen[split]] for split in splits},
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
    ap.add_argument("out", help="folder to write train/, heldout/ (or dev/ and report/) and manifest.json into")
    ap.add_argument("--heldout-fraction", type=float, default=None, help="default 0.2 (not with --photographs)")
    ap.add_argument("--photographs", action="store_true",
                    help="photographs only (no Tux Paint), three splits: train/, dev/ (tune on it), report/ (once)")
    args = ap.parse_args()
    if args.photographs and args.heldout_fraction is not None:
        ap.error("--heldout-fraction applies to the train/heldout selection, not to --photographs")
    fraction = 0.2 if args.heldout_fraction is None else args.heldout_fraction
    try:
        m = collect_photographs(args.out) if args.photographs else collect_photos(args.out, heldout_fraction=fraction)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"error: {e}") from None
    print(json.dumps(m["counts"], indent=1))
