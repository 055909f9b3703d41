"""`init` (start from a run, checkpoint or bundle) and `optim.freeze`: what is loaded, what is refused, and that
frozen parameters do not move while the rest train."""
from __future__ import annotations

import pytest
import torch

from _fixtures import FAST, tiny_run  # noqa: F401 (fixture)


def _recipe(*sets):
    from mmtok import config

    return config.load("test_tiny", [*FAST, "loss.weights.gan=0", "loss.weights.lecam=0", *sets])


def test_init_copies_the_source_ema_weights(tiny_run):
    from mmtok.model_io import load_model
    from mmtok.train.task import TokenizerTask

    task = TokenizerTask(_recipe(f"init.path={tiny_run}"))
    source, _, _ = load_model(tiny_run, ema=True)
    for k, v in source.state_dict().items():
        assert torch.equal(task.tokenizer.state_dict()[k], v), k
    assert task.init_report["loaded"] == len(source.state_dict()) and not task.init_report["fresh"]
    # the EMA copy starts from the loaded weights, not the fresh ones
    for k, v in source.state_dict().items():
        assert torch.equal(task.ema.module.state_dict()[k], v), k
    raw = TokenizerTask(_recipe(f"init.path={tiny_run}", "init.weights=raw"))
    raw_src, _, _ = load_model(tiny_run, ema=False)
    assert all(torch.equal(raw.tokenizer.state_dict()[k], v) for k, v in raw_src.state_dict().items())


def test_init_refuses_a_missing_path_another_family_and_other_shapes(tiny_run, tmp_path):
    from mmtok.errors import CheckpointError
    from mmtok.train.task import TokenizerTask

    with pytest.raises(CheckpointError, match="no run, checkpoint or bundle there"):
        TokenizerTask(_recipe(f"init.path={tmp_path / 'nope'}"))
    with pytest.raises(CheckpointError, match="holds a 'vqgan' model; this recipe trains 'sde'") as e:
        from mmtok import config

        TokenizerTask(config.load({"model": {"preset": "test_sde"}, "init": {"path": str(tiny_run)}}))
    assert "\n" not in e.value.message
    with pytest.raises(CheckpointError, match=r"shape mismatch.*quantizer") as e:
        TokenizerTask(_recipe(f"init.path={tiny_run}", "model.quantizer.codebook_size=64"))
    assert "init.partial" in e.value.hint
    # the same with the quantizer listed as partial: everything else loads, the codebook stays fresh
    task = TokenizerTask(_recipe(f"init.path={tiny_run}", "model.quantizer.codebook_size=64",
                                 "init.partial=['quantizer.*']"))
    assert task.init_report["fresh"] and all(k.startswith("quantizer.") for k in task.init_report["fresh"])
    # init.exclude: matching keys are never copied, even when they fit
    torch.manual_seed(0)
    fresh = TokenizerTask(_recipe("init.exclude=['decoder.*']"))
    torch.manual_seed(0)
    task = TokenizerTask(_recipe(f"init.path={tiny_run}", "init.exclude=['decoder.*']"))
    own = task.tokenizer.state_dict()
    assert all(k.startswith("decoder.") for k in task.init_report["fresh"]) and task.init_report["fresh"]
    assert all(torch.equal(own[k], fresh.tokenizer.state_dict()[k]) for k in task.init_report["fresh"])


def test_freeze_keeps_matching_parameters_fixed_and_rejects_a_pattern_matching_nothing(tiny_run, tmp_path):
    from mmtok.errors import RecipeError
    from mmtok.train.run import train
    from mmtok.train.task import TokenizerTask

    with pytest.raises(RecipeError, match="'nothing.*' match"):
        TokenizerTask(_recipe("optim.freeze=['nothing.*']"))
    recipe = _recipe(f"init.path={tiny_run}", "optim.freeze=['encoder.*']", "optim.ema_decay=null",
                     "trainer.max_steps=3", "data.val=null")
    summary = train(recipe, tmp_path / "run")
    assert summary["init"]["loaded"] > 0 and summary["frozen"]["tensors"] > 0
    from mmtok.model_io import load_model

    before, _, _ = load_model(tiny_run, ema=True)
    after, _, _ = load_model(tmp_path / "run", ema=False)
    b, a = before.state_dict(), after.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a if k.startswith("encoder."))
    assert any(not torch.equal(a[k], b[k]) for k in a if k.startswith("decoder."))
    # resuming with another frozen set is refused (the optimizer state would not fit)
    from mmtok.train.run import resume_recipe

    with pytest.raises(RecipeError, match="optim.freeze"):
        resume_recipe(tmp_path / "run", ["optim.freeze=['decoder.*']"])


def test_a_missing_init_path_names_the_fix_before_any_work(tmp_path):
    """SEED stage 2 before stage 1 (or a stage 1 trained under another --out): one line that says what to do."""
    from typer.testing import CliRunner

    from mmtok.cli.main import app

    result = CliRunner().invoke(app, ["train", "seed_quickstart_stage2", "--out", str(tmp_path / "s2"), "--set",
                                      f"init.path={tmp_path / 'no-stage1'}"])
    assert result.exit_code == 2 and "no run, checkpoint or bundle there" in result.stderr
    assert "--set init.path=" in result.stderr and "Traceback" not in result.stderr
