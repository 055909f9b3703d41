"""`mmtok eval` for motion tokenizers: one pass over held-out windows with MPJPE, PA-MPJPE, acceleration error,
codebook usage and perplexity, stick-figure strips and an animation.

Protocol: the "val" split of the data source (mmtok.data.motion: every clip cut into consecutive non-overlapping
windows of the model's window length, at its fps, in its feature layout); EMA weights unless told otherwise;
raw features in, raw features out (the model applies its own Mean/Std); joint positions recovered from the
original and the reconstructed features alike (HumanML3D's recover_from_ric: each window starts at the origin,
facing +Z); MPJPE root-aligned, PA-MPJPE after a per-frame similarity Procrustes alignment, acceleration error
in mm per frame^2 at the model's fps (MotionGPT's MRMetrics); codebook statistics over the whole pass on all
ranks; encode and decode throughput timed apart (windows/s). Results go to a new folder per evaluation
(mmtok.evaluation.output): metrics.json, report.md, strips.png, animation.gif, codebook_usage.png,
codebook_counts.npy.
"""
from __future__ import annotations

import math
import os
import time
from datetime import datetime, timezone
from pathlib import Path

from mmtok.errors import MmtokError
from mmtok.evaluation.output import check_out, prepare_out

SPLIT = "val"
STRIP_WINDOWS = 4
FILES = {"metrics": "metrics.json", "report": "report.md", "strips": "strips.png", "animation": "animation.gif",
         "usage_plot": "codebook_usage.png", "codebook_counts": "codebook_counts.npy"}


def evaluate_motion(model_path: str | os.PathLike, data: str, *, out: str | os.PathLike | None = None,
                    force: bool = False, num_samples: int | None = None, batch_size: int = 16, devices: int = 1,
                    accelerator: str = "auto", num_workers: int = 2, ema: bool = True, console=None,
                    progress: bool = True) -> dict:
    """Evaluate the motion tokenizer at `model_path` (run dir, .ckpt or bundle) on `data` ("demo" or a folder of
    clips); `num_samples` caps the windows. Returns the result dict written to OUT/metrics.json (keys
    mmtok_version, created, model (with weights_sha256), protocol, metrics, per_clip, unavailable, warnings,
    files) plus "out". Writes on global rank 0 only."""
    if batch_size < 1 or devices < 1 or (num_samples is not None and num_samples < 1):
        raise MmtokError(f"bad settings: batch_size={batch_size}, devices={devices}, num_samples={num_samples}",
                         hint="all must be >= 1")
    from mmtok import hardware

    accel, devices = hardware.resolve(accelerator, devices, "ddp" if devices > 1 else "auto")
    check_out(out, force)

    import lightning as L
    import torch
    from rich.console import Console

    import mmtok
    from mmtok.data import make_loader
    from mmtok.contract import TokenizerOutput
    from mmtok.model_io import load_model, weights_fingerprint
    from mmtok.modalities.motion.objective import MotionMetrics
    from mmtok.evaluation.timing import progress_bar, throughput

    console = console or Console(stderr=True)
    model, recipe, info = load_model(model_path, ema=ema)
    spec = model.meta
    fingerprint = weights_fingerprint(model, recipe.model.model_dump(mode="json"))
    n_devices = len(devices) if isinstance(devices, list) else devices
    fabric = L.Fabric(accelerator=accel, devices=devices, strategy="ddp" if n_devices > 1 else "auto",
                      precision="32-true")
    fabric.launch()
    L.seed_everything(recipe.seed, verbose=False)
    device, is_main, world = fabric.device, fabric.is_global_zero, fabric.world_size
    model = model.to(device)
    k, n_books = int(spec["codebook_size"]), int(spec["num_codebooks"])
    suite = MotionMetrics(model.layout, k, n_books).to(device)

    loader = make_loader(data, SPLIT, recipe.model, batch_size=batch_size, num_workers=num_workers,
                         shuffle_buffer=0, seed=recipe.seed, max_samples=num_samples, modality="motion")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = {"encode": 0.0, "decode": 0.0, "n": 0, "first": None}
    kept: list[tuple[str, int, torch.Tensor, torch.Tensor]] = []  # (clip, start, x, recon) on rank 0, for pictures
    per_clip: dict[str, list[float]] = {}
    skipped, bad = 0, []
    bar = progress_bar(console, num_samples, world, enabled=progress and is_main, unit="windows")
    from mmtok.metrics.motion import mpjpe as mpjpe_fn
    from mmtok.modalities.motion.recover import recover_joints

    with bar, torch.no_grad():
        task = bar.add_task("eval", total=math.ceil(num_samples / world) if num_samples else None)
        for i, batch in enumerate(loader):
            x = batch["motion"].to(device)
            skipped += int(batch["skipped"].sum())
            bad += batch.get("bad", [])
            sync()
            t0 = time.perf_counter()
            ids = model.encode(x)
            sync()
            t1 = time.perf_counter()
            recon = model.decode(ids).float()
            sync()
            t2 = time.perf_counter()
            if i == 0:
                times["first"] = (t1 - t0, t2 - t1, x.shape[0])
            else:
                times["encode"] += t1 - t0
                times["decode"] += t2 - t1
                times["n"] += x.shape[0]
            suite.update(x, TokenizerOutput(recon=recon, ids=ids))
            errs = mpjpe_fn(recover_joints(recon, model.layout), recover_joints(x, model.layout)).mean(-1)
            for clip, err in zip(batch["clip"], errs.tolist()):
                per_clip.setdefault(clip, []).append(err)
            if is_main:
                kept += [(c, s, a.cpu(), b.cpu()) for c, s, a, b in zip(batch["clip"], batch["start"], x, recon)]
            bar.advance(task, x.shape[0])

    values = suite.compute()
    usage = suite.usage.compute()
    counts = suite.usage.histogram()
    n_total = int(usage["num_samples"])
    metrics = {
        "mpjpe_mm": float(values["mpjpe"]), "pa_mpjpe_mm": float(values["pa_mpjpe"]),
        "accel_error_mm": float(values["accel"]),
        "codebook_usage_pct": float(usage["usage_pct"]), "codebook_used": int(usage["used_codes"]),
        "codebook_size": k, "num_codebooks": n_books, "codebook_perplexity": float(usage["perplexity"]),
        "codebook_entropy_bits": float(usage["entropy_bits"]), "codebook_entropy_max_bits": math.log2(k),
        "tokens_per_sample": float(usage["tokens_per_sample"]),
    }
    metrics.update(throughput(fabric, times, device))
    skipped = int(fabric.all_reduce(torch.tensor(skipped, device=device), reduce_op="sum"))
    warnings_ = []
    if skipped:
        warnings_.append(f"{skipped} clip(s) dropped: " + "; ".join(dict.fromkeys(bad))[:400])
    if num_samples and n_total < num_samples:
        warnings_.append(f"asked for {num_samples} windows, the data held {n_total}")
    if world > 1:
        warnings_.append("per_clip MPJPE covers rank 0's windows only")
    window = int(recipe.model.window)
    result = {
        "mmtok_version": mmtok.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {**info, "family": recipe.model.family, "weights_sha256": fingerprint},
        "protocol": {
            "data": data, "split": SPLIT, "num_samples": n_total, "num_samples_requested": num_samples,
            "skipped_samples": skipped, "window": window, "fps": float(recipe.model.fps),
            "features": spec["features"], "feature_dim": spec["feature_dim"], "batch_size": batch_size,
            "devices": world, "device": str(device.type), "precision": "fp32", "weights": info["weights"],
            "seed": recipe.seed,
            "windows": "every clip cut into consecutive non-overlapping windows from its first frame",
            "joints": "recovered from raw features (HumanML3D recover_from_ric); each window starts at the origin",
            "mpjpe": "root-aligned mean joint error, mm; PA-MPJPE after per-frame similarity Procrustes; "
                     "acceleration error in mm per frame^2 (MotionGPT MRMetrics)",
            "throughput": "windows/s over all devices, first batch excluded as warm-up, encode and decode apart",
        },
        "metrics": metrics,
        "per_clip": {c: {"windows": len(v), "mpjpe_mm": sum(v) / len(v)} for c, v in sorted(per_clip.items())},
        "unavailable": {},
        "warnings": warnings_,
    }
    if is_main:
        out_dir = prepare_out(out, model_path, force)
        result["files"] = _write(out_dir, result, counts, kept, model.layout, float(recipe.model.fps))
        result["out"] = str(out_dir)
    fabric.barrier()
    return result


def _write(out: Path, result: dict, counts, kept: list, layout, fps: float) -> dict:
    import numpy as np
    import torch

    from mmtok.evaluation.plots import usage_plot
    from mmtok.evaluation.report import write_json
    from mmtok.modalities.motion.plots import save_animation, save_strips
    from mmtok.modalities.motion.recover import recover_joints

    files = dict(FILES)
    if kept:
        picks = kept[:STRIP_WINDOWS]
        save_strips(recover_joints(torch.stack([p[2] for p in picks]), layout),
                    recover_joints(torch.stack([p[3] for p in picks]), layout), layout, out / files["strips"],
                    fps=fps, labels=[f"{c} @{s / fps:.1f}s" for c, s, _, _ in picks])
        first = kept[0][0]
        clip = [p for p in kept if p[0] == first]  # consecutive windows of the first clip: one continuous motion
        x = torch.cat([p[2] for p in clip])
        recon = torch.cat([p[3] for p in clip])
        save_animation(recover_joints(x, layout), recover_joints(recon, layout), layout, out / files["animation"],
                       fps=fps, title=first)
    else:
        del files["strips"], files["animation"]
    m = result["metrics"]
    title = (f"codebook usage: {m['codebook_used']}/{counts.numel()} codes of {counts.shape[0]} codebooks used "
             f"({m['codebook_usage_pct']:.1f}% on average)") if counts.shape[0] > 1 else ""
    usage_plot(counts.numpy(), out / files["usage_plot"], title=title)
    np.save(out / files["codebook_counts"], (counts[0] if counts.shape[0] == 1 else counts).numpy().astype(np.int64))
    result["files"] = files
    write_json(out / files["metrics"], result)
    (out / files["report"]).write_text(report_markdown(result))
    return files


def report_markdown(result: dict) -> str:
    """report.md of a motion evaluation: model, protocol, metrics, per-clip MPJPE, pictures."""
    from mmtok.evaluation.report import metric_rows

    model, proto, m = result["model"], result["protocol"], result["metrics"]
    labels = {"mpjpe_mm": "MPJPE (mm, root-aligned)", "pa_mpjpe_mm": "PA-MPJPE (mm)",
              "accel_error_mm": "acceleration error (mm/frame^2)"}
    rows = [(labels[k], f"{m[k]:.1f}") for k in labels if k in m]
    rows += [(label, value) for label, value in metric_rows({k: v for k, v in m.items() if k not in labels})]
    lines = [
        f"# Evaluation of {model.get('recipe_name')} ({model.get('path')})", "",
        f"{proto['num_samples']} windows of {proto['window']} frames at {proto['fps']:g} fps of `{proto['data']}` "
        f"({proto['split']} split, {proto['features']} features), {model['weights']} weights"
        + (f" (step {model['step']})" if model.get("step", -1) >= 0 else "")
        + f", mmtok {result['mmtok_version']}, seed {proto['seed']}, {proto['devices']} device(s) ({proto['device']}).",
        "", "| metric | value |", "|---|---|",
    ]
    lines += [f"| {label} | {value} |" for label, value in rows]
    lines.append("")
    if result.get("per_clip"):
        lines += ["| clip | windows | MPJPE (mm) |", "|---|---|---|"]
        lines += [f"| {c} | {v['windows']} | {v['mpjpe_mm']:.1f} |" for c, v in result["per_clip"].items()]
        lines.append("")
    if result.get("warnings"):
        lines += ["Warnings:", ""] + [f"- {w}" for w in result["warnings"]] + [""]
    lines += [f"Joints: {proto['joints']}. MPJPE: {proto['mpjpe']}. Throughput: {proto['throughput']}.", ""]
    if model.get("note"):
        lines += [f"Note: {model['note']}", ""]
    files = result.get("files", {})
    if "strips" in files:
        lines += ["## Stick figures (each window: original above, reconstruction below)", "",
                  f"![strips]({files['strips']})", "", f"Animation of the first clip: [{files['animation']}]"
                  f"({files['animation']})", ""]
    lines += ["## Codebook usage (code frequencies, sorted, log scale)", "", f"![codebook usage]({files['usage_plot']})", ""]
    return "\n".join(lines)
