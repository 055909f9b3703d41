"""Which evaluation a bundle embeds (`mmtok export --eval`, the newest evaluation of these very weights), and
how strictly `mmtok.load` checks a bundle (weights/config/token metadata strictly, documents only warn,
verify=False skips the checksums)."""
import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from _fixtures import copy_run, tiny_images, tiny_run  # noqa: F401  (fixtures)
from mmtok.cli.main import app
from mmtok.errors import CheckpointError

runner = CliRunner()


@pytest.fixture(scope="module")
def evaluated(tiny_run, tiny_images, tmp_path_factory):  # noqa: F811
    """(run copy with two evaluations of its EMA weights in eval/001 and eval/002, a bundle exported from it)."""
    from mmtok.evaluation import evaluate

    root = tmp_path_factory.mktemp("choices")
    run = copy_run(tiny_run, root / "run")
    for n in (6, 4):
        evaluate(run, str(tiny_images), num_samples=n, batch_size=6, num_workers=0, rfid=False, progress=False)
    bundle = root / "bundle"
    result = runner.invoke(app, ["export", str(run), str(bundle)])
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return run, bundle, result.stdout


def _metrics(path: Path) -> dict:
    return json.loads(path.read_text())


def test_export_embeds_the_newest_evaluation_of_these_weights_and_names_it(evaluated, tmp_path):
    run, bundle, stdout = evaluated
    first, second = run / "eval" / "001" / "metrics.json", run / "eval" / "002" / "metrics.json"
    assert " ".join(stdout.split()).count(f"embedded evaluation: {second}") == 1
    assert _metrics(bundle / "eval.json") == _metrics(second)

    run2 = copy_run(run, tmp_path / "run")
    newest = _metrics(run2 / "eval" / "002" / "metrics.json")  # a newer evaluation, but of other weights
    newest.update(created="2999-01-01T00:00:00+00:00", model={**newest["model"], "weights_sha256": "0" * 64})
    (run2 / "eval" / "003").mkdir()
    (run2 / "eval" / "003" / "metrics.json").write_text(json.dumps(newest))
    legacy = {k: v for k, v in newest.items() if k != "created"}  # RUN/eval/metrics.json of an older mmtok
    legacy["model"] = {k: v for k, v in newest["model"].items() if k != "weights_sha256"}
    (run2 / "eval" / "metrics.json").write_text(json.dumps(legacy))

    result = runner.invoke(app, ["export", str(run2), str(tmp_path / "b1")])
    assert result.exit_code == 0, result.stderr
    assert _metrics(tmp_path / "b1" / "eval.json") == _metrics(run2 / "eval" / "002" / "metrics.json")
    result = runner.invoke(app, ["export", str(run2), str(tmp_path / "b2"), "--eval", str(run2 / "eval" / "001")])
    assert result.exit_code == 0, result.stderr
    assert _metrics(tmp_path / "b2" / "eval.json") == _metrics(run2 / "eval" / "001" / "metrics.json")
    assert str(run2 / "eval" / "001" / "metrics.json") in " ".join(result.stdout.split())
    for choice, message in [(run2 / "eval" / "003", "it measured other weights"),
                            (run2 / "eval" / "metrics.json", "does not record which weights"),
                            (run2 / "eval" / "009", "no evaluation there")]:
        result = runner.invoke(app, ["export", str(run2), str(tmp_path / "b3"), "--eval", str(choice)])
        assert result.exit_code == 2 and result.stderr.startswith("error: --eval "), result.stderr
        assert message in result.stderr and not (tmp_path / "b3").exists()
    shutil.rmtree(run2 / "eval" / "001")
    shutil.rmtree(run2 / "eval" / "002")
    result = runner.invoke(app, ["export", str(run2), str(tmp_path / "b4")])  # only evaluations of other weights
    assert result.exit_code == 0 and not (tmp_path / "b4" / "eval.json").exists()
    assert "no evaluation of these weights: 2 left out" in " ".join(result.stdout.split())

    result = runner.invoke(app, ["export", str(bundle), str(tmp_path / "again")])  # a bundle keeps its own
    assert result.exit_code == 0, result.stderr
    assert _metrics(tmp_path / "again" / "eval.json") == _metrics(bundle / "eval.json")


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def test_documents_only_warn_but_weights_config_and_token_metadata_are_strict(evaluated, tmp_path):
    import mmtok
    from mmtok.export.load import BundleModifiedWarning

    _, bundle, _ = evaluated
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    want = mmtok.load(bundle).encode(x)

    b = Path(shutil.copytree(bundle, tmp_path / "docs"))
    _edit(b / "README.md", "# bundle", "# my tokenizer")
    _edit(b / "eval.json", '"split"', '"note": "mine", "split"')
    (b / "recipe.yaml").unlink()
    with pytest.warns(BundleModifiedWarning, match=r"README.md \(edited\), eval.json \(edited\), recipe.yaml "
                                                   r"\(missing\) differ from checksums.json"):
        tok = mmtok.load(b)
    assert torch.equal(tok.encode(x), want)

    for name, old, new in [("config.json", '"seed": 0', '"seed": 1'),
                           ("tokenizer.json", '"offset": 0', '"offset": 5')]:
        b = Path(shutil.copytree(bundle, tmp_path / name))
        _edit(b / name, old, new)
        with pytest.raises(CheckpointError) as e:
            mmtok.load(b)
        assert f"checksum mismatch for {name}" in str(e.value) and "verify=False" in str(e.value)
        assert "\n" not in str(e.value)
        mmtok.load(b, verify=False)  # loads when asked to skip the checksums

    b = Path(shutil.copytree(bundle, tmp_path / "weights"))
    from safetensors.torch import load_file, save_file

    state = load_file(str(b / "model.safetensors"))
    state["decoder.conv_out.bias"] = state["decoder.conv_out.bias"] + 0.5
    save_file(state, str(b / "model.safetensors"))
    with pytest.raises(CheckpointError, match="checksum mismatch for model.safetensors"):
        mmtok.load(b)
    (b / "checksums.json").unlink()
    with pytest.raises(CheckpointError, match="has no checksums.json"):
        mmtok.load(b)
    tok = mmtok.load(b, verify=False)  # the edited weights, as they are
    assert torch.equal(tok.model.state_dict()["decoder.conv_out.bias"], state["decoder.conv_out.bias"])
    assert torch.equal(tok.encode(x), want)  # the encoder is untouched; the decoder is not
    assert not torch.allclose(tok.decode(want), mmtok.load(bundle).decode(want))
