"""Image-caption pairs for the LLM stage from a Debian package: Tux Paint's stamps with their English descriptions.

    apt-get install tuxpaint-stamps-default          # or: apt-get download tuxpaint-stamps-default &&
                                                     #     dpkg -x tuxpaint-stamps-default_*.deb pkg/ (no root)
    python eval/lm_stamps.py --out data/stamps       # [--root pkg/usr/share/tuxpaint/stamps]

tuxpaint-stamps-default (2022.06.04) ships 796 PNG stamps (animals, plants, food, vehicles, clothes, symbols,
...; many photographs cut out on a transparent background, some drawings); 785 have a `name.txt` whose first line
is an English description ("A frog.", "An Adelaide Rosella.") followed by translations. Each such stamp is copied
to OUT/train/ or OUT/heldout/ as `CATEGORY__NAME.png` with its English line as `CATEGORY__NAME.txt` (the sidecar
caption `mmtok tokenize` reads).

Held out: whole groups of near-duplicates (the name with a trailing number, "-1", "_2" or "_mirror" removed, so
"frog" and "frog-1" stay together), the groups whose SHA-256 of the group key falls in the first `--heldout`
share: the same split on every machine.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
from pathlib import Path

ROOT = Path("/usr/share/tuxpaint/stamps")
_VARIANT = re.compile(r"([-_ ]?(\d+|mirror|left|right|l|r))+$", re.IGNORECASE)


def group_key(path: Path, root: Path) -> str:
    """The near-duplicate group of a stamp: its folder plus its name without trailing variant markers."""
    rel = path.relative_to(root).with_suffix("")
    return str(rel.parent / (_VARIANT.sub("", rel.name) or rel.name))


def english(text_file: Path) -> str:
    """The first line of a Tux Paint description file (English), stripped; "" when there is none."""
    lines = text_file.read_text(encoding="utf-8", errors="replace").splitlines()
    first = lines[0].strip() if lines else ""
    return "" if "=" in first else first  # a file that starts with a translation has no English line


def build(root: Path, out: Path, heldout: float) -> dict:
    if not root.is_dir():
        raise SystemExit(f"no Tux Paint stamps at {root}: apt-get install tuxpaint-stamps-default, or extract the "
                         "package with dpkg -x and pass --root PKG/usr/share/tuxpaint/stamps")
    if out.exists():
        shutil.rmtree(out)
    counts = {"train": 0, "heldout": 0, "no_caption": 0}
    for png in sorted(root.rglob("*.png")):
        txt = png.with_suffix(".txt")
        caption = english(txt) if txt.is_file() else ""
        if not caption:
            counts["no_caption"] += 1
            continue
        digest = hashlib.sha256(group_key(png, root).encode()).digest()
        side = "heldout" if int.from_bytes(digest[:8], "big") / 2**64 < heldout else "train"
        name = "__".join(png.relative_to(root).with_suffix("").parts)
        (out / side).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, out / side / f"{name}.png")
        (out / side / f"{name}.txt").write_text(caption + "\n")
        counts[side] += 1
    (out / "stamps.json").write_text(json.dumps({"root": str(root), "heldout_fraction": heldout, **counts}, indent=2))
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT, help="the stamps folder of tuxpaint-stamps-default")
    parser.add_argument("--out", type=Path, required=True, help="folder to write train/ and heldout/ into")
    parser.add_argument("--heldout", type=float, default=0.08, help="share of near-duplicate groups held out")
    args = parser.parse_args()
    print(json.dumps(build(args.root, args.out, args.heldout)))


if __name__ == "__main__":
    main()
