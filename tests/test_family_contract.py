"""The family contract: a toy family defined here, in the test file, trains, evaluates, exports and loads through
mmtok's own train / eval / export / load code without any mmtok module naming it; and every `test_*` preset of
every registered family goes through forward, encode / decode, export graphs vs eager, and emits only the
loss terms it declares."""
from __future__ import annotations

import csv
import subprocess
import sys
from typing import ClassVar, Literal, Optional

import pytest
import torch
from pydantic import Field
from torch import nn

import mmtok
from mmtok import config, families
from mmtok.errors import RecipeError
from mmtok.families import Family
from mmtok.contract import TokenSpec, Tokenizer, TokenizerOutput
from mmtok.losses.config import QUANTIZER_DEFAULTS, QUANTIZER_TERMS, ImageLossConfig
from mmtok.quantize.config import AnyQuantizerConfig, QuantizerConfig
from mmtok.schema import Strict

# ----------------------------------------------------------------------------------------------- the toy family


class ToyConfig(Strict):
    family: Literal["toy"] = "toy"
    preset: Optional[str] = None
    resolution: int = Field(16, ge=4)
    in_channels: int = 3
    patch: int = Field(4, ge=1)
    width: int = Field(8, ge=1)
    quantizer: AnyQuantizerConfig = Field(default_factory=lambda: QuantizerConfig(codebook_size=16, dim=4))


class ToyLoss(ImageLossConfig):
    TERMS: ClassVar[tuple[str, ...]] = ImageLossConfig.IMAGE_TERMS + QUANTIZER_TERMS + ("smooth",)
    DEFAULTS: ClassVar[dict[str, float]] = {"l2": 1.0, "smooth": 0.1, **QUANTIZER_DEFAULTS}


class Toy(Tokenizer):
    """Patchify conv -> quantizer -> transposed conv; emits its own term, "smooth" (total variation)."""

    def __init__(self, cfg: ToyConfig, active_terms=(), pretrained=True):
        super().__init__()
        from mmtok.quantize import build_quantizer

        self.cfg, self.active_terms = cfg, tuple(active_terms)
        self.enc = nn.Conv2d(cfg.in_channels, cfg.width, cfg.patch, cfg.patch)
        self.quantizer = build_quantizer(cfg.width, cfg.quantizer)
        self.dec = nn.ConvTranspose2d(cfg.width, cfg.in_channels, cfg.patch, cfg.patch)

    @property
    def spec(self) -> TokenSpec:
        g, q = self.cfg.resolution // self.cfg.patch, self.cfg.quantizer
        return TokenSpec.from_meta({"modality": "image", "family": "toy", "input_size": [self.cfg.in_channels, self.cfg.resolution,
                self.cfg.resolution], "value_range": [-1.0, 1.0], "token_grid": [g, g], "tokens_per_sample": g * g,
                "downsample": self.cfg.patch, "num_codebooks": 1, "codebook_size": q.codebook_size,
                "codebook_dim": q.dim, "quantizer": q.kind, "layout": "single", "l2_norm": q.l2_norm,
                "flattening": "row-major"})

    def forward(self, x):
        q = self.quantizer(self.enc(x).permute(0, 2, 3, 1))
        recon = self.dec(q.z_q.permute(0, 3, 1, 2))
        losses = dict(q.losses)
        if "smooth" in self.active_terms:
            losses["smooth"] = (recon[..., 1:] - recon[..., :-1]).abs().mean()
        return TokenizerOutput(recon=recon, ids=q.ids, losses=losses, stats=q.stats)

    @torch.no_grad()
    def encode(self, x):
        return self.quantizer(self.enc(x).permute(0, 2, 3, 1)).ids

    @torch.no_grad()
    def decode(self, ids):
        return self.dec(self.quantizer.lookup(ids).permute(0, 3, 1, 2))

    def graph_modules(self):
        return ToyEncode(self), ToyDecode(self)


class ToyEncode(nn.Module):
    def __init__(self, toy):
        super().__init__()
        self.enc, self.quantizer, self.width = toy.enc, toy.quantizer, toy.cfg.width

    def forward(self, images):
        z = self.enc(images)
        b, _, h, w = z.shape
        return self.quantizer.export_ids(z.permute(0, 2, 3, 1).reshape(-1, self.width).float()).reshape(b, h, w)


class ToyDecode(nn.Module):
    def __init__(self, toy):
        super().__init__()
        self.dec, self.quantizer, self.width = toy.dec, toy.quantizer, toy.cfg.width

    def forward(self, ids):
        b, h, w = ids.shape
        z = self.quantizer.export_vectors(ids.reshape(-1)).reshape(b, h, w, self.width).permute(0, 3, 1, 2)
        return self.dec(z).clamp(-1.0, 1.0)


TOY = families.register(Family(name="toy", modality="image", model_config=ToyConfig, loss_config=ToyLoss,
                               model=Toy, objective="mmtok.modalities.image.objective:ImageObjective",
                               presets={"test_toy": {"resolution": 16, "patch": 4}}))

FAST = {"data": {"batch_size": 4, "num_workers": 0, "val_samples": 8},
        "trainer": {"max_steps": 4, "val_every": 2, "ckpt_every": 2, "log_every": 1}}


def test_a_family_defined_outside_mmtok_trains_evaluates_exports_and_loads(tmp_path):
    from mmtok.evaluation import evaluate
    from mmtok.export.bundle import export_bundle
    from mmtok.train.run import train

    recipe = config.load({"model": {"preset": "test_toy"}, **FAST})
    assert recipe.model.family == "toy" and recipe.loss.weights["smooth"] == 0.1
    summary = train(recipe, tmp_path / "run")
    assert summary["status"] == "finished" and summary["step"] == 4 and "val/psnr" in summary["final"]
    with open(next((tmp_path / "run" / "logs").glob("version_*/metrics.csv"))) as f:
        assert "train/smooth" in next(csv.reader(f))  # the family's own term, weighted by the recipe

    result = evaluate(tmp_path / "run", "demo", num_samples=8, batch_size=4, num_workers=0, rfid=False,
                      progress=False)
    assert 0 < result["metrics"]["psnr"] < 100 and 0 < result["metrics"]["codebook_usage_pct"] <= 100

    bundle = export_bundle(tmp_path / "run", tmp_path / "bundle", graphs=True)
    assert "encoder.pt2" in bundle["files"] and "decoder.pt2" in bundle["files"]
    tok = mmtok.load(tmp_path / "bundle")
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    ids = tok.encode(x)
    assert ids.shape == (2, 4, 4) and tok.decode(ids).shape == (2, 3, 16, 16)
    enc = torch.export.load(str(tmp_path / "bundle" / "encoder.pt2")).module()
    assert torch.equal(enc(x), ids)


def test_loss_weights_are_one_map_checked_against_the_familys_terms():
    with pytest.raises(RecipeError, match=r"loss.weights.smoth: unknown loss term 'smoth' \(did you mean 'smooth'\?\)"):
        config.load({"model": {"preset": "test_toy"}, "loss": {"weights": {"smoth": 1.0}}})
    with pytest.raises(RecipeError, match=r"loss.weights.l1: a loss weight must be >= 0"):
        config.load({"model": {"preset": "test_toy"}, "loss": {"weights": {"l1": -1}}})
    recipe = config.load({"model": {"preset": "test_toy"}}, ["loss.weights.l1=0.5"])
    assert recipe.loss.weights == {"l2": 1.0, "smooth": 0.1, "codebook": 1.0, "commitment": 0.25, "l1": 0.5}
    with pytest.raises(RecipeError, match="belongs to family 'toy', not 'vqgan'"):
        config.load({"model": {"family": "vqgan", "preset": "test_toy"}})
    with pytest.raises(RecipeError, match="(?s)model.family: unknown tokenizer family 'vqgna'.*did you mean 'vqgan'"):
        config.load({"model": {"family": "vqgna"}})


# ----------------------------------------------------------------------------------------------- every test_ preset


def _test_presets():
    return [(f, p) for f in families.names() for p in families.get(f).presets if p.startswith("test_")]


@pytest.mark.parametrize("family,preset", _test_presets())
def test_every_test_preset_runs_the_contract(family, preset, tmp_path):
    from mmtok.export.graphs import check_graphs, export_graphs
    from mmtok.contract import Objective

    recipe = config.load({"model": {"preset": preset}})
    fam = families.get(family)
    torch.manual_seed(0)
    model = fam.build_model(recipe.model, fam.loss_terms)  # every term on
    lo, hi = model.meta["value_range"]  # inputs of any modality, from the token spec (None: unbounded)
    x = torch.randn(2, *model.meta["input_size"]) if lo is None or hi is None else \
        lo + (hi - lo) * torch.rand(2, *model.meta["input_size"])
    out = model(x)
    assert out.recon.shape == x.shape and out.ids.dtype == torch.long
    loss = {"weights": {t: 0.0 for t in ("perceptual", "gan", "lecam") if t in fam.loss_terms}}
    if "perceptual" in fam.loss_config.model_fields:
        loss["perceptual"] = {"allow_untrained": True}
    objective = fam.build_objective(config.load({"model": {"preset": preset}, "loss": loss}))
    assert isinstance(objective, Objective)
    emitted = set(out.losses) | set(objective.terms(x, out))
    assert emitted <= set(fam.loss_terms), emitted - set(fam.loss_terms)
    model.eval()
    ids = model.encode(x)
    assert torch.equal(ids, model(x).ids)
    assert torch.allclose(model.decode(ids), model(x).recon, atol=1e-5)
    assert list(ids.shape[1:len(model.meta["token_grid"]) + 1]) == model.meta["token_grid"]
    spec = TokenSpec.from_meta(model.meta)  # every field of the token spec, well formed
    assert spec.to_meta() == model.meta and spec.family == family
    export_graphs(model, tmp_path)
    check_graphs(model, tmp_path, x)  # graphs give the eager ids exactly and outputs to 1e-5


def test_reading_recipes_and_help_import_no_torch():
    code = ("import sys; from mmtok import config, families\n"
            "[config.load(n) for n in config.shipped_recipes()]\n"
            "[config.load({'model': {'preset': p}}) for f in families.names() for p in families.get(f).presets]\n"
            "from mmtok.cli.main import app\n"
            "heavy = [m for m in ('torch', 'lightning') if m in sys.modules]\n"
            "print('HEAVY' if heavy else 'TORCH-FREE', heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "TORCH-FREE" in out.stdout, out.stdout + out.stderr


def test_validation_and_eval_share_one_psnr_protocol(tmp_path):
    """The final validation of a run and `mmtok eval` on the same images give the same PSNR and usage."""
    import json

    from mmtok.evaluation import evaluate
    from mmtok.train.run import train

    recipe = config.load("test_tiny", ["data.val_samples=8", "data.batch_size=4", "data.num_workers=0",
                                       "trainer.max_steps=2", "loss.weights.gan=0", "loss.weights.perceptual=0",
                                       "loss.weights.lecam=0"])
    final = train(recipe, tmp_path / "run")["final"]
    result = evaluate(tmp_path / "run", "demo", num_samples=8, batch_size=4, num_workers=0, rfid=False,
                      classifier=None, progress=False)
    assert result["metrics"]["psnr"] == pytest.approx(final["val/psnr"], abs=1e-4)
    assert result["metrics"]["codebook_usage_pct"] / 100 == pytest.approx(final["val/usage"], abs=1e-4)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["final"] == final


def test_a_malformed_token_spec_names_every_problem():
    meta = Toy(ToyConfig()).meta
    assert TokenSpec.from_meta(meta).token_grid == (4, 4)
    bad = {**meta, "tokens_per_sample": 15, "layout": "spiral"}
    del bad["codebook_dim"]
    with pytest.raises(ValueError, match="missing 'codebook_dim'"):
        TokenSpec.from_meta(bad)
    bad["codebook_dim"] = 4
    with pytest.raises(ValueError, match=r"(?s)layout.*spiral.*tokens_per_sample' 15 != product"):
        TokenSpec.from_meta(bad)
