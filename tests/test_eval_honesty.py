"""Honest evaluation: rFID reliability flags, reference statistics that record (and are checked against) their
protocol, files the user names must exist, and one folder per evaluation. The FID network here is a tiny
TorchScript stand-in with 8 features (the real one's 2048-d Frechet distance takes tens of seconds on CPU)."""
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from _fixtures import copy_run, tiny_images, tiny_run  # noqa: F401  (fixtures)
from mmtok.cli.main import app

runner = CliRunner()


def _script(path: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 5, stride=4), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten())
    torch.jit.save(torch.jit.script(net), str(path))
    return path


@pytest.fixture
def fake_fid(tmp_path, monkeypatch):
    """Two different 8-feature FID networks (files), accepted in place of Inception-v3."""
    from mmtok.metrics.fid import InceptionFeatures

    monkeypatch.setattr(InceptionFeatures, "num_features", 8)
    return _script(tmp_path / "fid_a.pt", 0), _script(tmp_path / "fid_b.pt", 1)


def _eval(model, data, *extra):
    args = ["eval", str(model), "--data", str(data), "--batch-size", "6", "--num-workers", "0", *map(str, extra)]
    return runner.invoke(app, args)


def _one_line_error(result, message: str) -> None:
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    err = result.stderr.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    assert message in err, (message, err)


def test_reliability_levels_and_flags():
    from mmtok.modalities.image.fid_protocol import rfid_reliability, rfid_warning
    from mmtok.evaluation.report import metric_rows

    levels = [rfid_reliability(n) for n in (2, 499, 500, 4999, 5000, 50000)]
    assert levels == ["not_meaningful", "not_meaningful", "low", "low", "ok", "ok"]
    assert rfid_warning(5000) is None and "low-reliability" in rfid_warning(1200)
    assert "not meaningful" in rfid_warning(12) and "--num-samples" in rfid_warning(12)
    rows = dict(metric_rows({"rfid": 1.5, "rfid_num_images": 1200, "rfid_reliability": "low"}))
    assert rows["rFID"] == "1.500 (LOW RELIABILITY: 1200 images)"
    assert dict(metric_rows({"rfid": 1.5, "rfid_num_images": 50000, "rfid_reliability": "ok"}))["rFID"] == "1.500"
    assert dict(metric_rows({"rfid": "unavailable"}))["rFID"] == "unavailable"


def test_rfid_from_few_images_is_flagged_in_table_json_and_report(tiny_run, tiny_images, tmp_path,  # noqa: F811
                                                                    fake_fid):
    out = tmp_path / "e"
    result = _eval(tiny_run, tiny_images, "--out", out, "--fid-weights", fake_fid[0])
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    assert "(NOT MEANINGFUL: 12 images)" in result.stdout  # in the table's rFID row
    assert "rFID from 12 images is not meaningful" in result.stdout  # and as a warning line under it
    data = json.loads((out / "metrics.json").read_text())
    m = data["metrics"]
    assert isinstance(m["rfid"], float) and m["rfid_reliability"] == "not_meaningful" and m["rfid_num_images"] == 12
    assert data["warnings"][0].startswith("rFID from 12 images is not meaningful")
    assert data["protocol"]["fid_network"]["sha256"] == hashlib.sha256(fake_fid[0].read_bytes()).hexdigest()
    report = (out / "report.md").read_text()
    assert "| rFID | " in report and "(NOT MEANINGFUL: 12 images) |" in report
    assert "- **rFID from 12 images is not meaningful" in report


def test_reference_stats_record_their_protocol_and_refuse_a_mismatch(tiny_run, tiny_images, tmp_path,  # noqa: F811
                                                                       fake_fid):
    from mmtok.metrics import load_stats_meta

    net_a, net_b = fake_fid
    ref = tmp_path / "ref.safetensors"
    result = _eval(tiny_run, tiny_images, "--out", tmp_path / "e1", "--fid-weights", net_a,
                   "--save-reference-stats", ref)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    meta = load_stats_meta(ref)
    assert meta["source"] == {"data": str(tiny_images), "path": str(tiny_images.resolve())}
    assert meta["num_images"] == 12 and meta["resolution"] == 16 and meta["split"] == "val"
    assert "centre crop 16x16" in meta["crop"] and meta["network"]["file"] == "fid_a.pt"
    assert meta["network"]["sha256"] == hashlib.sha256(net_a.read_bytes()).hexdigest()
    first = json.loads((tmp_path / "e1" / "metrics.json").read_text())["metrics"]["rfid"]

    result = _eval(tiny_run, tiny_images, "--out", tmp_path / "e2", "--fid-weights", net_a, "--reference-stats", ref)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    data = json.loads((tmp_path / "e2" / "metrics.json").read_text())
    assert data["metrics"]["rfid"] == pytest.approx(first, rel=1e-9)
    assert data["protocol"]["reference_source"]["data"] == str(tiny_images)
    assert not any("were computed on" in w for w in data["warnings"])

    for extra, message in [
        (["--resolution", 32, "--fid-weights", net_a], "were computed at 16px; this evaluation is at 32px"),
        (["--fid-weights", net_b], "computed with another FID network: fid_a.pt"),
    ]:
        _one_line_error(_eval(tiny_run, tiny_images, "--out", tmp_path / "e3", "--reference-stats", ref, *extra),
                        message)
        assert not (tmp_path / "e3").exists()  # refused before any work

    moved = Path(shutil.copytree(tiny_images, tmp_path / "moved"))  # the same images elsewhere: reuse, but say so
    result = _eval(tiny_run, moved, "--out", tmp_path / "e4", "--fid-weights", net_a, "--reference-stats", ref)
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    data = json.loads((tmp_path / "e4" / "metrics.json").read_text())
    assert any(f"were computed on '{tiny_images}'" in w and f"reads '{moved}'" in w for w in data["warnings"])
    assert data["metrics"]["rfid"] == pytest.approx(first, rel=1e-9)

    np.savez(tmp_path / "old.npz", mu=np.zeros(8), sigma=np.eye(8), count=np.int64(12))  # no record: refused
    _one_line_error(_eval(tiny_run, tiny_images, "--out", tmp_path / "e5", "--fid-weights", net_a,
                          "--reference-stats", tmp_path / "old.npz"), "do not record their source")


def test_files_the_user_names_must_exist_and_fit(tiny_run, tiny_images, tmp_path, monkeypatch):  # noqa: F811
    import dataclasses

    from mmtok import assets

    out = tmp_path / "out"
    cases = [
        (["--fid-weights", tmp_path / "none.pt"], f"--fid-weights {tmp_path / 'none.pt'}: no such file"),
        (["--reference-stats", tmp_path / "none.npz"], f"--reference-stats {tmp_path / 'none.npz'}: no such file"),
        (["--save-reference-stats", tmp_path / "stats.txt"], "reference statistics are .npz or .safetensors files"),
        (["--no-rfid", "--save-reference-stats", tmp_path / "s.npz"], "--no-rfid with"),
    ]
    for extra, message in cases:
        _one_line_error(_eval(tiny_run, tiny_images, "--out", out, *extra), message)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not torchscript")
    _one_line_error(_eval(tiny_run, tiny_images, "--out", out, "--fid-weights", bad), "cannot read")
    fid_asset = assets.ASSETS["fid-inception"]
    monkeypatch.setitem(assets.ASSETS, "fid-inception", dataclasses.replace(fid_asset, library_dirs=lambda: []))
    monkeypatch.setenv("MMTOK_HOME", str(tmp_path / "home"))
    _one_line_error(_eval(tiny_run, tiny_images, "--out", out, "--save-reference-stats", tmp_path / "s.npz"),
                    "--save-reference-stats needs the FID network, which is not available")
    assert not out.exists()


def test_each_evaluation_gets_its_own_folder_and_out_needs_force(tiny_run, tiny_images, tmp_path):  # noqa: F811
    from mmtok.evaluation.output import find_evaluations

    run = copy_run(tiny_run, tmp_path / "run")
    for n in ("001", "002"):
        result = _eval(run, tiny_images, "--no-rfid", "--num-samples", 4)
        assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
        assert f"{run / 'eval' / n / 'metrics.json'}" in result.stdout
    assert find_evaluations(run / "eval") == [run / "eval" / n / "metrics.json" for n in ("001", "002")]

    out = tmp_path / "mine"
    out.mkdir()
    (out / "reconstructions.png").write_text("stale")
    (out / "notes.txt").write_text("mine")
    _one_line_error(_eval(run, tiny_images, "--no-rfid", "--out", out), f"--out {out} is not empty")
    result = _eval(run, tiny_images, "--no-rfid", "--num-samples", 4, "--out", out, "--force")
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    assert Image.open(out / "reconstructions.png").size[0] > 0 and (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / "metrics.json").read_text())["metrics"]["rfid"] == "unavailable"
    _one_line_error(_eval(run, tiny_images, "--out", out / "notes.txt"), "is a file")


def test_usage_rows_say_which_number_is_a_mean_of_levels_and_which_one_level():
    from mmtok.evaluation.report import metric_rows

    one = dict(metric_rows({"codebook_usage_pct": 97.0, "codebook_used": 993, "codebook_size": 1024,
                            "num_codebooks": 1}))
    assert one["codebook usage"] == "97.0% (993/1024)"
    rvq = dict(metric_rows({"codebook_usage_pct": 90.5, "codebook_usage_min_pct": 71.2, "codebook_used": 1854,
                            "codebook_size": 256, "num_codebooks": 8}))
    assert rvq["codebook usage, mean of the 8 levels"] == "90.5% (1854 of 8 x 256 codes)"
    assert rvq["codebook usage, least-used level"] == "71.2%" and "codebook usage" not in rvq
    assert "codebook_usage_min_pct" not in rvq  # shown once, by its label
