"""`mmtok data pack`: the summary, the next command, one-line errors, no torch at import."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from mmtok.cli.data import data_app


def make_folder(root):
    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(root / f"img{i}.png")
    (root / "img0.txt").write_text("first image")
    (root / "broken.jpg").write_bytes(b"not a jpeg")
    return root


def test_pack_prints_summary_and_next_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_folder(tmp_path / "photos")
    result = CliRunner().invoke(data_app, ["pack", "photos", "shards/ph-%06d.tar", "--shard-size", "2",
                                           "--val-fraction", "0.2", "--seed", "1"])
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "train samples" in out and "skipped broken.jpg" in out
    assert ("mmtok train quickstart --data 'shards/ph-{000000..000001}.tar' "
            "--set data.val='shards/ph-val-000000.tar'") in out
    assert sorted(p.name for p in (tmp_path / "shards").iterdir()) == [
        "ph-000000.tar", "ph-000001.tar", "ph-pack.json", "ph-val-000000.tar"]
    report = json.loads((tmp_path / "shards" / "ph-pack.json").read_text())
    assert (report["train_written"], report["val_written"], report["captions"]) == (4, 1, 1)
    assert [s["file"] for s in report["skipped"]] == ["broken.jpg"]


def test_pack_without_val_prints_train_only_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_folder(tmp_path / "photos")
    result = CliRunner().invoke(data_app, ["pack", "photos", "out/x-%06d.tar"])
    assert result.exit_code == 0, result.stderr
    assert "mmtok train quickstart --data 'out/x-000000.tar'" in result.stdout
    assert "--set data.val" not in result.stdout


def assert_one_line_error(result, text):
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_pack_errors_are_one_line(tmp_path):
    runner = CliRunner()
    assert_one_line_error(runner.invoke(data_app, ["pack", str(tmp_path / "missing"), str(tmp_path / "o-%06d.tar")]),
                          "does not exist")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.md").write_text("no images here")
    assert_one_line_error(runner.invoke(data_app, ["pack", str(tmp_path / "empty"), str(tmp_path / "o-%06d.tar")]),
                          "no image files")
    make_folder(tmp_path / "photos")
    assert_one_line_error(runner.invoke(data_app, ["pack", str(tmp_path / "photos"), str(tmp_path / "o.tar")]),
                          "shard-number field")
    assert_one_line_error(runner.invoke(data_app, ["pack", str(tmp_path / "photos"), str(tmp_path / "o-%06d.tar"),
                                                   "--val-fraction", "1.5"]), "val fraction")


def test_help_comes_from_the_docstring():
    result = CliRunner().invoke(data_app, ["pack", "--help"])
    assert result.exit_code == 0 and "Pack a folder of images into webdataset tar shards" in result.stdout


def test_importing_the_command_loads_no_torch():
    code = "import sys, mmtok.cli.data; print(sorted(m for m in ('torch', 'webdataset', 'PIL') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_pack_warns_once_about_small_images(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_folder(tmp_path / "photos")  # five 24x20 images and a broken file
    Image.new("RGB", (300, 260), (1, 2, 3)).save(tmp_path / "photos" / "big.png")
    result = CliRunner().invoke(data_app, ["pack", "photos", "out/x-%06d.tar"])
    assert result.exit_code == 0, result.stderr
    warnings = [ln for ln in result.stdout.splitlines() if "shorter side below 256 px" in ln]
    assert len(warnings) == 1, result.stdout
    assert warnings[0].startswith("warning: 5 images have") and "img0.png (24x20)" in warnings[0]
    assert "big.png" not in warnings[0] and "..." in warnings[0]  # a few named, not all
    report = json.loads((tmp_path / "out" / "x-pack.json").read_text())
    assert sorted(s["file"] for s in report["small"]) == [f"img{i}.png" for i in range(5)]
    assert report["small"][0]["width"] == 24 and report["small"][0]["height"] == 20

    quiet = CliRunner().invoke(data_app, ["pack", "photos", "out2/x-%06d.tar", "--min-side", "16"])
    assert quiet.exit_code == 0 and "shorter side" not in quiet.stdout
