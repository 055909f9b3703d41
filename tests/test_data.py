"""The data layer: RGB conversion, packing, shards / folder / demo streams, skip counts, worker splits."""
from __future__ import annotations

import io
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmtok.data import build_dataset, make_loader
from mmtok.modalities.image.demo import DEMO_TRAIN, DEMO_VAL, demo_dir
from mmtok.modalities.image.decode import ImageDecodeError, decode_image, image_to_tensor, to_rgb
from mmtok.data.pack import brace_pattern, check_pattern, val_pattern
from mmtok.modalities.image.pack import pack_folder
from mmtok.data.sources import collate_samples, expand_shards, source_kind
from mmtok.data.stream import DataStreamError
from mmtok.errors import DataError

from _data_helpers import R, close, ids, jpeg_bytes, pixel, png_bytes, write_tar  # noqa: F401


# ------------------------------------------------------------------------------------------------ image


def test_to_rgb_handles_every_mode():
    assert close(pixel(Image.new("RGBA", (2, 2), (255, 0, 0, 128))), (255, 127, 127))
    assert pixel(Image.new("RGBA", (2, 2), (0, 0, 255, 0))) == (255, 255, 255)  # transparent -> white
    assert pixel(Image.new("RGBA", (2, 2), (0, 0, 255, 255))) == (0, 0, 255)
    assert close(pixel(Image.new("LA", (2, 2), (0, 128))), (127, 127, 127))
    assert pixel(Image.new("L", (2, 2), 100)) == (100, 100, 100)

    pal = Image.new("P", (2, 1))
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pal.putpixel((0, 0), 0)
    pal.putpixel((1, 0), 1)
    pal.info["transparency"] = 0
    rgb = to_rgb(pal)
    assert rgb.mode == "RGB" and rgb.getpixel((0, 0)) == (255, 255, 255) and rgb.getpixel((1, 0)) == (255, 0, 0)

    deep = Image.fromarray(np.array([[0, 32896, 65535]], dtype=np.uint16))
    assert deep.mode == "I;16"
    assert [to_rgb(deep).getpixel((x, 0)) for x in range(3)] == [(0, 0, 0), (128, 128, 128), (255, 255, 255)]
    wide = Image.fromarray(np.array([[0, 65535]], dtype=np.int32), "I")
    assert [to_rgb(wide).getpixel((x, 0)) for x in range(2)] == [(0, 0, 0), (255, 255, 255)]
    narrow = Image.fromarray(np.array([[7, 200]], dtype=np.int32), "I")
    assert [to_rgb(narrow).getpixel((x, 0)) for x in range(2)] == [(7, 7, 7), (200, 200, 200)]

    assert pixel(Image.new("CMYK", (2, 2), (0, 0, 0, 0))) == (255, 255, 255)
    assert pixel(Image.new("CMYK", (2, 2), (0, 255, 255, 0))) == (255, 0, 0)
    one = Image.new("1", (2, 1), 0)
    one.putpixel((1, 0), 1)
    assert [to_rgb(one).getpixel((x, 0)) for x in range(2)] == [(0, 0, 0), (255, 255, 255)]


def test_decode_image_rejects_bad_bytes_with_a_typed_error():
    with pytest.raises(ImageDecodeError) as err:
        decode_image(b"this is not an image")
    assert isinstance(err.value, DataError) and err.value.hint
    with pytest.raises(ImageDecodeError):
        decode_image(jpeg_bytes(0)[:200])  # truncated
    assert decode_image(png_bytes(9)).mode == "RGB"


def test_image_to_tensor_shape_range_and_crops():
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    img.paste((255, 255, 255), (20, 0, 40, 20))  # right half white
    x = image_to_tensor(img, R, random_crop=False)
    assert x.shape == (3, R, R) and x.dtype == torch.float32
    assert x.min().item() == -1.0 and x.max().item() == 1.0
    assert torch.equal(x, image_to_tensor(img, R, random_crop=False))  # centre crop is fixed
    import random

    rng = random.Random(0)
    crops = {image_to_tensor(img, R, random_crop=True, rng=rng).mean().item() for _ in range(20)}
    assert len(crops) > 3


# ------------------------------------------------------------------------------------------------ packing


@pytest.fixture
def photo_folder(tmp_path) -> Path:
    src = tmp_path / "photos"
    (src / "trip").mkdir(parents=True)
    (src / "a.jpg").write_bytes(jpeg_bytes(1))
    (src / "a.txt").write_text("a red car\n", encoding="utf-8")
    (src / "trip" / "b.png").write_bytes(png_bytes(50))
    (src / "trip" / "c.jpeg").write_bytes(jpeg_bytes(2))
    Image.new("RGB", (20, 20), (10, 20, 30)).save(src / "trip" / "d.tif")
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    (src / "notes.txt").write_text("not a caption of anything")
    return src


def read_shards(paths) -> dict[str, dict[str, bytes]]:
    samples: dict[str, dict[str, bytes]] = {}
    for path in paths:
        with tarfile.open(path) as tar:
            for m in tar.getmembers():
                key, _, suffix = m.name.partition(".")
                samples.setdefault(key, {})[suffix] = tar.extractfile(m).read()
    return samples


def test_pack_folder_counts_captions_and_formats(photo_folder, tmp_path):
    out = str(tmp_path / "shards" / "photos-%06d.tar")
    calls = []
    report = pack_folder(photo_folder, out, shard_size=2, val_fraction=0.0, progress=lambda d, t, n: calls.append(d))
    assert report.train_written == 4 and report.val_written == 0
    assert [f for f, _ in report.skipped] == ["broken.jpg"] and report.skipped[0][1]
    assert report.captions == 1 and report.ignored == 1  # notes.txt
    assert report.train_pattern == str(tmp_path / "shards" / "photos-{000000..000001}.tar")
    assert report.val_pattern is None and calls[-1] == 5
    assert expand_shards(report.train_pattern) == report.train_shards

    samples = read_shards(report.train_shards)
    assert set(samples) == {"a", "trip__b", "trip__c", "trip__d"}
    assert samples["a"]["txt"].decode() == "a red car"
    assert samples["a"]["jpg"] == (photo_folder / "a.jpg").read_bytes()  # stored byte for byte
    assert set(samples["trip__c"]) == {"jpg"}  # .jpeg -> jpg, no caption
    assert set(samples["trip__d"]) == {"png"}  # tif re-encoded
    assert Image.open(io.BytesIO(samples["trip__d"]["png"])).getpixel((0, 0)) == (10, 20, 30)


def test_pack_folder_val_split_is_seeded_and_disjoint(photo_folder, tmp_path):
    a = pack_folder(photo_folder, str(tmp_path / "a" / "p-%06d.tar"), shard_size=10, val_fraction=0.4, seed=3)
    b = pack_folder(photo_folder, str(tmp_path / "b" / "p-%06d.tar"), shard_size=10, val_fraction=0.4, seed=3)
    assert a.val_pattern == str(tmp_path / "a" / "p-val-000000.tar")
    assert a.train_written + a.val_written == 4 and a.val_written >= 1
    ta, va = read_shards(a.train_shards), read_shards(a.val_shards)
    assert not set(ta) & set(va)
    assert set(va) == set(read_shards(b.val_shards))


def test_patterns():
    assert brace_pattern("s/x-%06d.tar", 3) == "s/x-{000000..000002}.tar"
    assert brace_pattern("s/x-%06d.tar", 1) == "s/x-000000.tar"
    assert val_pattern("s/photos-%06d.tar") == "s/photos-val-%06d.tar"
    assert val_pattern("s/imagenet-train-%04d.tar") == "s/imagenet-val-%04d.tar"
    for bad in ("s/x.tar", "s/x-%06d-%06d.tar", "s/x-%06d.zip"):
        with pytest.raises(DataError):
            check_pattern(bad)


def test_pack_folder_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        pack_folder(tmp_path / "nope", str(tmp_path / "x-%06d.tar"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files"):
        pack_folder(tmp_path / "empty", str(tmp_path / "x-%06d.tar"))


# ------------------------------------------------------------------------------------------------ shards


def test_packed_shards_load_with_the_right_count(photo_folder, tmp_path):
    report = pack_folder(photo_folder, str(tmp_path / "s" / "p-%06d.tar"), shard_size=3)
    samples = list(build_dataset(report.train_pattern, "val", R))
    assert len(samples) == 4 and sum(s["skipped"] for s in samples) == 0
    for s in samples:
        assert s["image"].shape == (3, R, R) and s["image"].dtype == torch.float32
        assert -1.0 <= s["image"].min().item() and s["image"].max().item() <= 1.0


def test_corrupt_samples_in_a_shard_are_skipped_and_counted(tmp_path):
    shard = write_tar(tmp_path / "s-000000.tar", [
        ("bad1", {"jpg": b"garbage"}),
        ("good1", {"png": png_bytes(10)}),
        ("meta", {"json": b"{}"}),  # no image at all
        ("good2", {"jpg": jpeg_bytes(3), "txt": b"caption"}),
        ("bad2", {"png": png_bytes(20)[:40]}),  # truncated, and last: its skip must still be reported
    ])
    samples = list(build_dataset(shard, "val", R))
    assert len(samples) == 2
    assert sum(s["skipped"] for s in samples) == 3
    assert [s["skipped"] for s in samples] == [1, 2]
    train = iter(build_dataset(shard, "train", R, shuffle_buffer=0, seed=1))
    got = [next(train) for _ in range(6)]
    assert all(s["image"].shape == (3, R, R) for s in got) and sum(s["skipped"] for s in got) > 0


def test_val_is_deterministic_and_train_is_seeded(tmp_path):
    shards = [write_tar(tmp_path / f"s-{i:06d}.tar", [(f"k{i}{j}", {"jpg": jpeg_bytes(10 * i + j)}) for j in range(3)])
              for i in range(2)]
    pattern = str(tmp_path / "s-{000000..000001}.tar")
    assert expand_shards(pattern) == shards and expand_shards(str(tmp_path / "s-*.tar")) == shards
    val = build_dataset(pattern, "val", R)
    a, b = [s["image"] for s in val], [s["image"] for s in val]
    assert len(a) == 6 and all(torch.equal(x, y) for x, y in zip(a, b))

    def train(seed):
        it = iter(build_dataset(pattern, "train", R, shuffle_buffer=4, seed=seed))
        return torch.stack([next(it)["image"] for _ in range(8)])

    assert torch.equal(train(5), train(5)) and not torch.equal(train(5), train(6))


def test_missing_shards_raise_data_error(tmp_path):
    with pytest.raises(DataError, match="no shard files match"):
        build_dataset(str(tmp_path / "none-{000000..000003}.tar"), "train", R)
    with pytest.raises(DataError, match="no shard files match"):
        build_dataset(str(tmp_path / "*.tar"), "val", R)
    write_tar(tmp_path / "x-000000.tar", [("a", {"png": png_bytes(1)})])
    with pytest.raises(DataError, match="missing"):
        build_dataset(str(tmp_path / "x-{000000..000001}.tar"), "val", R)


def test_all_corrupt_shards_raise_instead_of_streaming_nothing(tmp_path):
    for i in range(2):
        write_tar(tmp_path / f"bad-{i:06d}.tar", [(f"k{j}", {"jpg": b"nope"}) for j in range(3)])
    pattern = str(tmp_path / "bad-{000000..000001}.tar")
    with pytest.raises(DataError, match="no decodable image"):
        list(build_dataset(pattern, "val", R))
    with pytest.raises(DataError, match="no decodable image"):
        next(iter(build_dataset(pattern, "train", R)))
    with pytest.raises(DataError, match="no decodable image"):  # every worker empty: the loader notices
        list(make_loader(pattern, "val", R, batch_size=2, num_workers=2))


def test_worker_error_keeps_one_line():
    wrapped = DataStreamError("Caught DataStreamError in DataLoader worker process 0.\nOriginal Traceback (most "
                              "recent call last):\n  File \"x.py\", line 1\nmmtok.data.stream.DataStreamError: "
                              "no decodable image in x (hint: check the keys)\n")
    assert wrapped.message == "no decodable image in x" and wrapped.hint == "check the keys"


def test_error_from_a_loader_worker_is_one_line(tmp_path):
    shard = write_tar(tmp_path / "bad-000000.tar", [("k", {"png": b"nope"})])
    with pytest.raises(DataError) as err:
        next(iter(make_loader(shard, "train", R, batch_size=2, num_workers=1)))
    assert "no decodable image" in str(err.value) and "\n" not in str(err.value) and err.value.hint


def test_two_workers_see_every_val_sample_once(tmp_path):
    values = [[10, 20, 30], [40, 50]]
    for i, vs in enumerate(values):
        write_tar(tmp_path / f"v-{i:06d}.tar", [(f"k{v}", {"png": png_bytes(v)}) for v in vs])
    pattern = str(tmp_path / "v-{000000..000001}.tar")
    loader = make_loader(pattern, "val", R, batch_size=2, num_workers=2)
    for _ in range(2):  # persistent workers: a second pass is complete too
        batches = list(loader)
        got = ids({"image": x} for b in batches for x in b["image"])
        assert Counter(got) == Counter([10, 20, 30, 40, 50])
        assert all(b["image"].shape[1:] == (3, R, R) for b in batches)
    capped = make_loader(pattern, "val", R, batch_size=2, num_workers=2, max_samples=4)
    got = ids({"image": x} for b in capped for x in b["image"])
    assert Counter(got) == Counter([10, 20, 30, 40])  # the first 4 in shard order, once each


def test_collate_sums_skips():
    batch = collate_samples([{"image": torch.zeros(3, R, R), "skipped": 2}, {"image": torch.ones(3, R, R), "skipped": 0}])
    assert batch["image"].shape == (2, 3, R, R) and batch["skipped"].sum().item() == 2


# ------------------------------------------------------------------------------------------------ folder


def test_folder_source(photo_folder):
    assert source_kind(str(photo_folder)) == "folder"
    samples = list(build_dataset(str(photo_folder), "val", R))
    assert len(samples) == 4 and sum(s["skipped"] for s in samples) == 1
    again = list(build_dataset(str(photo_folder), "val", R))
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(samples, again))
    train = iter(build_dataset(str(photo_folder), "train", R, seed=0))
    got = [next(train) for _ in range(9)]  # more than a pass: endless
    assert all(s["image"].shape == (3, R, R) for s in got) and sum(s["skipped"] for s in got) >= 1
    capped = list(build_dataset(str(photo_folder), "train", R, max_samples=3))
    assert len(capped) == 3


def test_folder_train_decodes_each_file_once_and_yields_the_same_samples(photo_folder, monkeypatch):
    """Later passes crop from the resized copy kept in memory: the very samples decoding again would give."""
    from mmtok.modalities.image import folder

    decodes = Counter()

    def counting(data, **kw):
        decodes[len(data)] += 1
        return decode_image(data, **kw)

    monkeypatch.setattr(folder, "decode_image", counting)
    kept = iter(build_dataset(str(photo_folder), "train", R, seed=3))
    cached = [next(kept)["image"] for _ in range(20)]  # five passes or more over the 4 good files (and 1 bad)
    bad = min(decodes)  # the undecodable file (26 bytes) is tried on every pass
    assert decodes[bad] >= 5 and sorted(c for n, c in decodes.items() if n != bad) == [1, 1, 1, 1]
    monkeypatch.setattr(folder, "CACHE_BYTES", 0)
    decodes.clear()
    fresh = iter(build_dataset(str(photo_folder), "train", R, seed=3))
    assert all(torch.equal(a, next(fresh)["image"]) for a in cached)
    assert min(decodes.values()) >= 5  # without the copy: every file decoded on every pass


def test_bad_sources(tmp_path):
    with pytest.raises(DataError, match="no data at"):
        build_dataset(str(tmp_path / "nowhere"), "train", R)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image files"):
        build_dataset(str(tmp_path / "empty"), "train", R)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.jpg").write_bytes(b"nope")
    with pytest.raises(DataError, match="no decodable image"):
        next(iter(build_dataset(str(tmp_path / "bad"), "train", R)))
    with pytest.raises(DataError):
        build_dataset("demo", "test", R)


# ------------------------------------------------------------------------------------------------ demo


def test_demo_images_exist_and_val_is_held_out():
    assert not set(DEMO_TRAIN) & set(DEMO_VAL) and 2 <= len(DEMO_VAL) <= 4 and len(DEMO_TRAIN) >= 6
    assert all((demo_dir() / n).is_file() for n in DEMO_TRAIN + DEMO_VAL)


def test_demo_photos_are_all_colour():
    from mmtok.modalities.image.demo import load_demo_images

    for split in ("train", "val"):
        for img in load_demo_images(split):
            a = np.asarray(img, dtype=np.int16)
            assert np.percentile(a.max(-1) - a.min(-1), 99) > 50  # chroma: 0 everywhere in a greyscale photo


def test_demo_train_varies_and_val_is_fixed():
    it = iter(build_dataset("demo", "train", R, seed=0))
    crops = torch.stack([next(it)["image"] for _ in range(12)])
    assert crops.shape == (12, 3, R, R) and crops.min() >= -1 and crops.max() <= 1
    assert len({round(c.mean().item(), 4) for c in crops}) >= 10  # varied views
    val = build_dataset("demo", "val", R, max_samples=10)
    a, b = [s["image"] for s in val], [s["image"] for s in val]
    assert len(a) == 10 and all(torch.equal(x, y) for x, y in zip(a, b))
    assert len(list(build_dataset("demo", "val", 8))) == 256


def test_pack_folder_lists_small_images(photo_folder, tmp_path):
    Image.new("RGB", (400, 300)).save(photo_folder / "large.png")
    report = pack_folder(photo_folder, str(tmp_path / "s" / "p-%06d.tar"), min_side=25)
    assert sorted(report.small) == [("trip/b.png", 24, 20), ("trip/d.tif", 20, 20)]  # broken.jpg is skipped
    line = report.small_warning(shown=1)
    assert line.startswith("2 images have a shorter side below 25 px: trip/") and ", ..." in line
    assert pack_folder(photo_folder, str(tmp_path / "t" / "p-%06d.tar"), min_side=8).small_warning() is None


def test_data_sources_are_keyed_by_modality_and_kind():
    from mmtok import modalities
    from mmtok.data.sources import build_dataset
    from mmtok.errors import DataError

    assert {"demo", "folder", "shards"} <= set(modalities.get("image").sources)
    from mmtok.errors import MmtokError

    with pytest.raises(MmtokError, match="no modality 'smell'"):
        build_dataset("demo", "val", 16, modality="smell")


def test_min_crop_fraction_crops_part_of_the_shorter_side(tmp_path):
    """f = 1: every training crop is the whole (square) image resized; f = 0.25: the shorter side is resized to a size
    in [R, 4R] first, so some crops fall wholly in one half of a half-black, half-white picture."""
    from mmtok.modalities.image.decode import crop_side
    from mmtok.modalities.image.folder import FolderStream

    a = np.zeros((64, 64, 3), np.uint8)
    a[:, 32:] = 255
    Image.fromarray(a).save(tmp_path / "halves.png")
    files = [str(tmp_path / "halves.png")]
    for f, one_sided in ((1.0, False), (0.25, True)):
        stream = iter(FolderStream(str(tmp_path), files, "train", 16, seed=0, min_crop_fraction=f))
        means = [float(next(stream)["image"].mean()) for _ in range(60)]
        assert any(abs(m) > 0.9 for m in means) == one_sided
        assert all(abs(m) < 0.1 for m in means) != one_sided
    assert crop_side(64, 0.8) == 80 and crop_side(256, 1.0) == 256
    # JPEG draft decoding keeps the side the crops are cut from (training), R for validation
    assert FolderStream(str(tmp_path), files, "train", 16, min_crop_fraction=0.25).decode_side == 64
    assert FolderStream(str(tmp_path), files, "val", 16, min_crop_fraction=0.25).decode_side == 16
