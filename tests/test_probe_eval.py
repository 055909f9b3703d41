"""`mmtok eval --probe`: features from the tokens of any image family, a planted class found and shuffled labels or
noise features at chance, shards with a class, bad labelled sets named or refused in one line, and the probe in
metrics.json, report.md and the model card."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from _data_helpers import write_tar
from _fixtures import tiny_run  # noqa: F401  (fixture)
from mmtok import config, families
from mmtok.cli.main import app
from mmtok.contract import Tokenizer, TokenizerOutput, TokenSpec
from mmtok.evaluation.probe import hash_fold
from mmtok.modalities.image import probe as image_probe

runner = CliRunner()
COLOURS = {"red": (200, 40, 40), "green": (40, 190, 60), "blue": (40, 60, 200)}


def _png(colour, seed: int) -> bytes:
    """A 24 x 20 picture of one colour with a random brightness and noise: its class is its hue."""
    rng = np.random.default_rng(seed)
    base = np.array(colour, dtype=np.float64) * rng.uniform(0.6, 1.2)
    img = np.clip(base + rng.normal(0, 30, (20, 24, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def _labelled(root, per_class: int = 30, classes=COLOURS):
    for c, (name, colour) in enumerate(classes.items()):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            (root / name / f"{name}_{i:03d}.png").write_bytes(_png(colour, 1000 * c + i))
    return root


def _eval(run, labelled, out, *extra):
    result = runner.invoke(app, ["eval", str(run), "--probe", str(labelled), "--out", str(out), "--no-rfid",
                                 "--classifier", "none", "--num-workers", "0", *extra])
    assert result.exit_code == 0, result.stdout + result.stderr
    return json.loads((out / "metrics.json").read_text()), result


class PaletteTokenizer(Tokenizer):
    """A tokenizer whose tokens carry hue by construction: each 4 x 4 patch's mean colour -> the nearest of 64 fixed
    palette colours (its `quantizer.lookup` is the palette), so a class planted in the hue is in the ids."""

    def __init__(self):
        super().__init__()
        self.quantizer = torch.nn.Embedding(64, 3)
        self.quantizer.weight.data = torch.rand(64, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
        self.quantizer.lookup = self.quantizer.forward

    @property
    def spec(self):
        return TokenSpec(family="palette", modality="image", input_size=(3, 16, 16), value_range=(-1.0, 1.0),
                         token_grid=(4, 4), tokens_per_sample=16, downsample=4, num_codebooks=1, codebook_size=64,
                         codebook_dim=3, quantizer="palette", layout="single", l2_norm=False, flattening="row-major")

    def encode(self, x):
        means = torch.nn.functional.avg_pool2d(x, 4).permute(0, 2, 3, 1)  # [B, 4, 4, 3]
        return torch.cdist(means.reshape(-1, 3), self.quantizer.weight).argmin(1).reshape(means.shape[:3])

    def decode(self, ids):
        return self.quantizer(ids).permute(0, 3, 1, 2).repeat_interleave(4, 2).repeat_interleave(4, 3)

    def forward(self, x):
        ids = self.encode(x)
        return TokenizerOutput(recon=self.decode(ids), ids=ids)

    def graph_modules(self):
        return self, self


def _probe_palette(labelled):
    return image_probe.run_probe(PaletteTokenizer(), image_probe.open_labelled(str(labelled)), resolution=16,
                                 device=torch.device("cpu"), num_workers=0)


def test_a_class_the_tokens_carry_is_found_well_above_chance(tmp_path):
    block = _probe_palette(_labelled(tmp_path / "colours", per_class=40))
    tokens = block["features"]["tokens"]
    assert block["chance"] < 0.5 and tokens["knn_top1"] > 0.9 and tokens["linear_top1"] > 0.9, block
    assert block["bits_per_image"] == 16 * 6 and tokens["dim"] == 3


@pytest.mark.parametrize("spoil", ["shuffled labels", "noise features"])
def test_without_a_signal_the_tokens_score_chance(tmp_path, monkeypatch, spoil):
    labelled = _labelled(tmp_path / "colours", per_class=40)
    if spoil == "shuffled labels":  # move the files between class folders at random
        files = sorted(labelled.glob("*/*.png"))
        names = [f.parent.name for f in files]
        for f, name in zip(files, np.random.default_rng(0).permutation(names)):
            f.rename(labelled / name / f"x_{f.name}")
    else:
        monkeypatch.setattr(PaletteTokenizer, "code_vectors", lambda self, ids: torch.randn(ids.shape[0], 16, 3))
    block = _probe_palette(labelled)
    for key in ("knn_top1", "linear_top1"):  # 3 balanced classes, 120 images tested once each: chance 1/3, noise ~0.05
        assert block["features"]["tokens"][key] < block["chance"] + 0.15, (key, block)
    if spoil == "noise features":  # the pixels still carry the hue: the floor stays far above chance
        assert block["features"]["pixels"]["knn_top1"] > 0.9


def test_eval_probe_writes_metrics_report_and_card(tiny_run, tmp_path):  # noqa: F811
    labelled = _labelled(tmp_path / "colours")
    m, result = _eval(tiny_run, labelled, tmp_path / "eval")
    block = m["probe"]
    assert block["images"] == 90 and block["classes"] == {"blue": 30, "green": 30, "red": 30}
    assert block["folds"] == 5 and 0 <= block["features"]["tokens"]["knn_top1"] <= 1
    assert block["features"]["pixels"]["dim"] == 3 * 16 * 16 and block["features"]["pixels"]["knn_top1"] > 0.9
    assert "teacher" in block["unavailable"] and "semantic" in block["unavailable"]
    assert m["metrics"]["probe_knn_top1"] == block["features"]["tokens"]["knn_top1"]
    assert m["protocol"]["num_samples"] == 90  # without --data the reconstruction pass reads the labelled images
    assert "probe" in result.stdout and "floor: pixels 16x16" in result.stdout
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "(probe)" in report and "| the tokens' code vectors |" in report
    from mmtok.export.bundle import export_bundle

    export_bundle(tiny_run, tmp_path / "bundle", eval_path=tmp_path / "eval" / "metrics.json")
    assert "| the tokens' code vectors |" in (tmp_path / "bundle" / "README.md").read_text()


def test_shards_with_a_class_entry_or_json_label(tiny_run, tmp_path):  # noqa: F811
    samples = []
    for c, (name, colour) in enumerate(COLOURS.items()):
        for i in range(12):
            label = {"cls": name.encode()} if i % 2 else {"json": json.dumps({"label": name}).encode()}
            samples.append((f"{name}_{i:03d}", {"png": _png(colour, 100 * c + i), **label}))
    samples.append(("nolabel", {"png": _png((0, 0, 0), 7)}))
    samples.append(("broken", {"png": b"not a png", "cls": b"red"}))
    tar = write_tar(tmp_path / "labelled-000000.tar", samples)
    m, _ = _eval(tiny_run, tar, tmp_path / "eval", "--data", "demo", "--num-samples", "2")
    block = m["probe"]
    assert block["images"] == 36 and sorted(block["classes"]) == ["blue", "green", "red"]
    skipped = " ".join(block["skipped"])
    assert "nolabel in" in skipped and "no class" in skipped and "broken in" in skipped


def test_bad_labelled_sets_are_named_or_refused_in_one_line(tiny_run, tmp_path):  # noqa: F811
    labelled = _labelled(tmp_path / "mixed", per_class=12)
    (labelled / "empty").mkdir()
    (labelled / "tiny").mkdir()
    for i in range(2):
        (labelled / "tiny" / f"t{i}.png").write_bytes(_png((90, 90, 90), i))
    (labelled / "red" / "corrupt.png").write_bytes(b"\x89PNG truncated")
    (labelled / "loose.png").write_bytes(_png((1, 2, 3), 5))
    m, _ = _eval(tiny_run, labelled, tmp_path / "eval", "--data", "demo", "--num-samples", "2")
    skipped = "\n".join(m["probe"]["skipped"])
    for named in ("empty/: no image files", "class tiny: 2 image(s), fewer than the 5 folds", "red/corrupt.png:",
                  "outside any class folder"):
        assert named in skipped, (named, skipped)
    assert sorted(m["probe"]["classes"]) == ["blue", "green", "red"] and m["probe"]["classes"]["red"] == 12

    one = _labelled(tmp_path / "one", per_class=6, classes={"red": COLOURS["red"]})
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "a.png").write_bytes(_png((1, 2, 3), 1))
    cases = [(one, "one class (red)"), (flat, "no class folder with images"), (tmp_path / "nowhere", "no such folder")]
    for source, message in cases:
        result = runner.invoke(app, ["eval", str(tiny_run), "--probe", str(source), "--no-rfid"])
        assert result.exit_code == 2 and result.stderr.startswith("error: ") and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    result = runner.invoke(app, ["eval", str(tiny_run)])
    assert result.exit_code == 2 and "give --data" in result.stderr


def test_the_folds_are_the_same_on_every_machine():
    # sha256 of "mmtok-probe-v1:KEY": a change of salt, rule or fold count changes every report, so it is pinned
    keys = [f"class_{i % 3}/img_{i:03d}.jpg" for i in range(12)]
    assert hash_fold(keys).tolist() == [0, 3, 0, 1, 4, 0, 3, 4, 0, 0, 2, 2]


@pytest.mark.parametrize("preset,semantic,teacher", [
    ("test_f4", False, False), ("test_sde", True, True), ("test_tokenflow_copy", True, True),
    ("test_tokenflow_multiscale", True, True), ("test_seed", True, True), ("test_f2_attn", False, False),
])
def test_features_from_the_ids_of_every_image_family(preset, semantic, teacher):
    recipe = config.load({"model": {"preset": preset}})
    torch.manual_seed(0)
    model = families.build_model(recipe.model, ()).eval()
    r = int(model.spec.input_size[-1])
    x = torch.rand(3, 3, r, r) * 2 - 1
    feats = image_probe.features(model, x)
    expected = {"tokens", "pixels"} | ({"semantic"} if semantic else set()) | ({"teacher"} if teacher else set())
    assert set(feats) == expected
    assert all(v.shape[0] == 3 and v.dim() == 2 and torch.isfinite(v).all() for v in feats.values())
    ids = model.encode(x)
    vectors = model.code_vectors(ids)
    assert vectors.shape[0] == 3 and torch.allclose(feats["tokens"], vectors.mean(1))
