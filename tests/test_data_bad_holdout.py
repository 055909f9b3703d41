"""The data layer's bad-sample naming (each bad file named once, with its reason) and held-out splits by name."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from _data_helpers import R, ids, png_bytes, write_tar
from mmtok.data import build_dataset, make_loader
from mmtok.errors import DataError


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
    with pytest.raises(DataError, match="cannot hold out part of .* it has 1 file"):
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


def test_a_small_shard_set_holds_out_one_sample_chosen_before_training(tmp_path):
    """Local shards are listed up front (tar headers, no decoding): when no key scores below the fraction, the
    lowest-scoring sample is held out anyway, as in a folder; remote shards cannot be listed and are refused."""
    from mmtok.data.holdout import ShardHoldout, holdout_score

    keys = ["k0", "k1", "k2"]
    assert min(holdout_score(k) for k in keys) > 0.05
    shard = write_tar(tmp_path / "t-000000.tar", [(k, {"png": png_bytes(40 * i + 9)}) for i, k in enumerate(keys)])
    lowest = min(keys, key=holdout_score)
    val = build_dataset(shard, "val", R, holdout=0.05)
    assert val.held_counts == (1, 3) and ids(val) == [40 * keys.index(lowest) + 9]
    train = iter(build_dataset(shard, "train", R, holdout=0.05, shuffle_buffer=0))
    assert sorted(set(ids(next(train) for _ in range(30)))) == sorted(40 * i + 9 for i, k in enumerate(keys)
                                                                      if k != lowest)
    with pytest.raises(DataError, match="remote shards cannot be listed") as err:
        ShardHoldout("pipe:cat x.tar", ["pipe:cat x.tar"], 0.05)
    assert "data.val" in err.value.hint
    one = write_tar(tmp_path / "one-000000.tar", [("only", {"png": png_bytes(9)})])
    with pytest.raises(DataError, match="its shards hold 1 sample"):
        build_dataset(one, "val", R, holdout=0.05)


def test_one_shard_of_a_few_dozen_photos_trains_and_validates_without_data_val(tmp_path):
    """`mmtok train RECIPE --data ONE_SHARD` validates on a held-out part chosen before step 0 and says how many."""
    from typer.testing import CliRunner

    from mmtok.cli.main import app

    shard = write_tar(tmp_path / "photos-000000.tar", [(f"photo_{i:03d}", {"png": png_bytes(4 * i + 3, (40, 36))})
                                                      for i in range(30)])
    result = CliRunner().invoke(app, ["train", "test_tiny", "--data", shard, "--out", str(tmp_path / "run"), "--set",
                                      "trainer.max_steps=2", "--set", "trainer.val_every=2"])
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "validating on 1 of 30 samples" in result.stderr  # 2% of 30 is no sample: one is held out anyway
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert "val/psnr" in summary["final"]


def test_a_val_pass_knows_its_length_when_the_source_does(tmp_path):
    """`mmtok eval`'s bar shows N/total and an ETA: folders, the demo and counted held-out shards know N."""
    folder = tmp_path / "f"
    folder.mkdir()
    for i in range(5):
        (folder / f"{i}.png").write_bytes(png_bytes(10 * i + 5))
    assert build_dataset(str(folder), "val", R).pass_size() == 5
    assert build_dataset(str(folder), "val", R, max_samples=3).pass_size() == 3
    assert build_dataset(str(folder), "train", R).pass_size() is None
    assert build_dataset("demo", "val", R).pass_size() == 256
    assert build_dataset("demo", "val", R, max_samples=1000).pass_size() == 1000
    shard = write_tar(tmp_path / "s-000000.tar", [(f"k{i}", {"png": png_bytes(i)}) for i in range(10)])
    held = build_dataset(shard, "val", R, holdout=0.2)
    assert held.pass_size() == held.held_counts[0] == len(ids(held))
    assert build_dataset(shard, "val", R).pass_size() is None  # streamed shards: unknown until read


def test_a_large_shard_set_is_listed_only_until_both_sides_are_seen(tmp_path, monkeypatch):
    """Listing stops after LIST_LIMIT samples once keys on both sides of the fraction were seen (no count then),
    so a big local set does not pay for a full listing; the streamed rule still holds out by name."""
    from mmtok.data.holdout import ShardHoldout, is_held_out

    monkeypatch.setattr(ShardHoldout, "LIST_LIMIT", 20)
    shard = write_tar(tmp_path / "big-000000.tar", [(f"k{i:03d}", {"png": png_bytes(i % 250), "json": b"{}"})
                                                    for i in range(200)])
    rule = ShardHoldout(shard, [shard], 0.25)
    assert rule.counts is None and not rule.forced_in and not rule.forced_out
    assert all(rule.held(f"k{i:03d}") == is_held_out(f"k{i:03d}", 0.25) for i in range(200))
    monkeypatch.setattr(ShardHoldout, "LIST_LIMIT", 10_000)
    full = ShardHoldout(shard, [shard], 0.25)  # two entries per sample: counted once
    assert full.counts == (sum(is_held_out(f"k{i:03d}", 0.25) for i in range(200)), 200)
