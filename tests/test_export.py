"""`mmtok export` bundles, `mmtok.load`, the torch.export graphs, `mmtok encode/decode`, and every way a bundle
or an input can be wrong (each a one-line error naming the problem)."""
import hashlib
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from _fixtures import copy_run, tiny_images, tiny_run  # noqa: F401  (fixtures)
from mmtok.cli.main import app
from mmtok.errors import CheckpointError, MmtokError

runner = CliRunner()


@pytest.fixture(scope="module")
def exported(tiny_run, tiny_images, tmp_path_factory):  # noqa: F811
    """(run copy with an evaluation in RUN/eval, bundle exported from it with --graphs)."""
    from mmtok.evaluation import evaluate

    root = tmp_path_factory.mktemp("export")
    run = copy_run(tiny_run, root / "run")
    evaluate(run, str(tiny_images), batch_size=6, num_workers=0, rfid=False, progress=False)
    bundle = root / "bundle"
    result = runner.invoke(app, ["export", str(run), str(bundle), "--graphs"])
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    return run, bundle


def _images(n: int = 5, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _eager(run: Path):
    from mmtok.model_io import load_model

    return load_model(run)[0]


def _copy_bundle(bundle: Path, dest: Path) -> Path:
    shutil.copytree(bundle, dest)
    return dest


def _fix_checksum(bundle: Path, name: str) -> None:
    sums = json.loads((bundle / "checksums.json").read_text())
    sums["files"][name] = hashlib.sha256((bundle / name).read_bytes()).hexdigest()
    (bundle / "checksums.json").write_text(json.dumps(sums))


def _run_python(code: str) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def test_bundle_files_read_with_plain_json_and_safetensors(exported):
    from safetensors.torch import load_file

    run, bundle = exported
    names = {p.name for p in bundle.iterdir()}
    assert names == {"config.json", "model.safetensors", "tokenizer.json", "recipe.yaml", "eval.json", "README.md",
                     "encoder.pt2", "decoder.pt2", "checksums.json"}
    assert not bundle.with_name("bundle.tmp").exists()
    sums = json.loads((bundle / "checksums.json").read_text())
    assert set(sums["files"]) == names - {"checksums.json"}
    for name, digest in sums["files"].items():
        assert hashlib.sha256((bundle / name).read_bytes()).hexdigest() == digest, name
    cfg = json.loads((bundle / "config.json").read_text())
    assert cfg["format_version"] == 1 and cfg["family"] == "vqgan" and cfg["weights"] == "ema"
    assert cfg["mmtok_version"] and cfg["model"]["preset"] == "test_f4" and cfg["step"] == 4
    meta = json.loads((bundle / "tokenizer.json").read_text())
    assert meta["modality"] == "image" and meta["token_grid"] == [4, 4] and meta["tokens_per_sample"] == 16
    assert meta["codebook_size"] == 32 and meta["codebook_dim"] == 4 and meta["num_codebooks"] == 1
    assert meta["downsample"] == 4 and meta["quantizer"] == "vq" and meta["ids"]["offset"] == 0
    assert meta["input"]["value_range"] == [-1.0, 1.0] and "row-major" in meta["ids"]["layout"]
    assert meta["special_tokens"]["code_format"].format(7) == "<img_00007>"
    weights = load_file(str(bundle / "model.safetensors"))
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]
    assert set(weights) == {k[len("ema.module."):] for k in ckpt if k.startswith("ema.module.")}
    for k, v in weights.items():
        assert torch.equal(v, ckpt["ema.module." + k]), k
    evaluation = json.loads((bundle / "eval.json").read_text())
    assert evaluation == json.loads((run / "eval" / "001" / "metrics.json").read_text())
    card = (bundle / "README.md").read_text()
    assert "PSNR (dB)" in card and "mmtok.load" in card and "torch.export.load" in card
    assert (bundle / "recipe.yaml").read_text().strip() in card  # the exact resolved recipe


def test_bundle_in_a_fresh_process_gives_the_checkpoint_ema_ids_and_pixels(exported, tmp_path):
    run, bundle = exported
    x = _images()
    np.save(tmp_path / "x.npy", x.numpy())
    _run_python(f"""
        import numpy as np, torch, mmtok
        tok = mmtok.load({str(bundle)!r})
        ids = tok.encode(torch.from_numpy(np.load({str(tmp_path / 'x.npy')!r})))
        np.save({str(tmp_path / 'ids.npy')!r}, ids.numpy())
        np.save({str(tmp_path / 'px.npy')!r}, tok.decode(ids).numpy())
    """)
    model = _eager(run)
    want_ids = model.encode(x)
    assert torch.equal(torch.from_numpy(np.load(tmp_path / "ids.npy")), want_ids)
    want_px = model.decode(want_ids).clamp(-1, 1)
    torch.testing.assert_close(torch.from_numpy(np.load(tmp_path / "px.npy")), want_px, rtol=0, atol=1e-6)


def test_graphs_run_with_plain_torch_and_match_eager(exported, tmp_path):
    run, bundle = exported
    x = _images(7, seed=1)
    np.save(tmp_path / "x.npy", x.numpy())
    _run_python(f"""
        import sys, numpy as np, torch
        enc = torch.export.load({str(bundle / 'encoder.pt2')!r}).module()
        dec = torch.export.load({str(bundle / 'decoder.pt2')!r}).module()
        x = torch.from_numpy(np.load({str(tmp_path / 'x.npy')!r}))
        ids = torch.cat([enc(x[:1]), enc(x[1:])])  # dynamic batch: 1 and 6
        np.save({str(tmp_path / 'ids.npy')!r}, ids.numpy())
        np.save({str(tmp_path / 'px.npy')!r}, dec(ids).numpy())
        assert not any(m == "mmtok" or m.startswith("mmtok.") for m in sys.modules), "mmtok was imported"
    """)
    model = _eager(run)
    want_ids = model.encode(x)
    got_ids = torch.from_numpy(np.load(tmp_path / "ids.npy"))
    assert got_ids.dtype == torch.int64 and torch.equal(got_ids, want_ids)
    torch.testing.assert_close(torch.from_numpy(np.load(tmp_path / "px.npy")), model.decode(want_ids).clamp(-1, 1),
                               rtol=0, atol=1e-5)


def test_tokenizer_takes_paths_pil_and_lists_and_checks_inputs(exported, tiny_images):  # noqa: F811
    import mmtok
    from mmtok.modalities.image.decode import image_to_tensor, read_image

    _, bundle = exported
    tok = mmtok.load(bundle)
    files = sorted(tiny_images.glob("*.png"))[:3]
    ids = tok.encode([files[0], Image.open(files[1]), str(files[2])])
    x = torch.stack([image_to_tensor(read_image(f), 16, random_crop=False) for f in files])
    assert ids.shape == (3, 4, 4) and torch.equal(ids, tok.encode(x))
    assert torch.equal(tok.decode(ids.reshape(3, 16)), tok.decode(ids))  # flat row-major sequences
    assert tok.decode(ids[0]).shape == (1, 3, 16, 16)
    bad_images = [
        ((x + 1) / 2, "look like [0, 1] images"),
        (((x + 1) * 127.5).to(torch.uint8), "got a uint8 tensor"),
        (torch.nn.functional.interpolate(x, size=24), "got 24x24 images; this tokenizer takes 16x16"),
        (x[:, :1], "expects float images [B, 3, 16, 16]"),
    ]
    for bad, message in bad_images:
        with pytest.raises(MmtokError, match=message.replace("[", r"\[").replace("]", r"\]")):
            tok.encode(bad)
    with pytest.raises(MmtokError, match=r"it expects images in \[-1, 1\]"):
        tok.encode(x * 200)
    with pytest.raises(MmtokError, match=r"ids in \[0, 32\)|lie in \[0, 32\)"):
        tok.decode(ids + 32)
    with pytest.raises(MmtokError, match="must be integers"):
        tok.decode(ids.float())
    with pytest.raises(MmtokError, match="grid is 4x4"):
        tok.decode(ids[:, :2])


def _corrupt_weights(b: Path) -> None:
    data = bytearray((b / "model.safetensors").read_bytes())
    data[-10] ^= 0xFF
    (b / "model.safetensors").write_bytes(bytes(data))


def _rewrite_weights(b: Path, drop: str | None = None, add: str | None = None) -> None:
    from safetensors.torch import load_file, save_file

    sd = load_file(str(b / "model.safetensors"))
    if drop:
        del sd[drop]
    if add:
        sd[add] = torch.zeros(3)
    save_file(sd, str(b / "model.safetensors"))
    _fix_checksum(b, "model.safetensors")


def _edit_config(b: Path, **changes) -> None:
    cfg = json.loads((b / "config.json").read_text())
    cfg.update(changes)
    (b / "config.json").write_text(json.dumps(cfg))
    _fix_checksum(b, "config.json")


def _edit_checksum(b: Path) -> None:
    sums = json.loads((b / "checksums.json").read_text())
    sums["files"]["tokenizer.json"] = "0" * 64
    (b / "checksums.json").write_text(json.dumps(sums))


@pytest.mark.parametrize("damage, message", [
    (_corrupt_weights, "checksum mismatch for model.safetensors"),
    (_edit_checksum, "checksum mismatch for tokenizer.json"),
    (lambda b: _rewrite_weights(b, drop="decoder.conv_out.bias"), "missing 1 key(s): decoder.conv_out.bias"),
    (lambda b: _rewrite_weights(b, add="extra.weight"), "unexpected 1 key(s): extra.weight"),
    (lambda b: _edit_config(b, mmtok_version="7.0.0"), "was written by mmtok 7.0.0"),
    (lambda b: _edit_config(b, format_version=2), "bundle format 2, newer than this mmtok reads (1)"),
    (lambda b: (b / "model.safetensors").unlink(), "missing model.safetensors"),
])
def test_damaged_bundles_are_refused_naming_the_problem(exported, tmp_path, damage, message):
    import mmtok

    b = _copy_bundle(exported[1], tmp_path / "b")
    damage(b)
    with pytest.raises(CheckpointError) as e:
        mmtok.load(b)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_cli_errors_are_one_line_on_stderr(exported, tiny_images, tmp_path):  # noqa: F811
    run, bundle = exported
    corrupt = _copy_bundle(bundle, tmp_path / "corrupt")
    _corrupt_weights(corrupt)
    np.save(tmp_path / "bad_ids.npy", np.full((2, 4, 4), 40, dtype=np.int64))
    cases = [
        (["encode", str(corrupt), str(tiny_images), "--out", str(tmp_path / "i.npy")], "checksum mismatch for model.safetensors"),
        (["decode", str(bundle), str(tmp_path / "bad_ids.npy"), "--out", str(tmp_path / "dec")], "[0, 32)"),
        (["encode", str(run), str(tiny_images), "--out", str(tmp_path / "i.npy")], "is a training run, not a bundle"),
        (["export", str(run), str(bundle)], "already exists and is not empty"),
        (["export", str(tmp_path / "nothing"), str(tmp_path / "b2")], "no model at"),
    ]
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.stdout, result.stderr, result.exception)
        assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr, result.stderr
        assert message in result.stderr, (message, result.stderr)
    assert not (tmp_path / "dec").exists()  # ids are checked before anything is written


def test_encode_decode_cli_round_trip(exported, tiny_images, tmp_path):  # noqa: F811
    import mmtok

    _, bundle = exported
    files = sorted(tiny_images.glob("*.png"))
    result = runner.invoke(app, ["encode", str(bundle), str(files[0]), str(tiny_images), "--out",
                                 str(tmp_path / "ids.npy"), "--batch-size", "5"])
    assert result.exit_code == 0, result.stderr
    ids = np.load(tmp_path / "ids.npy")
    tok = mmtok.load(bundle)
    assert ids.shape == (1 + len(files), 4, 4) and ids.dtype == np.int64
    assert (ids == tok.encode([files[0], *files]).numpy()).all()
    assert (tmp_path / "ids.files.txt").read_text().splitlines()[1:] == [str(f) for f in files]
    result = runner.invoke(app, ["decode", str(bundle), str(tmp_path / "ids.npy"), "--out", str(tmp_path / "png")])
    assert result.exit_code == 0, result.stderr
    pngs = sorted((tmp_path / "png").glob("*.png"))
    assert len(pngs) == len(ids)
    want = tok.to_pil(tok.decode(torch.from_numpy(ids[:1])))[0]
    assert np.array_equal(np.asarray(Image.open(pngs[0])), np.asarray(want))


def test_export_is_atomic_and_force_replaces(exported, tmp_path, monkeypatch):
    import mmtok.export.graphs as graphs

    run, _ = exported
    out = tmp_path / "b"

    def broken(*a, **k):
        raise RuntimeError("simulated export failure")

    monkeypatch.setattr(graphs, "export_graphs", broken)
    result = runner.invoke(app, ["export", str(run), str(out), "--graphs"])
    assert result.exit_code == 2 and "simulated export failure" in result.stderr
    assert not out.exists() and not out.with_name("b.tmp").exists()
    monkeypatch.undo()
    out.mkdir()
    (out / "old.txt").write_text("x")
    result = runner.invoke(app, ["export", str(run), str(out), "--force", "--no-ema"])
    assert result.exit_code == 0, result.stderr
    assert not (out / "old.txt").exists() and (out / "model.safetensors").is_file()
    assert json.loads((out / "config.json").read_text())["weights"] == "raw"
    assert not (out / "eval.json").exists()  # the run's evaluation was of the EMA weights
    assert "eval.json left out" in result.stdout


@pytest.mark.parametrize("quantizer", [
    {"kind": "fsq", "levels": [3, 4, 5]},
    {"kind": "lfq", "dim": 5},
    {"kind": "rvq", "levels": 3, "codebook_size": 16, "dim": 4},
], ids=["fsq", "lfq", "rvq"])
def test_graphs_and_tokenizer_for_every_quantizer_kind(quantizer, tmp_path):
    """The .pt2 graphs equal eager for every quantizer kind (random weights), and the Tokenizer's id checks know
    a residual quantizer's trailing level dimension."""
    from mmtok import config, families
    from mmtok.export.bundle import tokenizer_meta
    from mmtok.export.graphs import check_graphs, export_graphs
    from mmtok.modalities.image.tokenizer import ImageTokenizer

    recipe = config.load({"model": {"preset": "test_f4", "quantizer": quantizer}})
    torch.manual_seed(0)
    model = families.build_model(recipe.model).eval()
    export_graphs(model, tmp_path)
    check_graphs(model, tmp_path, _images(6, seed=2))  # raises on any difference
    tok = ImageTokenizer(model, tokenizer_meta(model, recipe), {})
    ids = tok.encode(_images(2))
    levels = quantizer.get("levels") if quantizer["kind"] == "rvq" else None
    assert ids.shape == (2, 4, 4, *([levels] if levels else []))
    assert torch.equal(tok.decode(ids.reshape(2, -1)), tok.decode(ids))
    if levels:
        assert tok.decode(ids[..., :1]).shape == (2, 3, 16, 16)  # coarse levels only
        with pytest.raises(MmtokError, match="grid is 4x4"):
            tok.decode(torch.zeros(2, 4, 4, levels + 1, dtype=torch.long))
    with pytest.raises(MmtokError, match=rf"lie in \[0, {tok.codebook_size}\)"):
        tok.decode(ids + tok.codebook_size)


def _onnx_ready() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxscript", "onnxruntime"))


@pytest.mark.skipif(_onnx_ready(), reason="onnx and onnxscript are installed here")
def test_onnx_without_its_packages_is_a_one_line_error(exported, tmp_path):
    result = runner.invoke(app, ["export", str(exported[0]), str(tmp_path / "b"), "--onnx"])
    assert result.exit_code == 2 and result.stderr.startswith("error: --onnx needs")
    assert "pip install onnx onnxscript" in result.stderr and not (tmp_path / "b").exists()


@pytest.mark.skipif(not _onnx_ready(), reason="needs the optional packages onnx, onnxscript and onnxruntime")
def test_onnx_graphs_match_eager(exported, tmp_path):
    import onnxruntime as ort

    run, _ = exported
    out = tmp_path / "b"
    result = runner.invoke(app, ["export", str(run), str(out), "--onnx"])
    assert result.exit_code == 0, result.stderr
    assert "not checked" not in result.stdout  # onnxruntime checked them during the export
    x = _images(4, seed=3)
    model = _eager(run)
    ids = ort.InferenceSession(str(out / "encoder.onnx")).run(None, {"images": x.numpy()})[0]
    assert np.array_equal(ids, model.encode(x).numpy())
    px = ort.InferenceSession(str(out / "decoder.onnx")).run(None, {"ids": ids[:1]})[0]
    np.testing.assert_allclose(px, model.decode(torch.from_numpy(ids[:1])).clamp(-1, 1).numpy(), atol=1e-4)
