"""Labelled photographs for `mmtok eval --probe`: Tux Paint's photographic stamps in class folders, split into a
development set (to choose settings on) and a disjoint report set (to report once).

The photographs are those eval/photos.py keeps from `tuxpaint-stamps-default` (the same numeric rules and deny
list: decodable, at least 64 px, colourful, not a drawing), one per near-duplicate group (a mirrored or numbered
copy of a stamp would otherwise sit in one fold and its twin in another). Their class is read from Tux Paint's
folders, merged where a folder is too small to test on:

  mammals        animals/mammals, animals/marsupials
  birds          animals/birds
  small_animals  animals/fish, insects, shellfish, amphibians, lizards
  plants         plants
  food           food
  vehicles       vehicles, military
  objects        household, clothes, hobbies, sports, medical

(seasonal, symbols, space, town and people are mixed or too small, and left out.) Split: a group goes to "report"
when the first hex digit of sha256("labelled:" + group) is below 8, else to "dev"; the same on every machine with the
same package version.

Usage: python eval/labelled_photos.py OUT   ->  OUT/dev/CLASS/*.png, OUT/report/CLASS/*.png, OUT/manifest.json
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import photos  # noqa: E402  (eval/photos.py: the photograph rules)

CLASSES = {
    "mammals": ("animals/mammals", "animals/marsupials"),
    "birds": ("animals/birds",),
    "small_animals": ("animals/fish", "animals/insects", "animals/shellfish", "animals/amphibians", "animals/lizards"),
    "plants": ("plants",),
    "food": ("food",),
    "vehicles": ("vehicles", "military"),
    "objects": ("household", "clothes", "hobbies", "sports", "medical"),
}
FOLDER_CLASS = {folder: name for name, folders in CLASSES.items() for folder in folders}


def class_of(path: str, prefix: str) -> str | None:
    parts = Path(path).relative_to(prefix).parts
    folder = "/".join(parts[:2]) if parts[0] == "animals" else parts[0]
    return FOLDER_CLASS.get(folder)


def split_of(group: str) -> str:
    return "report" if hashlib.sha256(f"labelled:{group}".encode()).hexdigest()[0] < "8" else "dev"


def build(out: str | Path) -> dict:
    source = next(s for s in photos.SOURCES if s.name == "tuxpaint")
    chosen = photos.select((source,))
    kept = chosen["train"] + chosen["heldout"]
    if not kept:
        raise FileNotFoundError(f"no Tux Paint photographs found; install them with: {photos.APT_HINT}")
    out = Path(out)
    for split in ("dev", "report"):
        shutil.rmtree(out / split, ignore_errors=True)
    seen, entries = set(), []
    for entry in sorted(kept, key=lambda e: e["path"]):
        label = class_of(entry["path"], source.prefix)
        if label is None or (label, entry["group"]) in seen:
            continue
        seen.add((label, entry["group"]))
        split = split_of(entry["group"])
        dest = out / split / label / Path(entry["path"]).name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(entry["path"], dest)
        entries.append({"path": entry["path"], "class": label, "split": split, "group": entry["group"]})
    counts = {s: {c: sum(e["split"] == s and e["class"] == c for e in entries) for c in CLASSES}
              for s in ("dev", "report")}
    manifest = {"source": "tuxpaint-stamps-default (eval/photos.py rules)", "classes": {k: list(v) for k, v in
                CLASSES.items()}, "counts": counts, "entries": entries}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python eval/labelled_photos.py OUT")
    m = build(sys.argv[1])
    for split, counts in m["counts"].items():
        print(split, sum(counts.values()), counts)
