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


# ----------------------------------------------------------------------------------------------- issue 7 item 3


def _problems(source, overrides=()) -> list[str]:
    with pytest.raises(RecipeError) as e:
        config.load(source, list(overrides))
    return e.value.problems


@pytest.mark.parametrize("override, path", [
    ("optim.lr=inf", "optim.lr"), ("optim.lr=.nan", "optim.lr"), ("optim.lr=-.inf", "optim.lr"),
    ("optim.betas=[.inf, 0.9]", "optim.betas.0"), ("optim.grad_clip=.nan", "optim.grad_clip"),
    ("trainer.max_minutes=.inf", "trainer.max_minutes"),
    ("model.quantizer.ema_decay=.nan", "model.quantizer.ema_decay"),
])
def test_every_float_must_be_finite(override, path):
    problems = _problems("quickstart", [override])
    assert len(problems) == 1 and problems[0].startswith(f"{path}: Input should be a finite number"), problems


@pytest.mark.parametrize("value, says", [
    ("0", "0 devices would run nothing"), ("-2", "-2 devices"), ("[]", "empty list"), ("[0, 0]", "must not repeat"),
    ("[-1]", "integers >= 0"), ("x", "'auto', or a list of GPU ids"), ("true", "not a boolean"),
    ("[0.5]", "integers >= 0"),
])
def test_trainer_devices_rejected_at_load_once(value, says):
    problems = _problems("quickstart", [f"trainer.devices={value}"])
    assert len(problems) == 1 and problems[0].startswith("trainer.devices: ") and says in problems[0], problems


@pytest.mark.parametrize("value, want", [("1", 1), ("4", 4), ("auto", "auto"), ("[0, 2]", [0, 2]), ("'1,3'", [1, 3]),
                                         ("[3]", [3])])
def test_trainer_devices_accepts_count_auto_or_gpu_ids(value, want):
    recipe = config.load("quickstart", [f"trainer.devices={value}"])
    assert recipe.trainer.devices == want
    assert config.load(yaml.safe_load(config.dump(recipe))) == recipe


def test_yaml_syntax_error_keeps_line_and_column(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("seed: 1\nmodel:\n  ch_mult: [1, 2\noptim: {lr: 1}\n")
    with pytest.raises(RecipeError) as e:
        config.load(str(path))
    message = e.value.message
    assert "\n" not in message and "is not valid YAML at line 4, column 6" in message, message
    assert "started at line 3, column 12" in message, message
    path.write_text("a: 1\n b: 2\n")
    with pytest.raises(RecipeError, match="at line 2, column 3: mapping values are not allowed here"):
        config.load(str(path))


def test_model_level_error_is_at_the_field_without_dumping_the_section():
    problems = _problems("quickstart", ["model.resolution=60"])
    assert problems == ["model.resolution: image size 60 is not divisible by the downsample factor 8 "
                        "(len(ch_mult) = 4); use a multiple of 8 (got 60)"]
    problems = _problems({"model": {"preset": "test_f4", "quantizer": {"kind": "fsq", "levels": [64] * 5}}})
    assert len(problems) == 1 and problems[0].startswith("model.quantizer.levels: levels [64, 64, 64, 64, 64] make")
    assert "{" not in problems[0]


def test_quantizer_kind_error_is_once_at_kind_without_the_section():
    problems = _problems("quickstart", ["model.quantizer.kind=fqs"])
    assert problems == ["model.quantizer.kind: quantizer kind must be one of 'vq', 'rvq', 'fsq', 'lfq' (got 'fqs')"]


def test_plain_union_error_is_reported_once_at_its_path():
    from typing import Literal, Union

    from pydantic import ValidationError

    class Section(config.Strict):
        size: Union[int, Literal["auto"], list[int]] = 1

    for bad in ("zz", [1, "a"]):
        with pytest.raises(ValidationError) as e:
            Section.model_validate({"size": bad})
        lines = config.describe_errors(e.value, Section)
        assert len(e.value.errors()) >= 2 and len(lines) == 1, lines
        assert lines[0].startswith("size: fits none of its accepted forms: ") and "'auto'" in lines[0], lines
        assert f"(got {bad!r})" in lines[0] and "literal[" not in lines[0], lines


def test_taming_recipe_scales_the_base_lr_as_taming_does():
    recipe = config.load("taming_f16_1024")
    t = recipe.trainer
    gpus = t.devices if isinstance(t.devices, int) else len(t.devices)
    assert t.accelerator == "gpu" and gpus == 8
    assert recipe.optim.lr == pytest.approx(4.5e-6 * recipe.data.batch_size * gpus * t.accumulate_grad_batches)
    assert recipe.optim.min_lr_ratio == 1.0 and recipe.optim.warmup_steps == 0  # taming: constant lr
    text = config.read_recipe_text("taming_f16_1024")[1]
    assert "4.32e-4" in text and "8 GPUs" in text
