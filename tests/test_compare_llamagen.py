"""eval/compare_llamagen.py and its helpers: the held-out protocol, photo selection, the mmtok side end to end.

The peer side needs LlamaGen's model code, which is never part of this repository: its test runs only when
MMTOK_LLAMAGEN names a local LlamaGen checkout (or its tokenizer/tokenizer_image/vq_model.py) and is
skipped otherwise.
"""
from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "eval"))

import compare_llamagen as cmp  # noqa: E402
import photos  # noqa: E402
from llamagen_peer import load_llamagen  # noqa: E402

LLAMAGEN = os.environ.get("MMTOK_LLAMAGEN")


def noisy_photo(seed: int, size=(96, 80)) -> Image.Image:
    """A colourful image with many distinct colours (what the photo rules call a photograph)."""
    rng = np.random.default_rng(seed)
    w, h = size
    base = np.linspace(0, 255, w)[None, :, None] * np.array([1.0, 0.4, 0.1]) + rng.normal(0, 30, (h, w, 3))
    return Image.fromarray(np.clip(base + 60 * seed % 97, 0, 255).astype(np.uint8), "RGB")


NAMES = ("ant", "bee", "cat", "dog", "eel", "fox", "gnu", "hen", "ibis", "jay", "koi", "lynx")


def photo_folder(root: Path, n: int, first_seed: int = 0) -> Path:
    """`n` noisy photos named after animals (distinct group keys)."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        noisy_photo(first_seed + i).save(root / f"{NAMES[i]}.png")
    return root


# ------------------------------------------------------------------------------------------------ protocol


def test_psnr_per_image_on_unit_range():
    images = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    recon = torch.full((2, 3, 4, 4), -0.8)           # 0.1 in [0, 1]: MSE 0.01 -> 20 dB
    recon[1] = 5.0                                    # clamped to 1: MSE 1 -> 0 dB
    p = cmp.psnr_per_image(images, recon)
    assert p.shape == (2,) and p[0].item() == pytest.approx(20.0, abs=1e-6) and p[1].item() == pytest.approx(0.0)
    white = torch.full((1, 3, 4, 4), 255, dtype=torch.uint8)
    assert cmp.psnr_per_image(white, torch.ones(1, 3, 4, 4)).item() == pytest.approx(120.0)  # exact: capped


def test_load_heldout_resizes_the_shorter_side_and_centre_crops(tmp_path):
    a = np.zeros((64, 128, 3), np.uint8)              # 128 wide, 64 high: already 64 tall, crop the centre
    a[:, 32:96] = (200, 10, 10)                        # the centre 64 columns are red, the sides black
    Image.fromarray(a).save(tmp_path / "b.png")
    Image.new("RGB", (200, 300), (0, 0, 255)).save(tmp_path / "a.jpg")
    images, names = cmp.load_heldout(tmp_path)
    assert names == ["a.jpg", "b.png"] and images.shape == (2, 3, 64, 64) and images.dtype == torch.uint8
    assert images[1, 0].min() == 200 and images[1, 1].max() == 10  # only the red centre survives
    assert abs(int(images[0, 2].float().mean()) - 254) <= 2  # blue JPEG
    with pytest.raises(FileNotFoundError):
        cmp.load_heldout(tmp_path / "nothing")


def test_evaluate_is_mean_per_image_psnr_and_usage():
    images = torch.stack([torch.full((3, 8, 8), v, dtype=torch.uint8) for v in (0, 51, 255)])

    def grey(x):  # reconstructs every image as mid-grey (0.5) and uses code i for image i
        return torch.zeros_like(x), torch.arange(len(x))[:, None].expand(-1, 4) + 2 * (x[:, 0, 0, 0] > 0)[:, None]

    r = cmp.evaluate(grey, images, codebook_size=8, batch_size=2)
    want = [10 * math.log10(1 / (v / 255 - 0.5) ** 2) for v in (0, 51, 255)]
    assert r["psnr_db"] == pytest.approx(sum(want) / 3, abs=1e-3) and r["images"] == 3
    assert r["codes_used"] == 3 and r["usage"] == pytest.approx(3 / 8) and r["_recon"].shape == images.shape


# ------------------------------------------------------------------------------------------------ photos


def test_photo_rules(tmp_path):
    cases = {
        "photo.png": (noisy_photo(1), None),
        "grey.png": (noisy_photo(2).convert("L"), "greyscale"),
        "tiny.png": (noisy_photo(3, size=(60, 40)), "tiny"),
        "logo.png": (Image.new("RGB", (120, 90), (250, 20, 20)), "few colours"),
    }
    for name, (img, why) in cases.items():
        img.save(tmp_path / name)
        got = photos.why_not_photo(tmp_path / name)
        assert (got is None) if why is None else got.startswith(why), (name, got)
    (tmp_path / "bad.jpg").write_bytes(b"not an image")
    assert photos.why_not_photo(tmp_path / "bad.jpg").startswith("undecodable")


def test_group_keys_keep_near_duplicates_together():
    key = photos.group_key
    assert key(Path("a/aloeL.jpg")) == key(Path("a/aloeR.jpg")) == "aloe"
    assert key(Path("x/rubberwhale1.png")) == key(Path("x/rubberwhale2.png"))
    assert key(Path("leuvenA.jpg")) == key(Path("leuvenB.jpg"))
    assert key(Path("left.jpg")) == key(Path("right.jpg"))
    assert key(Path("s/frog.png")) == key(Path("s/frog-1.png"))
    assert key(Path("m/fireman240a.png")) == key(Path("p/fireman200b.png"))
    assert key(Path("v/dumper_mirror.png")) == key(Path("v/dumper.png"))
    assert key(Path("apple.jpg")) != key(Path("orange.jpg"))


def test_collect_photos_split_is_disjoint_stratified_and_deterministic(tmp_path):
    pkg = tmp_path / "share" / "pics"
    photo_folder(pkg / "animals", 12)
    (pkg / "animals" / "ant_copy.png").write_bytes((pkg / "animals" / "ant.png").read_bytes())
    noisy_photo(50).save(pkg / "sceneL.png")
    noisy_photo(51).save(pkg / "sceneR.png")
    noisy_photo(52).save(pkg / "drawing.png")
    noisy_photo(53).convert("L").save(pkg / "grey.png")
    (pkg / "cartoon").mkdir()
    noisy_photo(54).save(pkg / "cartoon" / "toon.png")
    dpkg = tmp_path / "dpkg"
    dpkg.mkdir()
    (dpkg / "pics-pkg.list").write_text("\n".join(str(p) for p in sorted(pkg.rglob("*"))) + "\n")
    source = photos.Source("pics", ("pics-pkg", "not-installed"), f"{pkg}/", skip_dirs=frozenset({"cartoon"}),
                           deny=frozenset({"drawing.png"}))

    m = photos.collect_photos(tmp_path / "out", heldout_fraction=0.25, sources=(source,), dpkg_info=dpkg)
    assert m["missing"] == ["not-installed"]
    reasons = {Path(r["path"]).name: r["reason"] for r in m["rejected"]}
    assert set(reasons) == {"ant_copy.png", "drawing.png", "grey.png", "toon.png"}
    assert reasons["grey.png"].startswith("greyscale") and "same file" in reasons["ant_copy.png"]
    train = {e["group"] for e in m["train"]}
    held = {e["group"] for e in m["heldout"]}
    assert not train & held and len(train | held) == 13  # 12 animals and one stereo pair
    assert len(held) == math.ceil(0.25 * 13) == 4 and len(m["train"]) + len(m["heldout"]) == 14
    assert sorted(p.name for p in (tmp_path / "out" / "heldout").iterdir()) == sorted(
        "pics__" + "__".join(Path(e["path"]).relative_to(pkg).parts) for e in m["heldout"])
    assert len(list((tmp_path / "out" / "train").iterdir())) == len(m["train"])
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["counts"]["heldout"]["total"] == len(m["heldout"]) >= 4
    again = photos.select((source,), heldout_fraction=0.25, dpkg_info=dpkg)
    assert again["heldout"] == m["heldout"]
    with pytest.raises(FileNotFoundError, match="apt-get install"):
        photos.collect_photos(tmp_path / "none", sources=(source,), dpkg_info=tmp_path)


# ------------------------------------------------------------------------------------------------ the script


def test_mmtok_side_end_to_end_without_llamagen(tmp_path):
    train = photo_folder(tmp_path / "train", 6)
    heldout = photo_folder(tmp_path / "heldout", 3, first_seed=20)
    out = tmp_path / "res" / "cmp.json"
    report = cmp.main(["--train", str(train), "--heldout", str(heldout), "--mmtok-steps", "2",
                       "--work", str(tmp_path / "work"), "--json", str(out)])
    mm, peer = report["results"]["mmtok"], report["results"]["peer"]
    assert mm["steps"] == 2 and mm["stopped_by"] == "steps" and mm["images"] == 3 and mm["weights"] == "ema"
    assert 0 < mm["psnr_db"] < 60 and 0 < mm["codes_used"] <= 3 * 64 and mm["codebook_size"] == 1024
    assert "trainer.max_steps=2" in mm["overrides"] and "data.val=null" in mm["overrides"]
    assert not any(o.startswith("trainer.max_minutes") for o in mm["overrides"])  # the recipe's own limit
    assert report["equal_time_seconds"] == mm["train_seconds"] and report["equal_images"] == 2 * 8
    assert "skipped" in peer and "--llamagen" in peer["skipped"]
    assert json.loads(out.read_text())["results"]["mmtok"]["psnr_db"] == mm["psnr_db"]
    assert Image.open(out.with_suffix(".png")).size == (3 * 128, 2 * 128)  # 3 inputs over 1 side, 2x cells


def test_llamagen_path_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no LlamaGen model code"):
        load_llamagen(tmp_path)
    (tmp_path / "vq_model.py").write_text("x = 1\n")
    with pytest.raises(FileNotFoundError, match="has no VQModel"):
        load_llamagen(tmp_path / "vq_model.py")


@pytest.mark.skipif(not LLAMAGEN, reason="peer side: set MMTOK_LLAMAGEN to a local LlamaGen checkout to run it")
def test_peer_side_trains_and_is_scored_by_the_same_protocol(tmp_path):
    train = photo_folder(tmp_path / "train", 6)
    images, _ = cmp.load_heldout(photo_folder(tmp_path / "heldout", 3, first_seed=20))
    tok, facts = cmp.run_peer(LLAMAGEN, train, seconds=120, max_steps=2, batch_size=4)
    assert facts["steps"] == 2 and facts["stopped_by"] == "steps" and facts["params"] > 1e6
    r = cmp.evaluate(tok, images, facts["codebook_size"])
    assert r["images"] == 3 and 0 < r["psnr_db"] < 60 and 0 < r["codes_used"] <= 3 * 64
    assert r["_recon"].shape == (3, 3, 64, 64)
