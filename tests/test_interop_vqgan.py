"""`mmtok import` of released VQGANs and `mmtok export --format hf`, checked against independent code.

The reference is transformers' JanusVQVAE (LlamaGen's architecture under taming's names) at a tiny random
configuration. LlamaGen and taming files are synthesised from it with the key names of those releases, renamed
here by rules written from the releases' public code (LlamaGen: tokenizer/tokenizer_image/vq_model.py; taming:
taming/modules/diffusionmodules/model.py, taming/models/vqgan.py), independently of mmtok's own rules; outputs
are compared with what transformers' modules compute.
"""
from __future__ import annotations

import argparse
import re
import shutil

import pytest
import torch
import torch.nn.functional as F
from torch import nn

transformers = pytest.importorskip("transformers")

LEVELS = 2  # channel_multiplier [1, 2]: f2, 16x16 images -> 8x8 ids


def _janus(seed: int = 0, unit_rows: bool = True):
    """A random JanusVQVAE (every tensor random, biases included); `unit_rows`: l2-normalised codebook rows."""
    from transformers import JanusVQVAE, JanusVQVAEConfig

    cfg = JanusVQVAEConfig(embed_dim=8, num_embeddings=64, latent_channels=32, base_channels=32,
                           channel_multiplier=[1, 2], num_res_blocks=1, num_patches=8)
    torch.manual_seed(seed)
    model = JanusVQVAE(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * (0.5 if "norm" in name else 0.15) + (1.0 if "norm" in name and
                                                                                  name.endswith("weight") else 0.0))
        if unit_rows:
            w = model.quantize.embedding.weight
            w.copy_(F.normalize(w, dim=1))
    return model


def _images(n: int = 4, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# LlamaGen's names for JanusVQVAE's modules (both index decoder stages in upsampling order)
LLAMAGEN_NAMES = [(r"^(encoder|decoder)\.(down|up)\.(\d+)\.block\.", r"\1.conv_blocks.\3.res."),
                  (r"^(encoder|decoder)\.(down|up)\.(\d+)\.", r"\1.conv_blocks.\3."),
                  (r"\.mid\.block_1\.", ".mid.0."), (r"\.mid\.attn_1\.", ".mid.1."), (r"\.mid\.block_2\.", ".mid.2.")]


def _taming_name(key: str) -> str:
    """taming indexes decoder stages by level (self.up.insert(0, up)); Janus in upsampling order."""
    m = re.match(r"^decoder\.up\.(\d+)\.(.*)$", key)
    return f"decoder.up.{LEVELS - 1 - int(m.group(1))}.{m.group(2)}" if m else key


def _rename(state: dict, fn) -> dict:
    return {fn(k): v.clone() for k, v in state.items()}


def _llamagen_name(key: str) -> str:
    for pattern, repl in LLAMAGEN_NAMES:
        key = re.sub(pattern, repl, key)
    return key


def _patchgan(ndf: int = 8) -> nn.Module:
    """NLayerDiscriminator(input_nc=3, ndf, n_layers=2) of taming / LlamaGen: its layers in `main`."""
    torch.manual_seed(5)
    d = nn.Module()
    d.main = nn.Sequential(nn.Conv2d(3, ndf, 4, 2, 1), nn.LeakyReLU(0.2, True),
                         nn.Conv2d(ndf, 2 * ndf, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * ndf), nn.LeakyReLU(0.2, True),
                         nn.Conv2d(2 * ndf, 4 * ndf, 4, 1, 1, bias=False), nn.BatchNorm2d(4 * ndf),
                         nn.LeakyReLU(0.2, True), nn.Conv2d(4 * ndf, 1, 4, 1, 1))
    return d


@torch.no_grad()
def _reference(hf, x, *, l2: bool):
    """(ids [B, 8, 8], decoded images) computed with transformers' modules: LlamaGen's l2-normalised nearest code
    (`l2`) or taming's plain nearest code, the codes as each release decodes them."""
    z = hf.quant_conv(hf.encoder(x)).permute(0, 2, 3, 1)
    e = hf.quantize.embedding.weight
    if l2:
        z, e = F.normalize(z, dim=-1), F.normalize(e, dim=-1)
    ids = torch.cdist(z.reshape(-1, z.shape[-1]), e).argmin(1).reshape(z.shape[:3])
    images = hf.decoder(hf.post_quant_conv(e[ids].permute(0, 3, 1, 2)))
    return ids, images


def _llamagen_file(tmp_path, hf, *, ema_shift: float = 0.0, args=True):
    state = _rename(hf.state_dict(), _llamagen_name)
    state["quantize.codebook_used"] = torch.zeros(65536)
    ckpt = {"model": {k: v + ema_shift for k, v in state.items()}, "ema": state, "steps": 1234,
            "discriminator": _patchgan().state_dict(), "optimizer": {"state": {}, "param_groups": []}}
    if args:
        ckpt["args"] = argparse.Namespace(vq_model="VQ-16", image_size=16, codebook_size=64, codebook_embed_dim=8)
    path = tmp_path / "vq_ds2.pt"
    torch.save(ckpt, path)
    return path


def _compare(bundle, ids_ref, images_ref, x):
    import mmtok

    tok = mmtok.load(bundle)
    with torch.no_grad():
        ids = tok.model.encode(x)
        images = tok.model.decode(ids_ref)
        one_by_one = torch.cat([tok.model.encode(x[i:i + 1]) for i in range(len(x))])
    assert torch.equal(ids, ids_ref)
    assert torch.equal(one_by_one, ids)
    assert _close(images, images_ref)


def _close(a, b) -> bool:
    """Within 1e-5 of the outputs' scale (fp32 convolutions and attention summed in another order)."""
    return bool((a - b).abs().max() <= 1e-5 * b.abs().max())


def test_llamagen_import_matches_the_reference_and_keeps_the_discriminator(tmp_path):
    from safetensors.torch import load_file

    from mmtok.export.interop import import_bundle

    hf = _janus(unit_rows=False)  # LlamaGen normalises codes at use: rows of any norm
    path = _llamagen_file(tmp_path, hf, ema_shift=0.01)
    report = import_bundle("llamagen", path, tmp_path / "bundle")
    x = _images()
    _compare(tmp_path / "bundle", *_reference(hf, x, l2=True), x)
    src = report["source"]
    assert src.weights == "ema" and src.step == 1234 and src.model["resolution"] == 16
    assert any("argparse.Namespace" in n for n in src.notes)  # read as an inert record
    disc = load_file(str(tmp_path / "bundle" / "adversary.safetensors"))
    for k, v in _patchgan().main.state_dict().items():
        assert torch.equal(disc[f"discriminator.net.{k}"], v), k
    raw = import_bundle("llamagen", path, tmp_path / "raw", weights="raw")  # the live copy: + 0.01 everywhere
    assert raw["source"].weights == "raw"


def test_taming_import_matches_the_reference(tmp_path):
    from mmtok.export.interop import import_bundle

    hf = _janus(seed=3, unit_rows=False)
    state = _rename(hf.state_dict(), _taming_name)
    state.update({f"loss.discriminator.{k}": v for k, v in _patchgan().state_dict().items()})
    state["loss.perceptual_loss.lin0.model.1.weight"] = torch.randn(1, 64, 1, 1)
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": state, "global_step": 77, "epoch": 1}, path)
    report = import_bundle("taming", path, tmp_path / "bundle")
    x = _images(seed=4)
    _compare(tmp_path / "bundle", *_reference(hf, x, l2=False), x)
    assert report["source"].step == 77 and "inferred from tensor shapes" in report["source"].config_from


def test_taming_reads_its_yaml_config_and_refuses_one_that_does_not_fit(tmp_path):
    from mmtok.errors import CheckpointError
    from mmtok.export.interop import import_bundle

    hf = _janus(seed=3, unit_rows=False)
    (tmp_path / "checkpoints").mkdir()
    path = tmp_path / "checkpoints" / "last.ckpt"
    torch.save({"state_dict": _rename(hf.state_dict(), _taming_name)}, path)
    (tmp_path / "configs").mkdir()
    dd = ("    ddconfig: {double_z: false, z_channels: 32, resolution: 16, in_channels: 3, out_ch: 3, ch: 32, "
          "ch_mult: [1, 2], num_res_blocks: 1, attn_resolutions: [8], dropout: 0.0}\n")
    (tmp_path / "configs" / "model.yaml").write_text(f"model:\n  params:\n    embed_dim: 8\n    n_embed: 64\n{dd}")
    report = import_bundle("taming", path, tmp_path / "bundle")
    assert "model.yaml" in report["source"].config_from
    (tmp_path / "configs" / "model.yaml").write_text(f"model:\n  params:\n    embed_dim: 8\n    n_embed: 128\n{dd}")
    with pytest.raises(CheckpointError, match=r"shape mismatch.*quantize.embedding.weight \(64, 8\)") as e:
        import_bundle("taming", path, tmp_path / "b2")
    assert "config" in e.value.hint and not (tmp_path / "b2").exists()


def test_janus_folder_round_trip_through_mmtok_and_back_to_transformers(tmp_path):
    from transformers import JanusVQVAE

    from mmtok.export.interop import export_hf, import_bundle

    hf = _janus(seed=7)
    hf.save_pretrained(tmp_path / "janus")
    import_bundle("janus", tmp_path / "janus", tmp_path / "bundle")
    x = _images(seed=8)
    with torch.no_grad():  # transformers' own encode / decode are the reference
        ids_ref = hf.encode(x).image_tokens.reshape(4, 8, 8)
        images_ref = hf.decode(ids_ref.reshape(4, -1))
    _compare(tmp_path / "bundle", ids_ref, images_ref, x)

    report = export_hf(tmp_path / "bundle", tmp_path / "hf")
    assert report["class"] == "JanusVQVAE" and report["check"]["ids_equal"] == 1.0
    back = JanusVQVAE.from_pretrained(tmp_path / "hf").eval()
    with torch.no_grad():
        ids = back.encode(x).image_tokens.reshape(4, 8, 8)
        assert torch.equal(ids, ids_ref)
        assert _close(back.decode(ids.reshape(4, -1)), images_ref)


@pytest.mark.parametrize("break_rule", ["qkv order", "decoder stage order"])
def test_a_broken_name_rule_fails_the_parity_check(tmp_path, monkeypatch, break_rule):
    """The parity test above is not vacuous: break one rule and the import errs or the outputs differ."""
    from mmtok.errors import CheckpointError
    from mmtok.export.interop import Rule, import_bundle
    from mmtok.families.vqgan import interop

    rules = interop.rules

    def broken(cfg, layout, export=False):
        out = rules(cfg, layout, export=export)
        if break_rule == "qkv order":
            return [Rule(r.target, (r.sources[1], r.sources[0], r.sources[2]), r.how) if r.how == "cat" else r
                    for r in out]
        return [Rule(r.target, tuple(s.replace("conv_blocks.0.", "conv_blocks.9.").replace("conv_blocks.1.",
                "conv_blocks.0.").replace("conv_blocks.9.", "conv_blocks.1.") if s.startswith("decoder") else s
                for s in r.sources), r.how, r.value) for r in out]

    monkeypatch.setattr(interop, "rules", broken)
    hf = _janus(unit_rows=False)
    path = _llamagen_file(tmp_path, hf)
    try:
        import_bundle("llamagen", path, tmp_path / "bundle")
    except CheckpointError:
        return  # the shapes gave it away
    with pytest.raises(AssertionError):
        x = _images()
        _compare(tmp_path / "bundle", *_reference(hf, x, l2=True), x)


def test_bad_files_are_one_line_errors_and_write_nothing(tmp_path):
    from mmtok.errors import CheckpointError
    from mmtok.export.interop import import_bundle

    hf = _janus(unit_rows=False)
    good = _llamagen_file(tmp_path, hf)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint at all" * 10)
    evil = tmp_path / "evil.pt"
    torch.save({"model": {}, "args": _Evil()}, evil)
    unknown = tmp_path / "unknown.pt"
    state = _rename(hf.state_dict(), _llamagen_name)
    state["encoder.extra_layer.weight"] = torch.zeros(3)
    torch.save({"model": state}, unknown)
    cases = [("llamagen", truncated, "truncated, corrupt"), ("taming", garbage, "not a readable"),
             ("taming", good, "no state_dict: not a taming"), ("llamagen", evil, "not plain data"),
             ("llamagen", unknown, r"unknown key\(s\) \(encoder.extra_layer.weight\)"),
             ("janus", good, "is not a folder"), ("llamagen", tmp_path / "absent.pt", "no LlamaGen")]
    for i, (fmt, path, message) in enumerate(cases):
        out = tmp_path / f"out{i}"
        with pytest.raises(CheckpointError, match=message):
            import_bundle(fmt, path, out)
        assert not out.exists() and not out.with_name(out.name + ".tmp").exists()


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_import_and_export_hf_commands(tmp_path):
    from typer.testing import CliRunner

    from mmtok.cli.main import app

    hf = _janus(unit_rows=False)
    path = _llamagen_file(tmp_path, hf)
    runner = CliRunner()
    r = runner.invoke(app, ["import", "llamagen", str(path), "--out", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    assert "imported llamagen" in r.stdout and "left out quantize.codebook_used" in r.stdout
    r = runner.invoke(app, ["import", "lamagen", str(path), "--out", str(tmp_path / "c")])
    assert r.exit_code == 2 and "unknown import format 'lamagen'" in r.stderr and "llamagen" in r.stderr
    r = runner.invoke(app, ["export", str(tmp_path / "b"), str(tmp_path / "hf"), "--format", "hf"])
    assert r.exit_code == 0, r.output
    assert "JanusVQVAE" in r.stdout and "ids equal 100%" in r.stdout


def test_export_hf_refuses_what_transformers_cannot_express(tiny_run, tmp_path):
    from mmtok.errors import MmtokError
    from mmtok.export.interop import export_hf

    with pytest.raises(MmtokError, match="transformers has no class for this VQGAN") as e:
        export_hf(tiny_run, tmp_path / "hf")
    assert "llamagen" in e.value.hint and not (tmp_path / "hf").exists()


from _fixtures import tiny_images, tiny_run  # noqa: E402,F401 (fixtures)


def test_fine_tuning_an_import_keeps_its_codes_and_discriminator_and_warms_the_discriminator_up(tmp_path):
    """An imported LlamaGen file fine-tuned with the generator's lr at 0: ids and outputs stay exactly the
    source's; the discriminator starts from the release's weights and trains alone for loss.gan.warmup_steps
    steps (no generator GAN term is computed, so none reaches the generator), then the generator sees it."""
    import mmtok
    from mmtok import config
    from mmtok.export.interop import import_bundle
    from mmtok.model_io import load_model
    from mmtok.train.curves import read_metrics
    from mmtok.train.run import train

    hf = _janus(unit_rows=False)
    import_bundle("llamagen", _llamagen_file(tmp_path, hf), tmp_path / "bundle")
    recipe = config.load(str(tmp_path / "bundle" / "recipe.yaml"), [
        f"init.path={tmp_path / 'bundle'}", "data.train=demo", "data.val=null", "data.batch_size=2",
        "data.num_workers=0", "trainer.max_steps=4", "trainer.log_every=1", "trainer.accelerator=cpu",
        "trainer.devices=1", "optim.lr=0", "optim.warmup_steps=0", "loss.weights.perceptual=0",
        "loss.gan.start_step=0", "loss.gan.warmup_steps=2", "loss.gan.lr=0.01"])
    train(recipe, tmp_path / "run")

    source = mmtok.load(tmp_path / "bundle").model
    tuned, _, _ = load_model(tmp_path / "run")
    x = _images()
    with torch.no_grad():
        assert torch.equal(tuned.encode(x), source.encode(x))
        assert torch.equal(tuned(x).recon, source(x).recon)
    series, _ = read_metrics(tmp_path / "run")
    disc_steps = [s for s, _ in series["train/disc"]]
    gan_steps = [s for s, _ in series["train/gan"]]
    assert len(disc_steps) == 4 and len(gan_steps) == 2 and min(gan_steps) > min(disc_steps) + 1
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    start = _patchgan().main.state_dict()
    trained = {k[len("adversary.discriminator.net."):]: v for k, v in ckpt["state_dict"].items()
               if k.startswith("adversary.discriminator.net.")}
    assert set(trained) == set(start)
    assert not torch.equal(trained["0.weight"], start["0.weight"])  # D trained from the release's weights
    assert (trained["0.weight"] - start["0.weight"]).abs().max() < 0.1  # ... not from a fresh init


def test_an_imported_bundle_is_evaluated_tokenizes_and_extends_a_language_model(tmp_path, tmp_path_factory,
                                                                               tiny_images):  # noqa: F811
    """One protocol for released and own tokenizers: `mmtok eval` reports on the import like on any bundle,
    `mmtok tokenize` encodes a dataset with it, and `mmtok lm extend` takes it."""
    from test_lm_layout import make_llm

    from mmtok.evaluation import evaluate
    from mmtok.export.interop import import_bundle
    from mmtok.lm.extend import extend
    from mmtok.lm.tokens import read_tokens, tokenize

    import_bundle("llamagen", _llamagen_file(tmp_path, _janus(unit_rows=False)), tmp_path / "bundle")
    for i, image in enumerate(sorted(tiny_images.glob("*.png"))):  # two classes of six images: a probe runs on it
        (tmp_path / "labelled" / f"class_{i % 2}").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(image, tmp_path / "labelled" / f"class_{i % 2}" / image.name)
    report = evaluate(tmp_path / "bundle", "demo", num_samples=8, batch_size=4, rfid=False, classifier=None,
                      progress=False, out=tmp_path / "eval", probe=str(tmp_path / "labelled"), num_workers=0)
    assert report["metrics"]["psnr"] > 0 and 0 < report["metrics"]["codebook_usage_pct"] <= 100
    # the code vectors the decoder reads: 8-d codes projected to the 32 latent channels
    assert report["probe"]["images"] == 12 and report["probe"]["features"]["tokens"]["dim"] == 32
    layout = extend(make_llm(tmp_path_factory.getbasetemp(), tied=False), [tmp_path / "bundle"], tmp_path / "ext")
    assert layout.modality("image").codebook_size == 64 and layout.modality("image").token_grid == (8, 8)
    done = tokenize(tmp_path / "bundle", str(tiny_images), tmp_path / "tokens", progress=False)
    tokens = read_tokens(tmp_path / "tokens")
    assert done["encoded"] == len(tokens) == 12


def test_import_help_names_every_registered_format():
    from typer.testing import CliRunner

    from mmtok import families
    from mmtok.cli.main import app

    families.discover()
    text = CliRunner().invoke(app, ["import", "--help"]).stdout
    assert families.FORMATS.names() == ["dac", "encodec", "janus", "llamagen", "taming", "var"]
    for fmt in families.FORMATS.names():
        assert fmt in text, fmt


def test_a_discriminator_that_does_not_fit_is_one_error_unless_excluded(tmp_path):
    from mmtok import config
    from mmtok.errors import CheckpointError
    from mmtok.export.interop import import_bundle
    from mmtok.train.task import TokenizerTask

    import_bundle("llamagen", _llamagen_file(tmp_path, _janus(unit_rows=False)), tmp_path / "bundle")
    base = [f"init.path={tmp_path / 'bundle'}", "loss.weights.perceptual=0", "loss.gan.ndf=16"]
    with pytest.raises(CheckpointError, match="discriminator") as e:
        TokenizerTask(config.load(str(tmp_path / "bundle" / "recipe.yaml"), base))
    assert "adversary.*" in e.value.hint
    task = TokenizerTask(config.load(str(tmp_path / "bundle" / "recipe.yaml"), [*base, "init.exclude=['adversary.*']"]))
    assert task.adversary_report == "fresh (init.exclude)"
    fitting = TokenizerTask(config.load(str(tmp_path / "bundle" / "recipe.yaml"), base[:2]))
    assert fitting.adversary_report.startswith("loaded discriminator")
