"""eval/photos.py's photographs-only selection: three disjoint splits (train, dev, report), groups that never straddle
them, near-duplicates (another size, another exposure, mirrored) grouped by look. Tiny synthetic images, a fake dpkg
info folder and a fake Python package: no Debian package, no network."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "eval"))

import photos  # noqa: E402

NAMES = ("ant", "bee", "cat", "dog", "eel", "fox", "gnu", "hen", "ibis", "jay", "koi", "lynx", "mole", "newt")


def scene(seed: int, size=(96, 80)) -> Image.Image:
    """A colourful picture of its own: a random 4 x 4 colour field, smoothly enlarged, plus noise (many colours)."""
    rng = np.random.default_rng(seed)
    field = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).resize(size, Image.BICUBIC)
    a = np.asarray(field, dtype=np.float32) + rng.normal(0, 12, (size[1], size[0], 3))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def fake_package(root: Path, dpkg: Path, package: str) -> None:
    dpkg.mkdir(parents=True, exist_ok=True)
    (dpkg / f"{package}.list").write_text("\n".join(["/.", *map(str, sorted(root.rglob("*")))]) + "\n")


@pytest.fixture
def sources(tmp_path, monkeypatch):
    dpkg = tmp_path / "dpkg"
    a = tmp_path / "usr" / "share" / "a"
    a.mkdir(parents=True)
    for i, name in enumerate(NAMES[:12]):
        scene(i).save(a / f"{name}.png")
    lake = scene(40)
    lake.save(a / "lake.png")
    brighter = np.clip(np.asarray(lake.resize((192, 160), Image.BICUBIC), dtype=np.int16) + 12, 0, 255)
    Image.fromarray(brighter.astype(np.uint8)).save(a / "meadow_hd.jpg", quality=95)  # the lake: 2x, brighter, JPEG
    scene(41).save(a / "hill.png")
    scene(41).transpose(Image.FLIP_LEFT_RIGHT).save(a / "valley.png")  # the hill, mirrored
    scene(42).save(a / "sceneL.png")
    scene(43).save(a / "sceneR.png")                                   # a stereo pair: by name
    (a / "copy.png").write_bytes((a / "ant.png").read_bytes())
    scene(44).save(a / "render.png")
    Image.new("RGB", (90, 90), (200, 60, 30)).save(a / "smooth.png")     # few colours, let through by eye
    fake_package(a, dpkg, "pkg-a")
    b = tmp_path / "usr" / "share" / "b"
    b.mkdir(parents=True)
    for i, name in enumerate(("oak", "elm", "ash")):
        scene(60 + i).save(b / f"{name}.jpg")
    fake_package(b, dpkg, "pkg-b")
    mod = tmp_path / "site" / "fakephotos"
    (mod / "images").mkdir(parents=True)
    (mod / "__init__.py").write_text("")
    scene(70).save(mod / "images" / "china.png")
    scene(71).save(mod / "images" / "flower.png")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    return dpkg, (
        photos.Source("a", ("pkg-a",), f"{a}/", deny={"render.png": "a render"}, allow={"smooth.png": "by eye"}),
        photos.Source("b", ("pkg-b",), f"{b}/"),
        photos.Source("py", (), "images/", module="fakephotos"),
        photos.Source("gone", (), "images/", module="no_such_module_for_photos"),
    )


def test_photographs_three_disjoint_splits_whole_groups_and_look_alikes(tmp_path, sources):
    dpkg, srcs = sources
    m = photos.collect_photographs(tmp_path / "out", sources=srcs, dpkg_info=dpkg)
    splits = ("train", "dev", "report")
    assert m["missing"] == ["python:no_such_module_for_photos"]
    reasons = {Path(r["path"]).name: r["reason"] for r in m["rejected"]}
    assert set(reasons) == {"copy.png", "render.png"} and reasons["render.png"].endswith(": a render")
    group = {Path(e["path"]).name: e["group"] for split in splits for e in m[split]}
    assert group["lake.png"] == group["meadow_hd.jpg"] and group["hill.png"] == group["valley.png"]
    assert group["sceneL.png"] == group["sceneR.png"] and "smooth.png" in group
    assert len(set(group.values())) == len(group) - 3  # only those three pairs share a group
    looked = {frozenset(Path(x).name for x in (p["a"], p["b"])) for p in m["look_alike"]}
    assert looked == {frozenset({"lake.png", "meadow_hd.jpg"}), frozenset({"hill.png", "valley.png"})}

    where = {split: {e["group"] for e in m[split]} for split in splits}
    assert not (where["train"] & where["dev"] or where["train"] & where["report"] or where["dev"] & where["report"])
    for key, g in m["groups"].items():  # every file of a group in the group's split
        assert {s for s in splits for e in m[s] if e["group"] == key} == {g["split"]}
    per_source = {s: {split: len({e["group"] for e in m[split] if e["source"] == s}) for split in splits}
                  for s in ("a", "b", "py")}
    assert per_source["a"] == {"train": 10, "dev": 3, "report": 3}  # 16 groups: round(.18 x 16), round(.17 x 16)
    assert per_source["b"] == {"train": 1, "dev": 1, "report": 1} and per_source["py"]["train"] == 2

    out = tmp_path / "out"
    for split in splits:
        assert sorted(p.name for p in (out / split).iterdir()) == sorted(f.split("/")[1] for f in m["files"][split])
    assert {"train/py__china.png", "train/py__flower.png"} <= set(m["files"]["train"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["report"]["total"] == len(m["report"]) and manifest["rules"]["near"] == photos.NEAR
    again = photos.select_photographs(srcs, dpkg_info=dpkg)
    assert {s: again[s] for s in splits} == {s: [{k: e[k] for k in ("source", "path", "group")} for e in m[s]]
                                             for s in splits}


def test_photographs_errors_and_split_sizes(tmp_path, sources):
    dpkg, srcs = sources
    with pytest.raises(FileNotFoundError, match="packages not installed: pkg-c; install them with: apt-get install"):
        photos.collect_photographs(tmp_path / "x", sources=(*srcs, photos.Source("c", ("pkg-c",), "/nowhere/")),
                                   dpkg_info=dpkg)
    with pytest.raises(ValueError, match="too few photographs"):
        photos.collect_photographs(tmp_path / "y", sources=srcs[2:], dpkg_info=dpkg)
    for n in range(1, 40):
        kept = [{"source": "s", "path": f"{i}.png", "group": f"g{i}"} for i in range(n)]
        sizes = {s: list(photos.split_groups(kept).values()).count(s) for s in ("train", "dev", "report")}
        assert sum(sizes.values()) == n and (min(sizes.values()) >= 1 if n >= 3 else sizes["train"] == n)
        assert abs(sizes["report"] - 0.18 * n) <= 0.5 and abs(sizes["dev"] - 0.17 * n) <= 0.5


def test_look_apart_separates_scenes_and_joins_copies(tmp_path):
    scene(1).save(tmp_path / "a.png")
    scene(1).resize((300, 250), Image.BICUBIC).transpose(Image.FLIP_LEFT_RIGHT).save(tmp_path / "a_big.png")
    scene(2).save(tmp_path / "b.png")
    a, a_big, b = (photos.look(tmp_path / n) for n in ("a.png", "a_big.png", "b.png"))
    assert photos.look_apart(a, a_big) < photos.NEAR < photos.look_apart(a, b)
