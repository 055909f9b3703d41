"""The modality contract: a modality defined here, in the test file (a 1-D sensor signal, e.g. an accelerometer:
float32 [C, T] in [-1, 1]), with a family of its own, trains, evaluates, exports with graphs, loads with
`mmtok.load`, tokenizes with `mmtok tokenize` and extends a language model with `mmtok lm extend`, through mmtok's
own code and without any mmtok module naming it."""
from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import ClassVar, Iterator, Literal, Optional

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

import mmtok
from mmtok import config, families, modalities
from mmtok.contract import MetricSuite, Objective, Tokenizer, TokenizerOutput, TokenSpec
from mmtok.data.stream import Place, SkipCounter, Stream
from mmtok.evaluation.harness import EvalPass, run
from mmtok.export.tokenizer import BaseTokenizer
from mmtok.families import Family
from mmtok.lm.inputs import Input
from mmtok.losses.config import QUANTIZER_DEFAULTS, QUANTIZER_TERMS, LossConfig
from mmtok.modalities import Modality
from mmtok.quantize.config import AnyQuantizerConfig, QuantizerConfig
from mmtok.schema import Strict

pytest.importorskip("transformers")

# ----------------------------------------------------------------------------------------------- data


def signal(seed: int, channels: int, length: int) -> np.ndarray:
    """A smooth random signal, float32 [channels, length] in [-1, 1]: a few sines per channel."""
    rng = np.random.default_rng(seed)
    t = np.arange(length) / length
    waves = [sum(a * np.sin(2 * math.pi * (f * t + p)) for a, f, p in rng.uniform([0, 1, 0], [0.3, 4, 1], (3, 3)))
             for _ in range(channels)]
    return np.clip(np.stack(waves), -1, 1).astype(np.float32)


class SensorStream(Stream):
    """train: endless random signals (seeded per pass, rank and worker); val: signals 0..VAL-1, dealt over workers."""

    VAL = 64

    def __init__(self, split, channels: int, length: int, **kwargs):
        super().__init__(split, **kwargs)
        self.channels, self.length, self.source = channels, length, "sensor demo"

    def _items(self, place: Place, rng: random.Random, skips: SkipCounter) -> Iterator:
        if self.train:
            while True:
                yield signal(rng.randrange(1000, 10**9), self.channels, self.length)
        limit = self.VAL if self.max_samples is None else min(self.VAL, self.max_samples)
        for i in range(place.index, limit, place.total):
            yield signal(i, self.channels, self.length)

    def _to_sample(self, item) -> dict:
        return {"sensor": torch.from_numpy(item)}


def sensor_demo(source, split, spec, *, holdout, **kwargs):
    return SensorStream(split, spec.channels, spec.length, holdout=holdout, **kwargs)


# ----------------------------------------------------------------------------------------------- the family


class SensorConfig(Strict):
    family: Literal["sensor_vq"] = "sensor_vq"
    preset: Optional[str] = None
    channels: int = Field(3, ge=1)
    length: int = Field(32, ge=4)
    stride: int = Field(4, ge=1)
    width: int = Field(8, ge=1)
    quantizer: AnyQuantizerConfig = Field(default_factory=lambda: QuantizerConfig(codebook_size=16, dim=4))


class SensorLoss(LossConfig):
    TERMS: ClassVar[tuple[str, ...]] = ("l2",) + QUANTIZER_TERMS
    DEFAULTS: ClassVar[dict[str, float]] = {"l2": 1.0, **QUANTIZER_DEFAULTS}


class SensorVQ(Tokenizer):
    """Strided conv -> quantizer -> transposed conv: [B, C, T] -> ids [B, T / stride] -> [B, C, T]."""

    def __init__(self, cfg: SensorConfig, active_terms=(), pretrained=True):
        super().__init__()
        from mmtok.quantize import build_quantizer

        self.cfg = cfg
        self.enc = nn.Conv1d(cfg.channels, cfg.width, cfg.stride, cfg.stride)
        self.quantizer = build_quantizer(cfg.width, cfg.quantizer)
        self.dec = nn.ConvTranspose1d(cfg.width, cfg.channels, cfg.stride, cfg.stride)

    @property
    def spec(self) -> TokenSpec:
        c, q = self.cfg, self.cfg.quantizer
        n = c.length // c.stride
        return TokenSpec.from_meta({
            "family": "sensor_vq", "modality": "sensor", "input_size": [c.channels, c.length],
            "value_range": [-1.0, 1.0], "token_grid": [n], "tokens_per_sample": n, "downsample": c.stride,
            "num_codebooks": 1, "codebook_size": q.codebook_size, "codebook_dim": q.dim, "quantizer": q.kind,
            "layout": q.id_layout, "l2_norm": q.l2_norm, "flattening": "time order"})

    def forward(self, x):
        q = self.quantizer(self.enc(x).transpose(1, 2))
        return TokenizerOutput(recon=self.dec(q.z_q.transpose(1, 2)), ids=q.ids, losses=q.losses, stats=q.stats)

    @torch.no_grad()
    def encode(self, x):
        return self.quantizer(self.enc(x).transpose(1, 2)).ids

    @torch.no_grad()
    def decode(self, ids):
        return self.dec(self.quantizer.lookup(ids).transpose(1, 2))

    def graph_modules(self):
        return SensorEncode(self), SensorDecode(self)


class SensorEncode(nn.Module):
    def __init__(self, vq: SensorVQ):
        super().__init__()
        self.enc, self.quantizer, self.width = vq.enc, vq.quantizer, vq.cfg.width

    def forward(self, x):
        z = self.enc(x).transpose(1, 2)
        b, t, _ = z.shape
        return self.quantizer.export_ids(z.reshape(-1, self.width).float()).reshape(b, t)


class SensorDecode(nn.Module):
    def __init__(self, vq: SensorVQ):
        super().__init__()
        self.dec, self.quantizer, self.width = vq.dec, vq.quantizer, vq.cfg.width

    def forward(self, ids):
        b, t = ids.shape
        z = self.quantizer.export_vectors(ids.reshape(-1)).reshape(b, t, self.width)
        return self.dec(z.transpose(1, 2)).clamp(-1.0, 1.0)


class SensorMetrics(MetricSuite):
    names = ("mse", "usage")

    def __init__(self, codebook_size: int):
        super().__init__()
        from torchmetrics import MeanMetric

        from mmtok.metrics import CodebookUsage

        self.mse, self.usage = MeanMetric(), CodebookUsage(codebook_size)

    def update(self, x, out) -> None:
        self.mse.update(((out.recon.float().clamp(-1, 1) - x.float()) ** 2).flatten(1).mean(1))
        self.usage.update(out.ids)

    def compute(self) -> dict:
        return {"mse": self.mse.compute(), "usage": self.usage.compute()["usage_pct"] / 100}


class SensorObjective(Objective):
    def inputs(self, batch: dict):
        return batch["sensor"]

    def terms(self, x, out) -> dict:
        return {"l2": F.mse_loss(out.recon.float(), x.float())} if self.active("l2") else {}

    def metrics(self) -> SensorMetrics:
        return SensorMetrics(self.recipe.model.quantizer.codebook_size)

    def write_samples(self, x, out, path: Path) -> None:
        from PIL import Image

        rows = torch.cat([x[:4], out.recon[:4].float()], 1).clamp(-1, 1).flatten(0, 1)  # [8 * C, T]
        Image.fromarray(((rows + 1) * 127.5).round().byte().numpy()).save(path)


# ----------------------------------------------------------------------------------------------- eval, load, LM


class SensorPass(EvalPass):
    unit = "signals"

    def setup(self, device, *, console, is_main, world) -> None:
        from torchmetrics import MeanMetric

        self.mse = MeanMetric().to(device)

    def decode(self, ids):
        return self.model.decode(ids).float().clamp(-1, 1)

    def update(self, batch, x, ids, recon) -> None:
        self.mse.update(((recon - x) ** 2).flatten(1).mean(1))

    def metrics(self, num_samples: int) -> dict:
        return {"mse": float(self.mse.compute())}

    def protocol(self) -> dict:
        return {"signals": "the sensor demo's validation signals"}

    def write(self, out: Path, result: dict) -> dict:
        return {}

    def report(self, result: dict) -> str:
        from mmtok.evaluation.report import metric_rows

        return "\n".join(["# sensor evaluation", ""] + [f"| {k} | {v} |" for k, v in metric_rows(result["metrics"])])


def sensor_evaluate(model_path, data, **options) -> dict:
    return run(model_path, data, SensorPass, **options)


class SensorTokenizer(BaseTokenizer):
    def preprocess(self, x) -> torch.Tensor:
        """A batch [B, C, T] (tensor or array), or a list of signals [C, T]."""
        if isinstance(x, (list, tuple)):
            x = np.stack([np.asarray(v) for v in x])
        return torch.as_tensor(np.asarray(x), dtype=torch.float32).to(self.device)

    def check_ids(self, ids) -> torch.Tensor:
        return self.check_range(self.as_id_tensor(ids)).reshape(-1, *self.spec.ids_shape)


def sensor_bundle_meta(meta: dict) -> dict:
    k = int(meta["codebook_size"])
    return {"input": {"shape": ["B", *meta["input_size"]], "value_range": [-1.0, 1.0]},
            "ids": {"shape": ["B", *meta["token_grid"]], "range": [0, k]}, "vocab_size": k,
            "special_tokens": {"begin": "<sen>", "end": "</sen>", "code_format": "<sen_{:05d}>"}}


def sensor_card(cfg, meta, evaluation, recipe_yaml, info, *, graphs, name, onnx=False) -> str:
    return f"# {name}\n\nA sensor tokenizer: {meta['tokens_per_sample']} tokens per signal.\n"


def sensor_lm_inputs(tok, source: str, kind: str) -> Iterator[Input]:
    for i, path in enumerate(sorted(Path(source).glob("*.npy"))):
        yield Input(i, path.stem, "", lambda path=path: np.load(path))


SENSOR = modalities.register(Modality(
    name="sensor", sources={"demo": sensor_demo}, evaluate=sensor_evaluate, tokenizer=SensorTokenizer,
    bundle_meta=sensor_bundle_meta, card=sensor_card, lm_prefix="sen", lm_inputs=sensor_lm_inputs))
families.register(Family(name="sensor_vq", modality="sensor", model_config=SensorConfig, loss_config=SensorLoss,
                         model=SensorVQ, objective=SensorObjective, presets={"test_sensor": {}}))


# ----------------------------------------------------------------------------------------------- the test


def test_a_modality_defined_outside_mmtok_trains_evaluates_exports_loads_tokenizes_and_extends_an_lm(tmp_path):
    from test_lm_layout import make_llm
    from typer.testing import CliRunner

    from mmtok.cli.main import app
    from mmtok.evaluation import evaluate
    from mmtok.export.bundle import export_bundle
    from mmtok.lm.extend import extend
    from mmtok.lm.tokens import read_tokens
    from mmtok.train.run import train

    recipe = config.load({"model": {"preset": "test_sensor"},
                          "data": {"batch_size": 4, "num_workers": 0, "val_samples": 8},
                          "trainer": {"max_steps": 6, "val_every": 3, "ckpt_every": 3, "log_every": 1}})
    summary = train(recipe, tmp_path / "run")
    assert summary["status"] == "finished" and summary["step"] == 6
    assert 0 <= summary["final"]["val/mse"] < 1 and 0 < summary["final"]["val/usage"] <= 1
    assert any((tmp_path / "run" / "samples").glob("step_*.png"))

    result = evaluate(tmp_path / "run", "demo", num_samples=8, batch_size=4, num_workers=0, progress=False)
    m = result["metrics"]
    assert m["mse"] == pytest.approx(summary["final"]["val/mse"], abs=1e-5)  # eval and validation agree
    assert m["codebook_usage_pct"] / 100 == pytest.approx(summary["final"]["val/usage"], abs=1e-5)
    assert result["protocol"]["num_samples"] == 8 and (Path(result["out"]) / "report.md").is_file()

    bundle = export_bundle(tmp_path / "run", tmp_path / "bundle", graphs=True)
    assert {"encoder.pt2", "decoder.pt2", "README.md"} <= set(bundle["files"])
    tok = mmtok.load(tmp_path / "bundle")
    assert isinstance(tok, SensorTokenizer) and tok.spec.modality == "sensor"
    x = torch.from_numpy(np.stack([signal(i, 3, 32) for i in range(2)]))
    ids = tok.encode(x)
    assert ids.shape == (2, 8) and tok.decode(ids).shape == (2, 3, 32)
    enc = torch.export.load(str(tmp_path / "bundle" / "encoder.pt2")).module()
    assert torch.equal(enc(x), ids)

    data = tmp_path / "signals"
    data.mkdir()
    for i in range(5):
        np.save(data / f"s{i}.npy", signal(100 + i, 3, 32))
    res = CliRunner().invoke(app, ["tokenize", str(tmp_path / "bundle"), "--data", str(data),
                                   "--out", str(tmp_path / "tokens"), "--shard-size", "2", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    tokens = read_tokens(tmp_path / "tokens")
    assert tokens.ids.shape == (5, 8) and tokens.keys == [f"s{i}" for i in range(5)]
    assert np.array_equal(tokens.ids[0], tok.encode([np.load(data / "s0.npy")])[0].numpy())

    layout = extend(make_llm(tmp_path), [tmp_path / "bundle"], tmp_path / "lm")
    (block,) = layout.modalities
    assert (block.modality, block.prefix, block.codebook_size) == ("sensor", "sen", 16)
    assert json.loads((tmp_path / "lm" / "mmtok_layout.json").read_text())["modalities"][0]["name"] == "sensor"
