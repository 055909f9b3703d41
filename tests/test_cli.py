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
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert "[mmtok lm train]" in lines["lm_smollm2"]  # the LLM stage's recipe too, marked as such
    # a description that spans several comment lines is given whole, not cut mid-sentence
    assert lines["motion_momask_rvq"].rstrip().endswith("batch 256, lr 2e-4.")
    assert all(line.rstrip().endswith((".", ")")) for line in lines.values()), result.stdout


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


def _command_paths(command, prefix=()):
    """Every command and group path of the app, e.g. (), ('train',), ('data',), ('data', 'pack')."""
    yield prefix
    for name, sub in getattr(command, "commands", {}).items():
        yield from _command_paths(sub, prefix + (name,))


ALL_COMMANDS = list(_command_paths(__import__("typer").main.get_command(app)))


def test_every_command_is_walked():
    names = {" ".join(p) for p in ALL_COMMANDS}
    assert {"", "train", "recipes", "eval", "export", "encode", "decode", "doctor", "data", "data pack"} <= names


@pytest.mark.parametrize("path", ALL_COMMANDS, ids=lambda p: " ".join(p) or "mmtok")
def test_help_and_h_on_every_command_without_bool_placeholders(path):
    long = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "160"})
    short = runner.invoke(app, [*path, "-h"], env={"COLUMNS": "160"})
    assert long.exit_code == 0 and short.exit_code == 0, (long.stdout, short.stdout, short.stderr)
    assert "Usage: " in short.stdout and short.stdout == long.stdout
    assert "<bool>" not in long.stdout and "--help" in long.stdout, long.stdout
    assert " -h " in long.stdout


def test_version_prints_mmtok_and_torch_versions_and_stays_torch_free():
    import mmtok

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith(f"mmtok {mmtok.__version__} (torch ")
    code = ("import sys\nfrom mmtok.cli.main import app\ntry:\n    app(['--version'])\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'\nprint('TORCH-FREE')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert f"mmtok {mmtok.__version__}" in out.stdout and "TORCH-FREE" in out.stdout, out.stderr


@pytest.mark.parametrize("override, message", [
    ("trainer.devices=0", "trainer.devices: 0 devices would run nothing"),
    ("optim.lr=.inf", "optim.lr: Input should be a finite number"),
])
def test_recipe_value_errors_stop_before_any_work(override, message, tmp_path):
    result = runner.invoke(app, ["train", "test_tiny", "--out", str(tmp_path / "run"), "--set", override])
    assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()
