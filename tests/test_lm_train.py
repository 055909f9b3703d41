"""`mmtok lm train`: packed caption <-> image sequences, loss on targets only, held-out losses, exact resume,
LoRA, and bad input refused before any work."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from test_lm_layout import make_bundle, make_extended, tiny_bundle  # noqa: F401
from typer.testing import CliRunner

from mmtok.errors import CheckpointError, DataError, RecipeError
from mmtok.lm.recipe import load_recipe
from mmtok.lm.train import train


def _recipe(ext, tokens, **over):
    raw = {"name": "t", "seed": 0, "model": {"path": str(ext)},
           "data": {"train": str(tokens), "val": "holdout", "holdout_fraction": 0.2, "block_size": 96,
                    "batch_size": 4, "max_caption_tokens": 8, "caption_dropout": 0.1},
           "optim": {"lr": 3e-3, "warmup_steps": 2, "min_lr_ratio": 1.0},
           "trainer": {"max_steps": 40, "val_every": 1000, "ckpt_every": 1000, "log_every": 5, "accelerator": "cpu",
                       "devices": 1, "threads": 1}}
    for key, value in over.items():
        section, name = key.split("__")
        raw.setdefault(section, {})[name] = value
    return load_recipe(raw)


@pytest.fixture(scope="module")
def setup(tiny_bundle, tmp_path_factory):  # noqa: F811
    return make_extended(tmp_path_factory.getbasetemp(), tiny_bundle)


def test_packed_rows_match_each_sequence_alone(setup):
    """Packing with restarting position ids keeps sequences apart: logits equal those of each sequence alone."""
    from mmtok.lm.llm import load_extended
    from mmtok.lm.sequences import TEXT, Sequences, pack

    ext, _ = setup
    model, tok, layout = load_extended(ext)
    m = layout.modality("image")
    seqs = Sequences(tok)
    span = torch.tensor(m.span(list(range(16)))).numpy()
    a = seqs.caption_to_image(tok("a red cat", add_special_tokens=False)["input_ids"], span, m)
    b = seqs.image_to_caption(span, tok("a blue dog", add_special_tokens=False)["input_ids"])
    row = pack([a, b], 80, tok.pad_token_id)
    n, k = len(a.ids), len(b.ids)
    assert row["kinds"].tolist()[n:n + k] == b.kinds and TEXT in b.kinds and (row["blocks"] == -1).all()
    assert row["targets"].tolist()[n:n + k - 1] == [i if c else -100 for i, c in zip(b.ids[1:], b.kinds)]
    with torch.no_grad():
        packed = model(input_ids=row["input_ids"][None], position_ids=row["position_ids"][None], use_cache=False).logits[0]
        alone = model(input_ids=torch.tensor([b.ids])).logits[0]
    torch.testing.assert_close(packed[n:n + k], alone, rtol=1e-4, atol=1e-5)


def test_training_lowers_held_out_losses_and_writes_a_model(setup, tmp_path):
    ext, tokens = setup
    summary = train(_recipe(ext, tokens, trainer__val_every=20), tmp_path / "run")  # a validation during fit too
    before, after = summary["before"], summary["final"]
    assert summary["status"] == "finished" and summary["step"] == 40
    assert after["val/image_loss"] < before["val/image_loss"] - 0.5
    assert after["val/caption_loss"] < before["val/caption_loss"] - 0.5
    assert summary["train_pairs"] + summary["val_pairs"] == 24 and summary["val_pairs"] >= 1
    import csv

    with open(tmp_path / "run" / "logs" / "version_0" / "metrics.csv") as f:
        val_steps = [int(row["step"]) for row in csv.DictReader(f) if row["val/image_loss"]]
    assert val_steps[:3] == [0, 19, 39]  # before training, during fit (val_every 20), after
    from mmtok.lm.llm import load_extended

    model, _, layout = load_extended(summary["model"])
    assert layout.modality("image").bundle_checksum == json.loads((ext / "mmtok_layout.json").read_text())[
        "modalities"][0]["bundle_checksum"]


@pytest.mark.parametrize("lora", [False, True])
def test_resume_is_exact(setup, tmp_path, lora):
    ext, tokens = setup
    over = {"trainer__max_steps": 6, "trainer__ckpt_every": 3}
    if lora:
        over["lora__r"] = 4
    straight = train(_recipe(ext, tokens, **over), tmp_path / "a", save_model=False)
    halted = _recipe(ext, tokens, **{**over, "trainer__max_steps": 3})
    train(halted, tmp_path / "b", save_model=False)
    resumed = train(_recipe(ext, tokens, **over), tmp_path / "b", resume=True, save_model=False)
    assert straight["step"] == resumed["step"] == 6
    a = torch.load(tmp_path / "a" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and len(a) > 0
    if lora:  # only adapters, the new embedding rows and the untied head are trained and saved
        assert any("lora_" in k for k in a) and any("trainable_tokens" in k for k in a)
        assert not any(k.endswith("q_proj.base_layer.weight") for k in a)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
    assert straight["final"] == resumed["final"]


def test_bad_inputs_are_one_line_before_any_work(setup, tmp_path):
    ext, tokens = setup
    from mmtok.cli.main import app
    from mmtok.lm.tokens import tokenize
    from test_lm_layout import make_pairs_folder

    other = tmp_path / "other-tokens"
    tokenize(make_bundle(tmp_path, seed=1), str(make_pairs_folder(tmp_path, n=3)), other, progress=False)
    with pytest.raises(DataError, match="made with bundle"):
        train(_recipe(ext, other), tmp_path / "r1")
    with pytest.raises(RecipeError, match="block_size"):
        train(_recipe(ext, tokens, data__block_size=20), tmp_path / "r2")
    no_tok = tmp_path / "no-tok"
    shutil.copytree(ext, no_tok)
    (no_tok / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match="has no tokenizer"):
        train(_recipe(no_tok, tokens), tmp_path / "r3")
    recipe = tmp_path / "r.yaml"
    import yaml

    recipe.write_text(yaml.safe_dump(_recipe(ext, other).model_dump(mode="json")))
    result = CliRunner().invoke(app, ["lm", "train", str(recipe), "--out", str(tmp_path / "r4")])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and "made with bundle" in result.stderr
    assert not (tmp_path / "r4").exists()


def test_cli_trains_prints_held_out_losses_and_resumes(setup, tmp_path):
    import yaml

    from mmtok.cli.main import app

    ext, tokens = setup
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump(_recipe(ext, tokens, trainer__max_steps=2).model_dump(mode="json")))
    runner = CliRunner()
    result = runner.invoke(app, ["lm", "train", str(recipe), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "held-out image loss" in result.stdout and "(before training" in result.stdout
    result = runner.invoke(app, ["lm", "train", "--resume", "--out", str(tmp_path / "run"), "--max-steps", "3"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["step"] == 3
    result = runner.invoke(app, ["lm", "train", str(recipe), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2 and "already holds a run" in result.stderr
