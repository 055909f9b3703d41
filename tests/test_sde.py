"""The semantic discrete encoding family (MUSE-VL SDE): a few training steps through mmtok's own train / export /
load with the tiny `test_sde` preset (EfficientNet-Lite0 teacher at 32 px, offline); the frozen teacher; the
semantic term; a tiny random timm ViT teacher from tmp_path; bad teacher files before any training."""
from __future__ import annotations

import csv
import json
import math

import pytest
import torch

import mmtok
from mmtok import config, families
from mmtok.errors import AssetError

FAST = {"data": {"batch_size": 4, "num_workers": 0, "val_samples": 8},
        "trainer": {"max_steps": 4, "val_every": 2, "ckpt_every": 2, "log_every": 1}}
TIMM_ARCH = "vit_tiny_patch16_224"
TIMM_KW = {"img_size": 32, "patch_size": 8, "depth": 2, "embed_dim": 32, "num_heads": 2}


def images(n: int = 2, size: int = 16, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g) * 2 - 1


def build(preset: str = "test_sde", terms=("semantic",), **model):
    recipe = config.load({"model": {"preset": preset, **model}})
    torch.manual_seed(0)
    return families.build_model(recipe.model, terms)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from mmtok.train.run import train

    run = tmp_path_factory.mktemp("sde") / "run"
    recipe = config.load({"model": {"preset": "test_sde"}, **FAST})
    summary = train(recipe, run)
    return run, summary


def test_trains_with_the_semantic_term_and_saves_the_frozen_teacher(trained):
    run, summary = trained
    assert summary["status"] == "finished" and summary["step"] == 4
    assert 0 < summary["final"]["val/semantic_cosine"] <= 1 and "val/psnr" in summary["final"]
    with open(next((run / "logs").glob("version_*/metrics.csv"))) as f:
        rows = list(csv.DictReader(f))
    semantic = [float(r["train/semantic"]) for r in rows if r.get("train/semantic")]
    assert len(semantic) == 4 and all(math.isfinite(v) and 0 <= v <= 2 for v in semantic)
    # the teacher's weights are in the checkpoint once (under tokenizer.*, not again in the EMA copy), unchanged
    state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    fresh = build().teacher.state_dict()
    saved = {k[len("tokenizer.teacher."):]: v for k, v in state.items() if k.startswith("tokenizer.teacher.")}
    assert saved.keys() == fresh.keys() and all(torch.equal(saved[k], fresh[k]) for k in fresh)
    assert not any(k.startswith("ema.module.teacher.") for k in state)
    assert any(k.startswith("ema.module.encoder.") for k in state)
    from mmtok.model_io import load_model

    ema_model, _, info = load_model(run, ema=True)  # the EMA weights with the teacher restored from tokenizer.*
    assert info["weights"] == "ema"
    assert all(torch.equal(ema_model.teacher.state_dict()[k], fresh[k]) for k in fresh)


def test_export_and_load_give_the_eager_ids_pixels_and_semantic_embedding(trained, tmp_path):
    from mmtok.export.bundle import export_bundle
    from mmtok.model_io import load_model

    run, _ = trained
    bundle = export_bundle(run, tmp_path / "bundle", graphs=True)
    assert {"encoder.pt2", "decoder.pt2"} <= set(bundle["files"])
    eager, _, _ = load_model(run)
    tok = mmtok.load(tmp_path / "bundle")
    x = images(3)
    ids = tok.encode(x)
    assert ids.shape == (3, 4, 4) and torch.equal(ids, eager.encode(x))
    assert torch.allclose(tok.decode(ids), eager.decode(ids).clamp(-1, 1), atol=1e-5)
    enc = torch.export.load(str(tmp_path / "bundle" / "encoder.pt2")).module()
    assert torch.equal(enc(x), ids)  # the encoder graph includes the teacher
    emb = tok.semantic_embedding(ids.flatten(1))  # flat row-major sequences, as an LM holds them
    assert emb.shape == (3, 16, 40) and torch.allclose(emb, eager.semantic_embedding(ids), atol=1e-5)
    from mmtok.errors import MmtokError
    from mmtok.modalities.image.tokenizer import ImageTokenizer

    plain = families.build_model(config.load({"model": {"preset": "test_f4"}}).model)
    with pytest.raises(MmtokError, match="this vqgan tokenizer has no semantic branch"):
        ImageTokenizer(plain, plain.meta, {}).semantic_embedding(ids)
    meta = json.loads((tmp_path / "bundle" / "tokenizer.json").read_text())
    sem = meta["semantic"]
    assert (sem["dim"], sem["grid"], sem["teacher_grid"], sem["layer"]) == (40, [4, 4], [4, 4], -3)
    assert sem["teacher"] == "efficientnet_lite:efficientnet_lite0" and sem["preprocessing"]["resolution"] == 32
    assert sem["preprocessing"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert "semantic_embedding" in sem["output"]


def test_teacher_is_frozen_and_the_rest_learns():
    model = build()
    model.train()
    assert not model.teacher.training and all(not p.requires_grad for p in model.teacher.parameters())
    out = model(images())
    (out.recon.square().mean() + sum(out.losses.values())).backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    for part in (model.projection, model.encoder, model.semantic_decoder, model.decoder):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())


def test_semantic_term_falls_and_is_one_minus_cos_to_the_teacher():
    model = build()
    x = images(4)
    target = model.teacher_features(x)
    assert target.shape == (4, 16, 40)
    out = model(x)
    assert "semantic" in out.losses and set(out.losses) <= set(families.get("sde").loss_terms)
    model.eval()
    pred = model.semantic_embedding(model.encode(x))
    want = 1 - torch.nn.functional.cosine_similarity(pred, target, dim=-1).mean()
    assert torch.allclose(model(x).stats["semantic_cosine"], 1 - want, atol=1e-5)
    model.train()
    params = [p for n, p in model.named_parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-2)
    first = None
    for _ in range(15):
        loss = model(x).losses["semantic"]
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(model(x).losses["semantic"].detach()) < 0.5 * first
    assert "semantic" not in build(terms=()).train()(x).losses  # not computed when not weighted


def test_teacher_grid_is_resized_to_the_token_grid_and_a_vit_teacher_loads_from_a_local_file(tmp_path):
    import timm
    from safetensors.torch import save_file

    model = build("test_sde_resize")
    assert model.teacher.grid == (2, 2) and model.teacher_features(images()).shape == (2, 16, 112)
    torch.manual_seed(0)
    vit = timm.create_model(TIMM_ARCH, pretrained=False, **TIMM_KW)
    save_file(vit.state_dict(), tmp_path / "tiny_vit.safetensors")
    teacher = {"preset": None, "kind": "timm", "arch": TIMM_ARCH, "weights": str(tmp_path / "tiny_vit.safetensors"),
               "kwargs": TIMM_KW, "layer": -1, "resolution": 32}
    model = build(teacher=teacher)
    assert (model.teacher.grid, model.teacher.dim) == ((4, 4), 32)
    model.eval()
    x = images()
    ids = model.encode(x)
    assert ids.shape == (2, 4, 4) and model.semantic_embedding(ids).shape == (2, 16, 32)
    assert model.meta["semantic"]["teacher"] == f"timm:{TIMM_ARCH}"


def test_a_bad_teacher_file_is_one_line_before_training(tmp_path):
    from mmtok.train.run import train

    missing = tmp_path / "nowhere.safetensors"
    recipe = config.load({"model": {"preset": "test_sde", "teacher": {"weights": str(missing)}}, **FAST})
    with pytest.raises(AssetError) as e:
        train(recipe, tmp_path / "run")
    assert "\n" not in str(e.value) and "nowhere.safetensors" in str(e.value)
    assert not (tmp_path / "run" / "checkpoints").exists() or not any((tmp_path / "run" / "checkpoints").iterdir())
    from typer.testing import CliRunner

    from mmtok.cli.main import app

    result = CliRunner().invoke(app, ["train", "sde_quickstart", "--out", str(tmp_path / "cli"), "--set",
                                      f"model.teacher.weights={missing}"])
    assert result.exit_code == 2 and "Traceback" not in result.stderr, (result.stdout, result.stderr)
    assert "nowhere.safetensors" in result.stderr and not (tmp_path / "cli" / "checkpoints").exists()

    import timm
    from safetensors.torch import save_file

    other = timm.create_model(TIMM_ARCH, pretrained=False, **TIMM_KW)  # the wrong architecture
    save_file(other.state_dict(), tmp_path / "vit.safetensors")
    with pytest.raises(AssetError) as e:
        build(teacher={"weights": str(tmp_path / "vit.safetensors")})
    assert "\n" not in str(e.value) and "vit.safetensors" in str(e.value) and "efficientnet" in str(e.value)


def test_a_bundle_is_self_contained_the_teachers_file_is_not_needed_to_load_it(tmp_path):
    """The teacher's weights travel inside the checkpoint and the bundle: loading builds the teacher's
    architecture only, so a model team without the teacher's file gets the same ids."""
    import timm
    from safetensors.torch import save_file

    from mmtok.export.bundle import export_bundle
    from mmtok.train.run import train

    torch.manual_seed(1)
    vit = timm.create_model(TIMM_ARCH, pretrained=False, **TIMM_KW)
    weights = tmp_path / "tiny_vit.safetensors"
    save_file(vit.state_dict(), weights)
    teacher = {"preset": None, "kind": "timm", "arch": TIMM_ARCH, "weights": str(weights), "kwargs": TIMM_KW,
               "layer": -1, "resolution": 32}
    recipe = config.load({"model": {"preset": "test_sde", "teacher": teacher},
                          "data": {"batch_size": 2, "num_workers": 0, "val": None}, "trainer": {"max_steps": 2}})
    train(recipe, tmp_path / "run")
    export_bundle(tmp_path / "run", tmp_path / "bundle")
    x = images()
    want = mmtok.load(tmp_path / "bundle").encode(x)
    weights.unlink()  # the model team has no teacher file
    tok = mmtok.load(tmp_path / "bundle")
    assert torch.equal(tok.encode(x), want)


def test_a_run_with_a_teacher_resumes_with_its_ema_teacher_restored(tmp_path):
    from mmtok.model_io import load_model
    from mmtok.train.run import train

    fast = ["data.val_samples=8", "data.batch_size=4", "data.num_workers=0", "trainer.val_every=2",
            "trainer.ckpt_every=2"]
    train(config.load({"model": {"preset": "test_sde"}}, fast + ["trainer.max_steps=2"]), tmp_path / "run")
    summary = train(config.load({"model": {"preset": "test_sde"}}, fast + ["trainer.max_steps=4"]), tmp_path / "run",
                    resume=True)
    assert summary["status"] == "finished" and summary["step"] == 4
    ema, _, _ = load_model(tmp_path / "run", ema=True)
    raw, _, _ = load_model(tmp_path / "run", ema=False)
    assert all(torch.equal(v, raw.teacher.state_dict()[k]) for k, v in ema.teacher.state_dict().items())
