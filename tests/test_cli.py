"""The command-line contract: help, recipes, --print-config, and one-line user errors (exit 2)."""
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from mmtok.cli.main import app

runner = CliRunner()


def test_bare_mmtok_prints_help():
    result = runner.invoke(app, [])
    assert "train" in result.stdout and "recipes" in result.stdout


def test_help_does_not_import_torch():
    code = ("import sys\nfrom mmtok.cli.main import app\ntry:\n    app(['--help'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'\nprint('TORCH-FREE')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "TORCH-FREE" in out.stdout, out.stderr


def test_recipes_lists_every_shipped_recipe():
    result = runner.invoke(app, ["recipes"])
    assert result.exit_code == 0
    for name in ["quickstart", "llamagen_vq16", "taming_f16_1024", "test_tiny"]:
        assert name in result.stdout


def test_print_config_applies_overrides():
    result = runner.invoke(app, ["train", "quickstart", "--print-config", "--max-steps", "7", "--data", "imgs/",
                                 "--set", "optim.lr=0.5"])
    assert result.exit_code == 0, result.stderr
    assert "max_steps: 7" in result.stdout and "train: imgs/" in result.stdout and "lr: 0.5" in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["train", "missing.yaml"], "recipe file not found: missing.yaml"),
        (["train", "quickstrat"], "did you mean 'quickstart'"),
        (["train", "quickstart", "--set", "optim.lr"], "bad override"),
        (["train", "quickstart", "--set", "optim.lrr=1"], "did you mean 'lr'"),
        (["train", "quickstart", "--set", "model.resolution=60"], "not divisible by the downsample factor 8"),
        (["train", "test_tiny", "--out", "{tmp}/run", "--data", "{tmp}/none-{{000000..000003}}.tar"], "no shard"),
        (["train", "test_tiny", "--out", "{tmp}/run", "--data", "{tmp}/nowhere"], "{tmp}/nowhere"),
        (["train", "test_tiny", "--out", "{tmp}/empty", "--resume"], "nothing to resume"),
    ],
)
def test_user_errors_are_one_line_on_stderr_with_exit_2(args, message, tmp_path):
    args = [a.format(tmp=tmp_path) for a in args]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, (result.stdout, result.stderr, result.exception)
    assert message.format(tmp=tmp_path) in result.stderr
    assert "Traceback" not in result.stderr and result.stderr.startswith("error: ")
