"""The motion_vq family end to end: statistics inside the model, terms, train -> mmtok eval -> export -> mmtok.load
round trip with the normalisation applied and inverted exactly, export graphs, the residual variant, bad input.
Clips are DeepMimic-format files made in tmp_path (tests/test_motion_data.py makes them)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import mmtok
from mmtok import config, families
from mmtok.errors import DataError, MmtokError

from test_motion_data import deepmimic_frames, spec, write_deepmimic

FAST = {"data": {"batch_size": 4, "num_workers": 0, "val_samples": 8},
        "trainer": {"max_steps": 4, "val_every": 2, "ckpt_every": 2, "log_every": 1}}


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """(folder of 5 DeepMimic clips, packed folder with features train/val + Mean/Std)."""
    from mmtok.modalities.motion.pack import pack_motion

    root = tmp_path_factory.mktemp("motion")
    src = root / "clips"
    src.mkdir()
    for i in range(5):
        write_deepmimic(src / f"clip{i}.txt", deepmimic_frames(45, seed=i, walk=0.4 + 0.2 * i))
    pack_motion(str(src), str(root / "packed"), spec("deepmimic"), holdout=0.3)
    return src, root / "packed"


def _recipe(packed, **model):
    return config.load({"model": {"preset": "test_motion", "stats": str(packed), **model}, **FAST})


def test_the_model_carries_its_statistics_and_normalises_inside(clips):
    src, packed = clips
    recipe = _recipe(packed)
    model = families.build_model(recipe.model, ["features", "joint_positions", "velocity", "commitment"]).eval()
    mean, std = np.load(packed / "Mean.npy"), np.load(packed / "Std.npy")
    assert torch.equal(model.mean, torch.from_numpy(mean)) and torch.equal(model.std, torch.from_numpy(std))
    x = torch.from_numpy(np.load(next((packed / "train").glob("*.npy")))[:16]).unsqueeze(0)
    out = model(x)
    torch.testing.assert_close(out.x_norm, (x - model.mean) / model.std)
    torch.testing.assert_close(model.denormalise(model.normalise(x)), x, rtol=0, atol=1e-5)
    torch.testing.assert_close(out.recon, model.denormalise(out.recon_norm))
    objective = families.get("motion_vq").build_objective(config.load(
        {"model": {"preset": "test_motion", "stats": str(packed)}, "loss": {"weights": {"velocity": 0.1}}}))
    terms = objective.terms(x, out)
    assert set(terms) == {"features", "joint_positions", "velocity"} and all(torch.isfinite(v) for v in terms.values())
    a, b = model.layout.slices["positions"]
    torch.testing.assert_close(terms["joint_positions"],
                               torch.nn.functional.smooth_l1_loss(out.recon_norm[..., a:b], out.x_norm[..., a:b]))
    assert model.meta["mean"] == pytest.approx(mean.tolist()) and model.meta["slices"]["positions"] == [4, 55]
    # loading builds the model without the statistics file: they come with the weights
    bare = families.build_model(recipe.model, pretrained=False)
    assert float(bare.std.min()) == 1.0 and float(bare.mean.abs().max()) == 0.0


def test_missing_or_bad_statistics_are_one_line_errors(clips, tmp_path):
    src, packed = clips
    with pytest.raises(DataError, match="model.stats is not set: a motion tokenizer needs the Mean/Std"):
        families.build_model(config.load({"model": {"preset": "test_motion", "stats": None}}).model)
    (tmp_path / "nostd").mkdir()
    np.save(tmp_path / "nostd" / "Mean.npy", np.zeros(215, np.float32))
    with pytest.raises(DataError, match=r"missing Mean/Std: .*nostd has no Std.npy"):
        families.build_model(_recipe(tmp_path / "nostd").model)
    np.save(tmp_path / "nostd" / "Std.npy", np.full(263, 1.0, np.float32))
    with pytest.raises(DataError, match=r"Std from .* has shape \[263\]; the deepmimic layout has 215"):
        families.build_model(_recipe(tmp_path / "nostd").model)
    std = np.ones(215, np.float32)
    std[3] = np.nan
    np.save(tmp_path / "nostd" / "Std.npy", std)
    with pytest.raises(DataError, match="NaN or infinite"):
        families.build_model(_recipe(tmp_path / "nostd").model)


def test_train_eval_export_load_round_trip(clips, tmp_path):
    from mmtok.evaluation import evaluate
    from mmtok.export.bundle import export_bundle
    from mmtok.train.run import train

    src, packed = clips
    recipe = config.load({"model": {"preset": "test_motion", "stats": str(packed)},
                          "data": {**FAST["data"], "train": str(packed / "train"), "val": str(packed / "val")},
                          "trainer": FAST["trainer"]})
    summary = train(recipe, tmp_path / "run")
    assert summary["status"] == "finished" and {"val/mpjpe", "val/pa_mpjpe", "val/usage"} <= set(summary["final"])
    assert (tmp_path / "run" / "samples" / "step_000004.png").is_file()

    result = evaluate(tmp_path / "run", str(src), num_samples=8, batch_size=4, num_workers=0, progress=False)
    m = result["metrics"]
    assert m["mpjpe_mm"] > 0 and m["pa_mpjpe_mm"] <= m["mpjpe_mm"] + 1e-3 and 0 < m["codebook_usage_pct"] <= 100
    assert result["protocol"]["window"] == 16 and set(result["per_clip"]) <= {f"clip{i}.txt" for i in range(5)}
    out = tmp_path / "run" / "eval" / "001"
    for name in ("metrics.json", "report.md", "strips.png", "animation.gif", "codebook_usage.png"):
        assert (out / name).is_file(), name
    with pytest.raises(MmtokError, match="--resolution: not an option for motion tokenizers"):
        evaluate(tmp_path / "run", str(src), resolution=64)

    export_bundle(tmp_path / "run", tmp_path / "bundle")
    meta = json.loads((tmp_path / "bundle" / "tokenizer.json").read_text())
    assert meta["modality"] == "motion" and meta["input"]["shape"] == ["B", "T", 215] and meta["vocab_size"] == 16
    assert meta["std"] == pytest.approx(np.load(packed / "Std.npy").tolist())
    assert "MPJPE" in (tmp_path / "bundle" / "README.md").read_text()
    tok = mmtok.load(tmp_path / "bundle")
    x = torch.from_numpy(np.stack([np.load(f)[:28] for f in sorted((packed / "train").glob("*.npy"))[:2]]))
    # normalisation applied and inverted exactly, with the bundle's own statistics
    torch.testing.assert_close(tok.normalise(x), (x - torch.tensor(meta["mean"])) / torch.tensor(meta["std"]))
    torch.testing.assert_close(tok.denormalise(tok.normalise(x)), x, rtol=0, atol=1e-5)
    ids = tok.encode(x)
    assert ids.shape == (2, 7) and ids.dtype == torch.long  # T = 28 frames: any multiple of 4
    model = tok.model
    assert torch.equal(ids, model.encode(x))
    recon = tok.decode(ids)
    torch.testing.assert_close(recon, model.denormalise(model._decode(model.quantizer.lookup(ids))))
    assert tok.joints(recon).shape == (2, 28, 18, 3)
    assert torch.equal(tok.encode(x[0].numpy()), ids[:1])  # one clip [T, D] as an array
    torch.testing.assert_close(tok.decode(ids[0]), recon[:1])


def test_export_graphs_match_eager_with_real_statistics(clips, tmp_path):
    src, packed = clips
    model = families.build_model(_recipe(packed).model).eval()
    encode, decode = model.graph_modules()
    x = torch.from_numpy(np.load(next((packed / "train").glob("*.npy")))[:16]).unsqueeze(0).repeat(3, 1, 1)
    batch = torch.export.Dim("batch", min=1, max=64)
    enc = torch.export.export(encode, (x,), dynamic_shapes=({0: batch},)).module()
    ids = model.encode(x)
    dec = torch.export.export(decode, (ids,), dynamic_shapes=({0: batch},)).module()
    assert torch.equal(enc(x), ids)
    torch.testing.assert_close(dec(ids), model.decode(ids), rtol=0, atol=1e-5)


def test_residual_variant_on_the_positions_layout():
    recipe = config.load({"model": {"preset": "test_motion_rvq"}})
    model = families.build_model(recipe.model, ["features", "commitment"])
    x = torch.randn(3, 8, 24)
    out = model.train()(x)
    assert out.ids.shape == (3, 4, 3) and out.recon.shape == x.shape
    model.eval()
    ids = model.encode(x)
    assert ids.shape == (3, 4, 3) and model.decode(ids[..., :1]).shape == x.shape  # coarse: first level only
    assert model.meta["layout"] == "residual" and model.meta["input_size"] == [8, 24]


def test_tokenizer_input_checks_are_one_line(clips, tmp_path):
    from mmtok.modalities.motion.tokenizer import MotionTokenizer, motion_bundle_meta

    src, packed = clips
    model = families.build_model(_recipe(packed).model).eval()
    meta = {**model.meta, **motion_bundle_meta(model.meta)}
    tok = MotionTokenizer(model, meta, {})
    with pytest.raises(MmtokError, match="got features with 263 values per frame; this tokenizer's deepmimic layout "
                                         "has 215"):
        tok.encode(torch.zeros(1, 16, 263))
    bad = torch.zeros(1, 16, 215)
    bad[0, 3, 7] = float("nan")
    with pytest.raises(MmtokError, match="NaN or infinite"):
        tok.encode(bad)
    with pytest.raises(MmtokError, match="encode got 18 frames; this tokenizer needs a multiple of 4"):
        tok.encode(torch.zeros(1, 18, 215))
    with pytest.raises(MmtokError, match=r"ids in \[0, 16\]; this codebook's ids lie in \[0, 16\)"):
        tok.decode(torch.tensor([[0, 16]]))


def test_cli_train_without_statistics_exits_2_with_one_line(clips, tmp_path):
    from typer.testing import CliRunner

    from mmtok.cli.main import app

    src, packed = clips
    result = CliRunner().invoke(app, ["train", "motion_t2m_gpt", "--data", str(packed / "train"), "--out",
                                      str(tmp_path / "run"), "--set", "model.features=deepmimic",
                                      "--set", "model.window=16", "--set", "data.num_workers=0"])
    assert result.exit_code == 2, result.output
    assert "model.stats is not set" in result.output and "Traceback" not in result.output


def test_cli_train_ends_with_held_out_mpjpe(clips, tmp_path):
    import yaml
    from typer.testing import CliRunner

    from mmtok.cli.main import app

    src, packed = clips
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump({"model": {"preset": "test_motion", "stats": str(packed)},
                                      "data": {**FAST["data"], "train": str(packed / "train"),
                                               "val": str(packed / "val")}, "trainer": FAST["trainer"]}))
    result = CliRunner().invoke(app, ["train", str(recipe), "--out", str(tmp_path / "run")], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "held-out MPJPE" in result.output and "PA-MPJPE" in result.output
