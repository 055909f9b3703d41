"""`mmtok tokenize`: captioned images to token shards (uint32 ids, captions, keys, the bundle's checksum);
resumable, corrupt samples skipped and counted, folders and webdataset shards."""
from __future__ import annotations

import json

import numpy as np
import pytest
from _data_helpers import write_tar
from PIL import Image
from test_lm_layout import make_bundle, tiny_bundle  # noqa: F401
from typer.testing import CliRunner

import mmtok
from mmtok.cli.main import app
from mmtok.errors import DataError
from mmtok.lm import tokens
from mmtok.lm.layout import bundle_checksum
from mmtok.lm.tokens import read_tokens, tokenize

N = 7


def _folder(root, n=N, corrupt=(3,)):
    """n random PNGs (varied sizes) with captions beside them; the ones in `corrupt` are not images."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        path = root / f"im_{i:02d}.png"
        if i in corrupt:
            path.write_bytes(b"not a png")
        else:
            h, w = int(rng.integers(16, 30)), int(rng.integers(16, 30))
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path)
        (root / f"im_{i:02d}.txt").write_text(f"a photo of thing {i}\n")
    return root


def test_folder_to_shards_matches_the_bundle_and_skips_corrupt_images(tiny_bundle, tmp_path):  # noqa: F811
    data = _folder(tmp_path / "data")
    report = tokenize(tiny_bundle, str(data), tmp_path / "tok", shard_size=3, batch_size=2, progress=False)
    assert report["samples"] == N and report["skipped"] == 1 and "im_03.png" in report["bad"][0]
    assert report["shards"] == ["shard-000000.npz", "shard-000001.npz", "shard-000002.npz"]
    ts = read_tokens(tmp_path / "tok")
    assert ts.ids.dtype == np.uint32 and ts.ids.shape == (N - 1, 4, 4)
    assert ts.keys == [f"im_{i:02d}.png" for i in range(N) if i != 3]
    assert ts.captions == [f"a photo of thing {i}" for i in range(N) if i != 3]
    assert ts.bundle_checksum == bundle_checksum(tiny_bundle) and ts.skipped == 1
    tok = mmtok.load(tiny_bundle)
    expected = tok.encode([str(data / k) for k in ts.keys]).numpy()
    np.testing.assert_array_equal(ts.ids, expected)


def test_a_killed_run_keeps_finished_shards_and_redoes_the_rest(tiny_bundle, tmp_path, monkeypatch):  # noqa: F811
    data = _folder(tmp_path / "data", corrupt=())
    out = tmp_path / "tok"
    tokenize(tiny_bundle, str(data), out, shard_size=2, progress=False)
    before = read_tokens(out)
    # a kill: shard 2 was never renamed into place (a .tmp is left), the rank's completion file is missing
    (out / "shard-000002.npz").rename(out / "shard-000002.npz.12345.tmp")
    (out / "rank-0.json").unlink()
    with pytest.raises(DataError, match="has not finished"):
        read_tokens(out)
    encoded = []
    real_add = tokens._Shard.add
    monkeypatch.setattr(tokens._Shard, "add", lambda self, item, *a: (encoded.append(item.key), real_add(self, item, *a)))
    report = tokenize(tiny_bundle, str(data), out, shard_size=2, progress=False)
    assert encoded == ["im_04.png", "im_05.png"] and report["kept"] == 3 and report["encoded"] == 2
    assert not list(out.glob("*.tmp"))
    after = read_tokens(out)
    np.testing.assert_array_equal(after.ids, before.ids)
    assert after.keys == before.keys and after.captions == before.captions


def test_webdataset_shards_with_txt_and_json_captions(tiny_bundle, tmp_path):  # noqa: F811
    import io

    def png(seed):
        buf = io.BytesIO()
        Image.fromarray(np.random.default_rng(seed).integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(buf, "PNG")
        return buf.getvalue()

    write_tar(tmp_path / "a-0.tar", [("k0", {"png": png(0), "txt": b"red cat"}),
                                     ("k1", {"png": b"broken", "txt": b"x"}),
                                     ("k2", {"jpg": png(2), "json": json.dumps({"caption": "blue dog"}).encode()})])
    write_tar(tmp_path / "a-1.tar", [("k3", {"txt": b"no image"}), ("k4", {"png": png(4)})])
    report = tokenize(tiny_bundle, str(tmp_path / "a-{0..1}.tar"), tmp_path / "tok", progress=False)
    ts = read_tokens(tmp_path / "tok")
    assert ts.captions == ["red cat", "blue dog", ""] and report["skipped"] == 2
    assert [k.split(" in ")[0] for k in ts.keys] == ["k0", "k2", "k4"]


def test_tokens_of_another_bundle_or_source_are_refused(tiny_bundle, tmp_path):  # noqa: F811
    data = _folder(tmp_path / "data", n=2, corrupt=())
    tokenize(tiny_bundle, str(data), tmp_path / "tok", progress=False)
    other = make_bundle(tmp_path, seed=1)
    with pytest.raises(DataError, match="another bundle"):
        tokenize(other, str(data), tmp_path / "tok", progress=False)
    runner = CliRunner()
    result = runner.invoke(app, ["tokenize", str(tiny_bundle), "--data", str(tmp_path / "nothing"), "--out",
                                 str(tmp_path / "t2")])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and "no data" in result.stderr
    result = runner.invoke(app, ["tokenize", str(tiny_bundle), "--data", str(data), "--out", str(tmp_path / "t3"),
                                 "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "tokenized 2 samples" in result.stdout and read_tokens(tmp_path / "t3").ids.shape == (2, 4, 4)


def test_ranks_split_the_shards_and_together_give_the_single_rank_result(tiny_bundle, tmp_path):  # noqa: F811
    data = _folder(tmp_path / "data", corrupt=())
    tokenize(tiny_bundle, str(data), tmp_path / "one", shard_size=2, progress=False)
    r0 = tokenize(tiny_bundle, str(data), tmp_path / "two", shard_size=2, rank=0, world=2, progress=False)
    assert r0["shards"] == ["shard-000000.npz", "shard-000002.npz"] and r0["encoded"] == 4
    with pytest.raises(DataError, match="misses 2 of 4 token shards"):
        read_tokens(tmp_path / "two")
    tokenize(tiny_bundle, str(data), tmp_path / "two", shard_size=2, rank=1, world=2, progress=False)
    one, two = read_tokens(tmp_path / "one"), read_tokens(tmp_path / "two")
    np.testing.assert_array_equal(one.ids, two.ids)
    assert one.keys == two.keys and one.captions == two.captions
