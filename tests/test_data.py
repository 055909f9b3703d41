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
from mmtok.data.demo import DEMO_TRAIN, DEMO_VAL, demo_dir
from mmtok.data.image import ImageDecodeError, decode_image, image_to_tensor, to_rgb
from mmtok.data.pack import brace_pattern, check_pattern, pack_folder, val_pattern
from mmtok.data.sources import collate_samples, expand_shards, source_kind
from mmtok.data.stream import DataStreamError
from mmtok.errors import DataError

R = 16


# ------------------------------------------------------------------------------------------------ helpers


def png_bytes(value: int, size=(24, 20)) -> bytes:
    """A solid grey PNG whose pixel value identifies it after decoding (lossless)."""
    buf = io.BytesIO()
    Image.new("RGB", size, (value, value, value)).save(buf, "PNG")
    return buf.getvalue()


def jpeg_bytes(seed: int, size=(40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def write_tar(path: Path, samples: list[tuple[str, dict[str, bytes]]]) -> str:
    """A webdataset shard written by hand: (key, {suffix: bytes}) in order."""
    with tarfile.open(path, "w") as tar:
        for key, entries in samples:
            for suffix, data in entries.items():
                info = tarfile.TarInfo(f"{key}.{suffix}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return str(path)


def ids(samples) -> list[int]:
    """The grey value of each solid-grey sample (image in [-1, 1] -> 0..255)."""
    return [int(round((s["image"].mean().item() + 1) * 127.5)) for s in samples]


def pixel(img: Image.Image) -> tuple:
    return to_rgb(img).getpixel((0, 0))


def close(a, b, tol=1):
    return all(abs(x - y) <= tol for x, y in zip(a, b))


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
    from mmtok.data.demo import load_demo_images

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


# ------------------------------------------------------------------------------------------------ bad samples


def bad_folder(root: Path, good: int = 2) -> Path:
    """`good` solid-grey PNGs and 3 corrupt files (one not an image, one truncated, one empty)."""
    root.mkdir(parents=True)
    for i in range(good):
        (root / f"good{i}.png").write_bytes(png_bytes(10 * (i + 1)))
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    (root / "sub").mkdir()
    (root / "sub" / "cut.png").write_bytes(png_bytes(90)[:40])
    (root / "empty.webp").write_bytes(b"")
    return root


BAD_NAMES = {"broken.jpg", "sub/cut.png", "empty.webp"}


def names_of(entries, folder: Path) -> set[str]:
    """The file names of "PATH: REASON" entries, relative to `folder`."""
    return {Path(e.split(": ", 1)[0]).relative_to(folder).as_posix() for e in entries}


@pytest.mark.parametrize("workers", [0, 2])
def test_three_corrupt_files_are_named_once_over_many_passes(tmp_path, workers):
    from mmtok.data import BadSamples

    folder = bad_folder(tmp_path / "bad")
    loader = make_loader(str(folder), "train", R, batch_size=4, num_workers=workers, seed=0)
    bad, skipped, seen, it = BadSamples(), 0, 0, iter(loader)
    for _ in range(10):  # 40 samples: 20 passes over the 2 good files, every bad file re-read each pass
        batch = next(it)
        assert isinstance(batch["bad"], list) and all(isinstance(e, str) for e in batch["bad"])
        seen += len(batch["bad"])
        bad.add(batch)
        skipped += int(batch["skipped"].sum())
    assert bad.count == 3 and names_of(bad, folder) == BAD_NAMES
    reasons = dict(e.split(": ", 1) for e in bad)  # every name comes with its reason
    assert all(r.startswith("cannot decode image: ") for r in reasons.values()), reasons
    if workers == 0:  # one worker: every drop reported and counted exactly once (not once per pass)
        assert seen == 3 and skipped == 3
    else:  # a worker may name a file another worker named too; never more than once per worker
        assert 3 <= seen <= 6 and 3 <= skipped <= 6
    line = bad.summary(shown=2)
    assert line.startswith("3 bad samples skipped: ") and line.endswith("... and 1 more") and "\n" not in line


def test_val_passes_keep_exact_counts_and_name_once(tmp_path):
    folder = bad_folder(tmp_path / "bad")
    for workers in (0, 2):
        loader = make_loader(str(folder), "val", R, batch_size=2, num_workers=workers)
        first, second = list(loader), list(loader)
        assert sum(int(b["skipped"].sum()) for b in first) == 3  # exact, pass after pass
        assert sum(int(b["skipped"].sum()) for b in second) == 3
        assert names_of((e for b in first for e in b["bad"]), folder) == BAD_NAMES
        assert sum(len(b["bad"]) for b in first) == 3
        assert [e for b in second for e in b["bad"]] == []  # already named by these (persistent) workers


def test_bad_shard_samples_are_named_by_key_and_shard(tmp_path):
    shard = write_tar(tmp_path / "s-000000.tar", [
        ("good", {"png": png_bytes(10)}), ("junk", {"jpg": b"garbage"}), ("meta", {"json": b"{}"})])
    entries = [e for s in build_dataset(shard, "val", R) for e in s["bad"]]
    assert entries == [f"junk in {shard}: cannot decode image: not a recognised image format",
                       f"meta in {shard}: no image entry (entries: json)"]
    train = iter(build_dataset(shard, "train", R, shuffle_buffer=0))
    got = [next(train) for _ in range(12)]  # 12 resampled reads of the one shard
    assert sum(len(s["bad"]) for s in got) == 2 and sum(s["skipped"] for s in got) == 2


def test_bad_samples_collector_dedups_and_restores():
    from mmtok.data import BadSamples

    log = BadSamples()
    assert log.add({"bad": ["a: x", "b: y", "a: x"]}) == ["a: x", "b: y"]
    assert log.add({"bad": ["b: y", "c: z"]}) == ["c: z"] and log.add({"image": None}) == []
    assert log.count == 3 and log.summary() == "3 bad samples skipped: a: x; b: y; c: z"
    again = BadSamples()
    again.load_state_dict(log.state_dict())
    assert again.entries == log.entries and again.add(["a: x"]) == [] and BadSamples().summary() == ""


# ------------------------------------------------------------------------------------------------ holdout


def grey_folder(root: Path, n: int) -> Path:
    root.mkdir(parents=True)
    for i in range(n):
        (root / f"img_{i:03d}.png").write_bytes(png_bytes(5 * i + 10))
    return root


def test_holdout_score_is_stable_and_content_independent():
    from mmtok.data.holdout import holdout_score, split_files

    assert holdout_score("a.jpg") == pytest.approx(0.405328759074576, abs=1e-12)  # never changes across versions
    assert holdout_score("img_00.png") == pytest.approx(0.23138329675759536, abs=1e-12)
    assert 0 <= holdout_score("") < 1
    files = [f"f/{i}.png" for i in range(50)]
    train, val = split_files("f", files, 0.3)
    assert split_files("f", list(reversed(files)), 0.3)[1] == list(reversed(val))  # order does not matter
    assert split_files("f", files + ["f/new.png"], 0.3)[1] in (val, val + ["f/new.png"])  # others keep their side


def test_folder_holdout_splits_disjoint_and_complete(tmp_path):
    folder = grey_folder(tmp_path / "photos", 40)
    everything = set(range(10, 10 + 5 * 40, 5))
    val = ids(build_dataset(str(folder), "val", R, holdout=0.25))
    assert len(val) == len(set(val)) and 5 <= len(val) <= 16  # 10 of 40 by the hash
    it = iter(build_dataset(str(folder), "train", R, holdout=0.25, seed=0))
    train = set(ids(next(it) for _ in range(120)))  # 4 passes over the 30 train files
    assert not train & set(val) and train | set(val) == everything
    loader = make_loader(str(folder), "val", R, batch_size=4, num_workers=2, holdout=0.25)
    assert sorted(ids({"image": x} for b in loader for x in b["image"])) == sorted(val)
    assert sorted(ids(build_dataset(str(folder), "val", R, holdout=0.25))) == sorted(val)  # deterministic


def test_tiny_folder_holdout_keeps_one_of_each_or_says_why(tmp_path):
    two = grey_folder(tmp_path / "two", 2)
    val = ids(build_dataset(str(two), "val", R, holdout=0.01))
    train = ids(build_dataset(str(two), "train", R, holdout=0.01, max_samples=4))
    assert len(val) == 1 and set(train) == {10, 15} - set(val)
    assert len(ids(build_dataset(str(two), "val", R, holdout=0.99))) == 1  # never everything
    one = grey_folder(tmp_path / "one", 1)
    with pytest.raises(DataError, match="cannot hold out part of .* 1 image file"):
        build_dataset(str(one), "val", R, holdout=0.1)
    with pytest.raises(DataError, match="holdout does not apply to 'demo'"):
        build_dataset("demo", "val", R, holdout=0.1)
    for bad in (1.0, -0.1, float("nan"), "x"):
        with pytest.raises(DataError, match="holdout must be a fraction"):
            build_dataset(str(two), "val", R, holdout=bad)


def test_shard_holdout_splits_by_key(tmp_path):
    values = list(range(10, 210, 5))
    for s in range(2):
        write_tar(tmp_path / f"h-{s:06d}.tar", [(f"img_{v:03d}", {"png": png_bytes(v)}) for v in values[s::2]])
    pattern = str(tmp_path / "h-{000000..000001}.tar")
    from mmtok.data.holdout import is_held_out

    expected = {v for v in values if is_held_out(f"img_{v:03d}", 0.25)}
    assert 4 <= len(expected) <= 16
    assert set(ids(build_dataset(pattern, "val", R, holdout=0.25))) == expected
    loader = make_loader(pattern, "val", R, batch_size=3, num_workers=2, holdout=0.25)
    assert sorted(ids({"image": x} for b in loader for x in b["image"])) == sorted(expected)
    it = iter(build_dataset(pattern, "train", R, holdout=0.25, shuffle_buffer=0))
    train = set(ids(next(it) for _ in range(300)))
    assert train == set(values) - expected


def test_shard_holdout_that_catches_nothing_is_a_clear_error(tmp_path):
    from mmtok.data.holdout import holdout_score

    keys = ["k0", "k1"]
    assert min(holdout_score(k) for k in keys) > 0.05
    shard = write_tar(tmp_path / "t-000000.tar", [(k, {"png": png_bytes(9)}) for k in keys])
    with pytest.raises(DataError, match="held-out part of .* is empty"):
        list(build_dataset(shard, "val", R, holdout=0.05))
    with pytest.raises(DataError, match="held-out part") as err:
        list(make_loader(shard, "val", R, batch_size=2, num_workers=2, holdout=0.05))
    assert "data.val" in err.value.hint


def test_pack_folder_lists_small_images(photo_folder, tmp_path):
    Image.new("RGB", (400, 300)).save(photo_folder / "large.png")
    report = pack_folder(photo_folder, str(tmp_path / "s" / "p-%06d.tar"), min_side=25)
    assert sorted(report.small) == [("trip/b.png", 24, 20), ("trip/d.tif", 20, 20)]  # broken.jpg is skipped
    line = report.small_warning(shown=1)
    assert line.startswith("2 images have a shorter side below 25 px: trip/") and ", ..." in line
    assert pack_folder(photo_folder, str(tmp_path / "t" / "p-%06d.tar"), min_side=8).small_warning() is None


def test_data_sources_are_keyed_by_modality_and_kind():
    from mmtok.data.sources import DATA_SOURCES, build_dataset
    from mmtok.errors import DataError

    assert {"image/demo", "image/folder", "image/shards"} <= set(DATA_SOURCES.names())
    with pytest.raises(DataError, match="no demo data source for audio"):
        build_dataset("demo", "val", 16, modality="audio")
