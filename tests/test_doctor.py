"""`mmtok doctor`: every asset with its status and where it is (or was looked for), the torch setup, exit 0."""
import torch
from typer.testing import CliRunner

from mmtok.assets import ASSETS
from mmtok.cli.main import app

runner = CliRunner()


def test_doctor_lists_every_asset_found_or_missing_and_the_environment(tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / "assets").mkdir(parents=True)
    (home / "assets" / ASSETS["lpips-alex"].filename).write_bytes(b"stand-in")
    monkeypatch.setenv("MMTOK_HOME", str(home))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("COLUMNS", "400")  # one table row per line, paths unfolded
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    lines = result.stdout.splitlines()
    for name in ASSETS:
        row = next(ln for ln in lines if f" {name} " in ln)
        status = "found" if ASSETS[name].find() else "missing"
        assert status in row, row
    alex = next(ln for ln in lines if " lpips-alex " in ln)
    assert "found" in alex and str(home / "assets" / ASSETS["lpips-alex"].filename) in alex
    vgg = next(ln for ln in lines if " lpips-vgg " in ln)
    assert "missing" in vgg and str(home / "assets" / ASSETS["lpips-vgg"].filename) in vgg  # where it looked
    assert str(tmp_path / "torch" / "hub" / "checkpoints" / ASSETS["lpips-vgg"].filename) in result.stdout
    assert "copy vgg16-397923af.pth" in vgg  # how to provide it
    for what in ["torch", "CUDA available", "triton importable", "bf16", "CPU threads"]:
        assert what in result.stdout, what
    assert torch.__version__ in result.stdout


def test_doctor_lists_teachers_and_classifiers_with_their_weights(tmp_path, monkeypatch):
    from mmtok.teachers.config import CLASSIFIERS, TEACHER_PRESETS

    home = tmp_path / "home"
    (home / "assets").mkdir(parents=True)
    (home / "assets" / ASSETS["siglip-b16-256"].filename).write_bytes(b"stand-in")
    monkeypatch.setenv("MMTOK_HOME", str(home))
    monkeypatch.setenv("COLUMNS", "400")
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    lines = result.stdout.splitlines()
    start = next(i for i, ln in enumerate(lines) if "teachers and classifiers" in ln)
    rows = [ln for ln in lines[start:] if ln.startswith("│")]
    for name, preset in TEACHER_PRESETS.items():
        row = next(ln for ln in rows if f" {name} " in ln and " teacher " in ln)
        status = "found" if ASSETS[preset["weights"]].find() else "missing"
        assert status in row and f"asset {preset['weights']}" in row, row
    for name, (asset, res) in CLASSIFIERS.items():
        row = next(ln for ln in rows if f" {name} " in ln and " classifier " in ln)
        assert f"{res} px" in row and ("found" if ASSETS[asset].find() else "missing") in row, row
    siglip = next(ln for ln in rows if " siglip_b16_256 " in ln)
    assert "found" in siglip and str(home / "assets" / "ViT-B-16-SigLIP-256.safetensors") in siglip
    so400m = next(ln for ln in rows if " siglip_so400m_384 " in ln)
    assert "missing" in so400m and str(home / "assets" / "siglip-so400m-patch14-384") in so400m  # where it looked


def test_doctor_tables_in_a_log_file_keep_one_row_per_line(monkeypatch):
    """Written to a file or a pipe (not a terminal, no $COLUMNS), the tables are WIDE columns wide, not 80."""
    monkeypatch.delenv("COLUMNS", raising=False)
    result = runner.invoke(app, ["doctor"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    for name in ASSETS:
        row = next(ln for ln in lines if f" {name} " in ln)
        assert ("found" in row) != ("missing" in row), row  # the status sits on the asset's own line
    assert max(len(ln) for ln in lines) > 80
