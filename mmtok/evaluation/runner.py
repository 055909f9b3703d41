"""`evaluate(model, data)`: one pass over held-out images with every reconstruction metric, on one or more
devices (Lightning Fabric; `devices > 1` runs DDP and the torchmetrics states are summed across ranks).

Protocol (REFERENCE.md section 1): the "val" split of mmtok.data (shorter side resized to R, centre crop R x R,
deterministic); EMA weights unless told otherwise; reconstructions clamped to [-1, 1] and quantised to 8 bits
(as if saved to PNG) before every metric; rFID between Inception-v3 pool3 features of the cropped originals
(or precomputed reference statistics) and of the reconstructions, float64 statistics; PSNR and SSIM on [0, 1]
with data_range 1.0; LPIPS (VGG and AlexNet) only with the real backbone weights, else "unavailable"; codebook
usage, perplexity and entropy over the whole pass on all ranks; encode and decode throughput timed apart.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path

from mmtok.errors import AssetError, MmtokError
from mmtok.evaluation.report import UNAVAILABLE

GRID_IMAGES = 8
CROP = "shorter side resized to {r} (bicubic, antialiased), centre crop {r}x{r}"


def default_out(model_path: str | os.PathLike) -> Path:
    """MODEL/eval for a run directory (and for RUN/checkpoints/x.ckpt), else ./eval-<name>."""
    p = Path(model_path)
    if p.is_dir() and (p / "checkpoints").is_dir():
        return p / "eval"
    if p.is_file() and p.parent.name == "checkpoints" and (p.parent.parent / "recipe.yaml").is_file():
        return p.parent.parent / "eval"
    return Path(f"eval-{p.stem if p.is_file() else p.resolve().name}")


def _to_uint8_levels(x):
    """[-1, 1] images quantised to the 256 levels of an 8-bit PNG (still in [-1, 1])."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1


def evaluate(model_path: str | os.PathLike, data: str, *, out: str | os.PathLike | None = None,
             num_samples: int | None = None, resolution: int | None = None, batch_size: int = 16,
             devices: int = 1, accelerator: str = "auto", num_workers: int = 2, ema: bool = True,
             fid_weights: str | None = None, reference_stats: str | None = None,
             save_reference_stats: str | None = None, console=None, progress: bool = True) -> dict:
    """Evaluate the tokenizer at `model_path` (run dir, .ckpt or bundle) on `data` (any mmtok data source).

    Returns the result dict also written to OUT/metrics.json (see `metrics.json` keys: mmtok_version, model,
    protocol, metrics, unavailable, warnings, files). Writes OUT/metrics.json, reconstructions.png,
    codebook_usage.png, codebook_counts.npy and report.md on global rank 0. `console` is a rich Console for
    progress and warnings (None: a new one on stderr).
    """
    import lightning as L
    import torch
    from rich.console import Console

    import mmtok
    from mmtok.data import make_loader
    from mmtok.metrics import PSNR, SSIM, CodebookUsage
    from mmtok.model_io import load_model

    if reference_stats and save_reference_stats:
        raise MmtokError("--reference-stats and --save-reference-stats together: the loaded statistics would "
                         "just be written back", hint="give one of them")
    if batch_size < 1 or devices < 1 or (num_samples is not None and num_samples < 1):
        raise MmtokError(f"bad settings: batch_size={batch_size}, devices={devices}, num_samples={num_samples}",
                         hint="all must be >= 1")
    console = console or Console(stderr=True)
    model, recipe, info = load_model(model_path, ema=ema)
    res = int(resolution or recipe.model.resolution)
    f = recipe.model.downsample
    if res % f:
        raise MmtokError(f"resolution {res} is not a multiple of the model's downsample factor {f}",
                         hint=f"use a multiple of {f} (the model was trained at {recipe.model.resolution})")

    accel = accelerator if accelerator != "auto" else ("gpu" if torch.cuda.is_available() else "cpu")
    fabric = L.Fabric(accelerator=accel, devices=devices, strategy="ddp" if devices > 1 else "auto",
                      precision="32-true")
    fabric.launch()
    L.seed_everything(recipe.seed, verbose=False)
    device = fabric.device
    model = model.to(device)
    is_main = fabric.is_global_zero
    world = fabric.world_size

    unavailable: dict[str, str] = {}
    warnings_: list[str] = []
    fid = _make_fid(fid_weights, reference_stats, unavailable, console if is_main else None)
    lpips = {net: _make_lpips(net, res, unavailable) for net in ("vgg", "alex")}
    k, n_books = recipe.model.quantizer.codebook_size, recipe.model.quantizer.num_codebooks
    metrics = {"psnr": PSNR(), "usage": CodebookUsage(k, n_books)}
    if res >= 11:
        metrics["ssim"] = SSIM()
    else:
        unavailable["ssim"] = f"SSIM's 11x11 window needs images of at least 11 px (evaluating at {res} px)"
    if fid is not None:
        metrics["fid"] = fid
    metrics.update({f"lpips_{net}": m for net, m in lpips.items() if m is not None})
    for m in metrics.values():
        m.to(device)

    loader = make_loader(data, "val", res, batch_size=batch_size, num_workers=num_workers, shuffle_buffer=0,
                         seed=recipe.seed, max_samples=num_samples)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = {"encode": 0.0, "decode": 0.0, "n": 0, "first": None}
    grid_in, grid_out, skipped = [], [], 0
    bar = _progress(console, num_samples, world, enabled=progress and is_main)
    with bar, torch.no_grad():
        task = bar.add_task("eval", total=math.ceil(num_samples / world) if num_samples else None)
        for i, batch in enumerate(loader):
            x = batch["image"].to(device, non_blocking=True)
            skipped += int(batch["skipped"].sum())
            sync()
            t0 = time.perf_counter()
            ids = model.encode(x)
            sync()
            t1 = time.perf_counter()
            recon = model.decode(ids)
            sync()
            t2 = time.perf_counter()
            if i == 0:  # warm-up batch: timed apart, used only when it is the only one
                times["first"] = (t1 - t0, t2 - t1, x.shape[0])
            else:
                times["encode"] += t1 - t0
                times["decode"] += t2 - t1
                times["n"] += x.shape[0]
            recon = _to_uint8_levels(recon.float())
            _update(metrics, x, recon, ids, fid_real=reference_stats is None)
            if is_main and len(grid_in) * batch_size < GRID_IMAGES:
                grid_in.append(x[:GRID_IMAGES].cpu())
                grid_out.append(recon[:GRID_IMAGES].cpu())
            bar.advance(task, x.shape[0])

    # ---- compute (every rank takes part: the metric states are summed across ranks here)
    usage = metrics["usage"].compute()
    n_total = int(usage["num_samples"])
    counts = metrics["usage"].histogram()  # [codebooks, K]
    results: dict = {}
    results["psnr"] = _value(metrics["psnr"])
    if "ssim" in metrics:
        results["ssim"] = _value(metrics["ssim"])
    for net in ("vgg", "alex"):
        key = f"lpips_{net}"
        results[key] = _value(metrics[key]) if key in metrics else UNAVAILABLE
    if fid is not None:
        try:
            results["rfid"] = float(fid.compute())
        except ValueError as e:  # fewer than 2 images on a side
            results["rfid"], unavailable["rfid"] = UNAVAILABLE, str(e)
        if save_reference_stats and "rfid" not in unavailable:
            fid.save_reference_stats(save_reference_stats)
    else:
        results["rfid"] = UNAVAILABLE
        if save_reference_stats:
            warnings_.append("--save-reference-stats ignored: the FID Inception weights are unavailable")
    results = {"rfid": results.pop("rfid"), **results}
    results.update({
        "codebook_usage_pct": float(usage["usage_pct"]), "codebook_used": int(usage["used_codes"]),
        "codebook_size": k, "num_codebooks": n_books, "codebook_perplexity": float(usage["perplexity"]),
        "codebook_entropy_bits": float(usage["entropy_bits"]), "codebook_entropy_max_bits": math.log2(k),
        "tokens_per_sample": float(usage["tokens_per_sample"]),
    })
    results.update(_throughput(fabric, times, device))
    skipped = int(fabric.all_reduce(torch.tensor(skipped, device=device), reduce_op="sum"))
    if skipped:
        warnings_.append(f"{skipped} undecodable samples were skipped")
    if num_samples and n_total < num_samples:
        warnings_.append(f"asked for {num_samples} samples, the data held {n_total}")

    result = {
        "mmtok_version": mmtok.__version__,
        "model": {**info, "family": recipe.model.family, "resolution_trained": recipe.model.resolution},
        "protocol": {
            "data": data, "split": "val", "crop": CROP.format(r=res), "num_samples": n_total, "num_samples_requested": num_samples,
            "skipped_samples": skipped, "resolution": res, "batch_size": batch_size, "devices": world,
            "device": str(device.type), "precision": "fp32", "weights": info["weights"], "seed": recipe.seed,
            "fid_weights": str(fid.weights_path) if fid is not None else None,
            "fid_features": "Inception-v3 pool3 (2048-d), bilinear resize to 299, float64 mean/covariance",
            "reference_stats": reference_stats, "psnr_ssim": "images in [0, 1], data_range 1.0",
            "reconstructions": "Reconstructions clamped to [-1, 1] and quantised to 8 bits before every metric",
            "throughput": "samples/s over all devices, first batch excluded as warm-up, encode and decode timed apart",
        },
        "metrics": results,
        "unavailable": unavailable,
        "warnings": warnings_,
    }
    if is_main:
        result["files"] = _write_outputs(Path(out) if out else default_out(model_path), result, counts,
                                         grid_in, grid_out)
    fabric.barrier()
    return result


# ------------------------------------------------------------------------------------------------ helpers


def _make_fid(weights, reference_stats, unavailable: dict, console):
    from mmtok import assets
    from mmtok.metrics import FrechetInceptionDistance

    try:
        path = assets.get("fid-inception").resolve(weights)
        fid = FrechetInceptionDistance(weights=path)
    except AssetError as e:
        unavailable["rfid"] = str(e)
        if console is not None:
            from rich.markup import escape

            console.print(f"[yellow]rFID unavailable[/yellow]: {escape(str(e))}", soft_wrap=True)
        return None
    fid.weights_path = path
    if reference_stats:
        fid.load_reference_stats(reference_stats)
    return fid


def _make_lpips(net: str, res: int, unavailable: dict):
    import torch

    from mmtok.metrics import LPIPSMetric, lpips_available

    ok, reason = lpips_available(net)
    if not ok:
        unavailable[f"lpips_{net}"] = reason
        return None
    try:
        metric = LPIPSMetric(net)
    except AssetError as e:
        unavailable[f"lpips_{net}"] = str(e)
        return None
    try:  # the backbone's pooling stages need a minimum image size
        with torch.no_grad():
            metric.lpips(torch.zeros(1, 3, res, res), torch.zeros(1, 3, res, res))
    except RuntimeError:
        unavailable[f"lpips_{net}"] = f"the {net} backbone cannot run on {res}x{res} images (too small)"
        return None
    return metric


def _update(metrics: dict, x, recon, ids, *, fid_real: bool) -> None:
    a, b = (x.float() + 1) / 2, (recon + 1) / 2
    metrics["psnr"].update(b, a)
    if "ssim" in metrics:
        metrics["ssim"].update(b, a)
    for key in ("lpips_vgg", "lpips_alex"):
        if key in metrics:
            metrics[key].update(b, a)
    if "fid" in metrics:
        if fid_real:
            metrics["fid"].update(x, real=True)
        metrics["fid"].update(recon, real=False)
    # a residual quantizer's ids are [B, h, w, levels]; CodebookUsage wants the codebook on dim 1
    metrics["usage"].update(ids if metrics["usage"].num_codebooks == 1 else ids.movedim(-1, 1))


def _value(metric) -> float:
    return float(metric.compute())


def _throughput(fabric, times: dict, device) -> dict:
    """Samples/s over all ranks: total samples / the slowest rank's time, for encode and decode."""
    import torch

    enc, dec, n = times["encode"], times["decode"], times["n"]
    if n == 0 and times["first"] is not None:  # one batch only: it is all we have
        enc, dec, n = times["first"]
    t = torch.tensor([enc, dec], dtype=torch.float64, device=device)
    t = fabric.all_reduce(t, reduce_op="max") if fabric.world_size > 1 else t
    total = int(fabric.all_reduce(torch.tensor(n, device=device), reduce_op="sum")) if fabric.world_size > 1 else n
    out = {}
    for i, key in enumerate(("encode_samples_per_s", "decode_samples_per_s")):
        out[key] = total / float(t[i]) if float(t[i]) > 0 else None
    return out


def _write_outputs(out: Path, result: dict, counts, grid_in, grid_out) -> dict:
    import numpy as np
    import torch

    from mmtok.evaluation.plots import usage_plot
    from mmtok.evaluation.report import report_markdown, write_json
    from mmtok.train.samples import save_grid

    out.mkdir(parents=True, exist_ok=True)
    files = {"metrics": "metrics.json", "report": "report.md", "usage_plot": "codebook_usage.png",
             "codebook_counts": "codebook_counts.npy"}
    if grid_in:
        save_grid(torch.cat(grid_in)[:GRID_IMAGES], torch.cat(grid_out)[:GRID_IMAGES], out / "reconstructions.png")
        files["grid"] = "reconstructions.png"
    m = result["metrics"]
    title = None
    if counts.shape[0] > 1:  # every codebook's codes in one plot
        title = (f"codebook usage: {m['codebook_used']}/{counts.numel()} codes of {counts.shape[0]} codebooks used "
                 f"({m['codebook_usage_pct']:.1f}% on average)")
    usage_plot(counts.numpy(), out / files["usage_plot"], title=title or "")
    np.save(out / files["codebook_counts"], (counts[0] if counts.shape[0] == 1 else counts).numpy().astype(np.int64))
    result["files"] = files
    write_json(out / files["metrics"], result)
    (out / files["report"]).write_text(report_markdown(result))
    return files


class _NoBar:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add_task(self, *a, **k):
        return 0

    def advance(self, *a, **k):
        pass


def _progress(console, num_samples, world, *, enabled: bool):
    if not enabled:
        return _NoBar()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("[bold]eval[/bold]"), BarColumn(), MofNCompleteColumn(), TextColumn("images"),
                    TimeElapsedColumn(), console=console, transient=False)
