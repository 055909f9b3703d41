import pytest
import yaml

from mmtok import config
from mmtok.errors import RecipeError


@pytest.mark.parametrize("name", sorted(config.shipped_recipes()))
def test_every_shipped_recipe_validates_and_starts_with_its_command(name):
    recipe = config.load(name)
    assert recipe.name == name
    text, first = config.read_recipe_text(name)[1], None
    first = text.splitlines()[0]
    assert first.startswith(f"# mmtok train {name}"), first
    # the resolved recipe loads back to the same thing
    assert config.load(yaml.safe_load(config.dump(recipe))) == recipe


def test_unknown_keys_are_all_reported_with_did_you_mean(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  preset: test_f4\n  quantizer:\n    codebok_size: 10\noptim:\n  lrr: 1\n  warmup_steps: -3\n")
    with pytest.raises(RecipeError) as e:
        config.load(str(path))
    text = str(e.value)
    assert "3 problem(s)" in text
    assert "model.quantizer.codebok_size: unknown key (did you mean 'codebook_size'?)" in text
    assert "optim.lrr: unknown key (did you mean 'lr'?)" in text
    assert "optim.warmup_steps" in text


def test_overrides_apply_and_are_validated():
    recipe = config.load("quickstart", ["optim.lr=3e-4", "model.quantizer.codebook_size=512", "data.val=null"])
    assert recipe.optim.lr == 3e-4 and recipe.model.quantizer.codebook_size == 512 and recipe.data.val is None
    with pytest.raises(RecipeError, match="trainer.max_step: unknown key .*did you mean 'max_steps'"):
        config.load("quickstart", ["trainer.max_step=3"])
    with pytest.raises(RecipeError, match="bad override"):
        config.load("quickstart", ["optim.lr"])
    with pytest.raises(RecipeError, match="is a value, not a section"):
        config.load("quickstart", ["optim.lr.x=1"])


def test_preset_expands_and_fields_override_it():
    recipe = config.load({"model": {"preset": "llamagen_vq16", "ch": 64}})
    assert recipe.model.ch == 64 and recipe.model.quantizer.codebook_size == 16384
    assert recipe.model.ch_mult == [1, 1, 2, 2, 4] and recipe.model.downsample == 16


def test_unknown_recipe_and_preset_hint():
    with pytest.raises(RecipeError, match="did you mean 'quickstart'"):
        config.load("quickstrat")
    with pytest.raises(Exception, match="did you mean 'llamagen_vq16'"):
        config.load({"model": {"preset": "llamagen_vq61"}})
