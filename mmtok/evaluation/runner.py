"""`evaluate_images(model, data)` (the image modality's `mmtok eval`): one pass over held-out images with every reconstruction metric, on one or more
devices (Lightning Fabric; `devices > 1` runs DDP and the torchmetrics states are summed across ranks).

Protocol (REFERENCE.md section 1): the "val" split of mmtok.data (shorter side resized to R, centre crop R x R,
deterministic); EMA weights unless told otherwise; reconstructions clamped to [-1, 1] and quantised to 8 bits
(as if saved to PNG) before every metric; rFID between Inception-v3 pool3 features of the cropped originals
(or precomputed reference statistics) and of the reconstructions, float64 statistics; PSNR and SSIM on [0, 1]
with data_range 1.0; LPIPS (VGG and AlexNet) only with the real backbone weights, else "unavailable"; codebook
usage, perplexity and entropy over the whole pass on all ranks; encode and decode throughput timed apart.

Honesty: an rFID from fewer than 5,000 images is flagged (metrics.json `rfid_reliability` "low" or, below
500, "not_meaningful", with `rfid_num_images`), and reference statistics are checked against this
evaluation's resolution, crop and FID network (mmtok.evaluation.fid_protocol). Every file the caller names
is checked before any work. Results go to a new folder per evaluation (mmtok.evaluation.output).
"""
from __future__ import annotations

import math
import os
import time
from datetime import datetime, timezone
from pathlib import Path

from mmtok.errors import AssetError, MmtokError
from mmtok.evaluation import fid_protocol
from mmtok.evaluation.output import check_out, eval_base, prepare_out, write_outputs
from mmtok.evaluation.report import UNAVAILABLE
from mmtok.evaluation.timing import progress_bar, throughput

GRID_IMAGES = 8
NO_PIXELS = "no pixel decoder: this tokenizer's ids decode to embeddings, not images"
CROP = "shorter side resized to {r} (bicubic, antialiased), centre crop {r}x{r}"
SPLIT = "val"


def default_out(model_path: str | os.PathLike) -> Path:
    """The folder under which evaluations of `model_path` get their numbered folders (see output.eval_base)."""
    return eval_base(model_path)


def evaluate_images(model_path: str | os.PathLike, data: str, *, out: str | os.PathLike | None = None,
             force: bool = False, num_samples: int | None = None, resolution: int | None = None,
             batch_size: int = 16, devices: int = 1, accelerator: str = "auto", num_workers: int = 2,
             ema: bool = True, fid_weights: str | None = None, reference_stats: str | None = None,
             save_reference_stats: str | None = None, rfid: bool = True, classifier: str | None = "efficientnet_lite2",
             console=None, progress: bool = True) -> dict:
    """Evaluate the tokenizer at `model_path` (run dir, .ckpt or bundle) on `data` (any mmtok data source).

    Returns the result dict also written to OUT/metrics.json (keys: mmtok_version, created, model (with
    weights_sha256, the identity `mmtok export` matches), protocol, metrics (rfid_reliability and
    rfid_num_images with the rFID), unavailable, warnings, files) plus "out", the folder written (not in the
    file). OUT is `out` (absent or empty unless `force`) or a new numbered folder under the model's eval/
    (see mmtok.evaluation.output). Writes metrics.json, reconstructions.png, codebook_usage.png,
    codebook_counts.npy and report.md on global rank 0. `console` is a rich Console for progress and
    warnings (None: a new one on stderr).

    Named files are checked before any work (MmtokError): `fid_weights` and `reference_stats` must exist
    (an explicitly named FID network that is missing or unreadable is an error, not "unavailable"), stats
    files are .npz or .safetensors, and reference statistics must match this evaluation's resolution, crop
    and FID network. `rfid=False` skips rFID (reported "unavailable", skipped on request).

    Semantic fidelity: `classifier` (an ImageNet classifier of mmtok.teachers.CLASSIFIERS, None to skip) gives the
    top-1 agreement between originals and reconstructions ("unavailable" when its weights are missing); a model
    with a semantic branch (`teacher_features(x)`, `semantic_embedding(ids)`) also gets the mean cosine between
    the two ("semantic_cosine").
    """
    if reference_stats and save_reference_stats:
        raise MmtokError("--reference-stats and --save-reference-stats together: the loaded statistics would "
                         "just be written back", hint="give one of them")
    if batch_size < 1 or devices < 1 or (num_samples is not None and num_samples < 1):
        raise MmtokError(f"bad settings: batch_size={batch_size}, devices={devices}, num_samples={num_samples}",
                         hint="all must be >= 1")
    from mmtok import hardware  # a GPU asked for on a CPU machine is one line here, before any work

    accel, devices = hardware.resolve(accelerator, devices, "ddp" if devices > 1 else "auto")
    check_out(out, force)
    if not rfid and (fid_weights or reference_stats or save_reference_stats):
        raise MmtokError("--no-rfid with --fid-weights, --reference-stats or --save-reference-stats",
                         hint="those flags are for rFID; drop --no-rfid or them")
    for path, flag in ((reference_stats, "--reference-stats"), (save_reference_stats, "--save-reference-stats")):
        if path:
            fid_protocol.check_stats_path(path, flag)
    if reference_stats and not Path(reference_stats).is_file():
        raise MmtokError(f"--reference-stats {reference_stats}: no such file",
                         hint="save them first with --save-reference-stats, or omit the flag")
    fid_path, fid_why = None, "skipped on request (--no-rfid)"
    if rfid:
        wanted_by = ("--reference-stats" if reference_stats else
                     "--save-reference-stats" if save_reference_stats else None)
        fid_path, fid_why = _find_fid(fid_weights, wanted_by=wanted_by)

    import lightning as L
    import torch
    from rich.console import Console

    import mmtok
    from mmtok.data import make_loader
    from mmtok.metrics import SSIM, load_stats_meta
    from mmtok.modalities.image import ImageMetrics, to_8bit_levels
    from mmtok.model_io import load_model, weights_fingerprint

    console = console or Console(stderr=True)
    model, recipe, info = load_model(model_path, ema=ema)
    spec = model.meta  # the token spec: input size, downsample, codebooks (no family internals)
    trained = int(spec["input_size"][-1])
    res = int(resolution or trained)
    f = int(spec["downsample"])
    if res % f:
        raise MmtokError(f"resolution {res} is not a multiple of the model's downsample factor {f}",
                         hint=f"use a multiple of {f} (the model was trained at {trained})")
    crop = CROP.format(r=res)
    warnings_: list[str] = []
    pixels = bool(spec.get("pixels", True))  # a tokenizer without a pixel decoder (seed) gives no reconstructions
    if not pixels:
        if reference_stats or save_reference_stats:
            raise MmtokError("--reference-stats / --save-reference-stats: this tokenizer has no pixel decoder, so no "
                             "rFID", hint="drop the flag")
        fid_path, fid_why = None, NO_PIXELS
    network = fid_protocol.network_identity(fid_path) if fid_path else None
    ref_meta = None
    if reference_stats:  # fid_path is set: _find_fid refused otherwise
        ref_meta = load_stats_meta(reference_stats)
        warnings_ += fid_protocol.check_reference(reference_stats, ref_meta, data=data, split=SPLIT,
                                                  resolution=res, crop=crop, network=network)
    fid = _make_fid(fid_path, reference_stats)  # before the launch: an unreadable network stops everything
    fingerprint = weights_fingerprint(model, recipe.model.model_dump(mode="json"))

    n_devices = len(devices) if isinstance(devices, list) else devices
    fabric = L.Fabric(accelerator=accel, devices=devices, strategy="ddp" if n_devices > 1 else "auto",
                      precision="32-true")
    fabric.launch()
    L.seed_everything(recipe.seed, verbose=False)
    device = fabric.device
    model = model.to(device)
    is_main = fabric.is_global_zero
    world = fabric.world_size

    unavailable: dict[str, str] = {}
    if fid_path is None:
        unavailable["rfid"] = fid_why
        if is_main and rfid:
            from rich.markup import escape

            console.print(f"[yellow]rFID unavailable[/yellow]: {escape(fid_why)}", soft_wrap=True)
    lpips = {net: _make_lpips(net, res, unavailable) if pixels else None for net in ("vgg", "alex")}
    k, n_books = int(spec["codebook_size"]), int(spec["num_codebooks"])
    # the validation suite (PSNR on 8-bit levels, l2, codebook usage): the same numbers training reports
    metrics = {"suite": ImageMetrics(k, n_books)}
    if not pixels:
        unavailable.update({"psnr": NO_PIXELS, "ssim": NO_PIXELS, "lpips_vgg": NO_PIXELS, "lpips_alex": NO_PIXELS})
        classifier = None
    elif res >= 11:
        metrics["ssim"] = SSIM()
    else:
        unavailable["ssim"] = f"SSIM's 11x11 window needs images of at least 11 px (evaluating at {res} px)"
    if fid is not None:
        metrics["fid"] = fid
    metrics.update({f"lpips_{net}": m for net, m in lpips.items() if m is not None})
    metrics.update(_semantic_metrics(model, classifier, unavailable))
    for m in metrics.values():
        m.to(device)

    loader = make_loader(data, SPLIT, res, batch_size=batch_size, num_workers=num_workers, shuffle_buffer=0,
                         seed=recipe.seed, max_samples=num_samples)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = {"encode": 0.0, "decode": 0.0, "n": 0, "first": None}
    grid_in, grid_out, skipped = [], [], 0
    bar = progress_bar(console, num_samples, world, enabled=progress and is_main)
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
            recon = model.decode(ids) if pixels else None
            sync()
            t2 = time.perf_counter()
            if i == 0:  # warm-up batch: timed apart, used only when it is the only one
                times["first"] = (t1 - t0, t2 - t1, x.shape[0])
            else:
                times["encode"] += t1 - t0
                times["decode"] += t2 - t1
                times["n"] += x.shape[0]
            if pixels:
                recon = to_8bit_levels(recon)  # the one PSNR protocol, shared with validation
                _update(metrics, x, recon, ids, fid_real=reference_stats is None)
            else:
                metrics["suite"].usage.update(ids if n_books == 1 else ids.movedim(-1, 1))
            if "semantic_cosine" in metrics:
                metrics["semantic_cosine"].update(model.teacher_features(x), model.semantic_embedding(ids))
            if pixels and is_main and len(grid_in) * batch_size < GRID_IMAGES:
                grid_in.append(x[:GRID_IMAGES].cpu())
                grid_out.append(recon[:GRID_IMAGES].cpu())
            bar.advance(task, x.shape[0])

    # ---- compute (every rank takes part: the metric states are summed across ranks here)
    usage = metrics["suite"].usage.compute()
    n_total = int(usage["num_samples"])
    counts = metrics["suite"].usage.histogram()  # [codebooks, K]
    results: dict = {}
    results["psnr"] = _value(metrics["suite"].psnr) if pixels else UNAVAILABLE
    if "ssim" in metrics:
        results["ssim"] = _value(metrics["ssim"])
    for net in ("vgg", "alex"):
        key = f"lpips_{net}"
        results[key] = _value(metrics[key]) if key in metrics else UNAVAILABLE
    for key in ("classifier_agreement", "semantic_cosine"):
        if key in metrics or key in unavailable:
            results[key] = _value(metrics[key]) if key in metrics else UNAVAILABLE
    rfid_extra: dict = {}
    if fid is not None:
        try:
            results["rfid"] = float(fid.compute())
        except ValueError as e:  # fewer than 2 images on a side
            results["rfid"], unavailable["rfid"] = UNAVAILABLE, str(e)
        if "rfid" not in unavailable:
            n_fid = min(n_total, int(ref_meta["num_images"])) if ref_meta else n_total
            rfid_extra = {"rfid_num_images": n_fid, "rfid_reliability": fid_protocol.rfid_reliability(n_fid)}
            line = fid_protocol.rfid_warning(n_fid)
            warnings_[:0] = [line] if line else []
            if ref_meta and fid_protocol.count_warning(reference_stats, ref_meta, n_total):
                warnings_.append(fid_protocol.count_warning(reference_stats, ref_meta, n_total))
            if save_reference_stats:
                fid.save_reference_stats(save_reference_stats, meta=fid_protocol.describe(
                    data=data, split=SPLIT, num_images=n_total, resolution=res, crop=crop, network=network))
        elif save_reference_stats:
            warnings_.append(f"--save-reference-stats: nothing written ({unavailable['rfid']})")
    else:
        results["rfid"] = UNAVAILABLE
    results = {"rfid": results.pop("rfid"), **rfid_extra, **results}
    results.update({
        "codebook_usage_pct": float(usage["usage_pct"]), "codebook_used": int(usage["used_codes"]),
        "codebook_size": k, "num_codebooks": n_books, "codebook_perplexity": float(usage["perplexity"]),
        "codebook_entropy_bits": float(usage["entropy_bits"]), "codebook_entropy_max_bits": math.log2(k),
        "tokens_per_sample": float(usage["tokens_per_sample"]),
    })
    results.update(throughput(fabric, times, device))
    skipped = int(fabric.all_reduce(torch.tensor(skipped, device=device), reduce_op="sum"))
    if skipped:
        warnings_.append(f"{skipped} undecodable samples were skipped")
    if num_samples and n_total < num_samples:
        warnings_.append(f"asked for {num_samples} samples, the data held {n_total}")

    result = {
        "mmtok_version": mmtok.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {**info, "family": recipe.model.family, "resolution_trained": trained,
                  "weights_sha256": fingerprint},
        "protocol": {
            "data": data, "split": SPLIT, "crop": crop, "num_samples": n_total, "num_samples_requested": num_samples,
            "skipped_samples": skipped, "resolution": res, "batch_size": batch_size, "devices": world,
            "device": str(device.type), "precision": "fp32", "weights": info["weights"], "seed": recipe.seed,
            "fid_weights": str(fid_path) if fid_path is not None else None, "fid_network": network,
            "fid_features": fid_protocol.FEATURES,
            "reference_stats": reference_stats,
            "reference_source": (ref_meta or {}).get("source"), "psnr_ssim": "images in [0, 1], data_range 1.0",
            "reconstructions": "Reconstructions clamped to [-1, 1] and quantised to 8 bits before every metric",
            "throughput": "samples/s over all devices, first batch excluded as warm-up, encode and decode timed apart",
        },
        "metrics": results,
        "unavailable": unavailable,
        "warnings": warnings_,
    }
    if is_main:
        out_dir = prepare_out(out, model_path, force)
        write_outputs(out_dir, result, counts, grid_in, grid_out, GRID_IMAGES)
        result["out"] = str(out_dir)
    fabric.barrier()
    return result


# ------------------------------------------------------------------------------------------------ helpers


def _find_fid(weights: str | None, *, wanted_by: str | None) -> tuple[Path | None, str]:
    """(the FID network's file, "") or (None, why it is unavailable). A file the caller named that is missing
    or unreadable is an error, and so is an unavailable network when `wanted_by` (a flag that needs rFID)."""
    from mmtok import assets

    try:
        path = assets.get("fid-inception").resolve(weights)
    except AssetError as e:
        if weights or wanted_by is None:
            if weights:
                raise AssetError(f"--fid-weights {weights}: no such file", hint=e.hint) from None
            return None, str(e)
        raise AssetError(f"{wanted_by} needs the FID network, which is not available: {e.message}",
                         hint=e.hint) from None
    return path, ""


def _make_fid(path: Path | None, reference_stats: str | None):
    """The rFID metric on the network at `path` (None: unavailable), with the reference statistics loaded.
    A file that is not a readable TorchScript network is an AssetError naming it."""
    from mmtok.metrics import FrechetInceptionDistance

    if path is None:
        return None
    fid = FrechetInceptionDistance(weights=path)
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
    from mmtok.contract import TokenizerOutput

    a, b = (x.float() + 1) / 2, (recon + 1) / 2
    metrics["suite"].update(x, TokenizerOutput(recon=recon, ids=ids))
    if "ssim" in metrics:
        metrics["ssim"].update(b, a)
    for key in ("lpips_vgg", "lpips_alex"):
        if key in metrics:
            metrics[key].update(b, a)
    if "classifier_agreement" in metrics:
        metrics["classifier_agreement"].update(x, recon)
    if "fid" in metrics:
        if fid_real:
            metrics["fid"].update(x, real=True)
        metrics["fid"].update(recon, real=False)


def _semantic_metrics(model, classifier: str | None, unavailable: dict) -> dict:
    """{"classifier_agreement": ..., "semantic_cosine": ...} for what this model and machine allow; the reason
    for anything asked for but unavailable goes into `unavailable`."""
    from mmtok.metrics.semantic import ClassifierAgreement, SemanticCosine

    out = {}
    if classifier:
        from mmtok.errors import MmtokError
        from mmtok.teachers import load_classifier

        try:
            out["classifier_agreement"] = ClassifierAgreement(load_classifier(classifier))
        except MmtokError as e:  # missing weights (or the package that ships them): the rest still runs
            unavailable["classifier_agreement"] = e.message
    if hasattr(model, "teacher_features") and hasattr(model, "semantic_embedding"):
        out["semantic_cosine"] = SemanticCosine()
    return out


def _value(metric) -> float:
    return float(metric.compute())
