"""`mmtok eval` for audio codecs: one pass over held-out segments, every metric at several numbers of RVQ levels.

Protocol: the "val" split of the data source (mmtok.data.audio_stream: every file decoded, mixed down / resampled
to the model's rate and cut into consecutive non-overlapping segments of the model's segment length, a file
shorter than one segment zero-padded); EMA weights unless told otherwise; ids from one encode with every level,
each reconstruction decoded from the first n levels (n in `levels`, default 1, 2, 4, ... and all) and clamped to
[-1, 1]. Per n: DAC's mel distance (7 scales, windows 32..2048, 5..320 mel bands, log10 of mel magnitudes clamped
at 1e-5) and STFT distance (windows 2048 and 512: log10 power L1 + magnitude L1), SI-SDR (dB, zero-mean), bitrate
n * log2(K) * frame rate. With all levels: wide-band PESQ (at 16 kHz) and STOI when their packages are installed,
on each batch's segments joined end to end (both measures need seconds of speech, a segment is a fraction of one).
Codebook usage, perplexity and entropy of each level over the whole pass on all ranks; encode and decode
throughput (segments/s) timed apart. Results go to a new folder per evaluation (mmtok.evaluation.output):
metrics.json, report.md, spectrogram.png (originals above, all-level reconstructions below), clips/*.wav,
codebook_usage.png, codebook_counts.npy.
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
CLIPS = 4
FILES = {"metrics": "metrics.json", "report": "report.md", "spectrogram": "spectrogram.png", "clips": "clips",
         "usage_plot": "codebook_usage.png", "codebook_counts": "codebook_counts.npy"}


def default_levels(total: int) -> list[int]:
    """1, 2, 4, ... below `total`, and `total`."""
    out, n = [], 1
    while n < total:
        out.append(n)
        n *= 2
    return out + [total]


def check_levels(levels, total: int, bitrates: list[float] | None = None) -> list[int]:
    """`levels` (ints, or None for default_levels) sorted and unique; MmtokError for one outside 1..total."""
    if levels is None:
        return default_levels(total)
    bad = [n for n in levels if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= total]
    if bad or not levels:
        rates = f" ({', '.join(f'{r / 1000:g}' for r in bitrates)} kbps)" if bitrates else ""
        raise MmtokError(f"levels {list(levels)}: this codec has {total} RVQ levels{rates}",
                         hint=f"give numbers of levels from 1 to {total}")
    return sorted(set(levels))


def evaluate(model_path: str | os.PathLike, data: str, *, out: str | os.PathLike | None = None,
             force: bool = False, num_samples: int | None = None, batch_size: int = 16, devices: int = 1,
             accelerator: str = "auto", num_workers: int = 2, ema: bool = True, console=None, progress: bool = True,
             levels: list[int] | None = None, bitrate: float | None = None) -> dict:
    """Evaluate the audio codec at `model_path` (run dir, .ckpt or bundle) on `data` ("demo", a folder of audio or
    shards); `num_samples` caps the segments; `levels` the numbers of RVQ levels measured besides all of
    them (default 1, 2, 4, ...); `bitrate` (kbps) adds the most levels that fit in it (MmtokError when even one level needs more).
    Returns the result dict written to OUT/metrics.json (keys mmtok_version, created, model (with
    weights_sha256), protocol, metrics, unavailable, warnings, files) plus "out". Writes on global rank 0 only."""
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
    from mmtok.evaluation.timing import progress_bar, throughput
    from mmtok.metrics import CodebookUsage
    from mmtok.metrics.audio import AudioDistances, LevelUsage, optional_metrics
    from mmtok.model_io import load_model, weights_fingerprint

    console = console or Console(stderr=True)
    model, recipe, info = load_model(model_path, ema=ema)
    spec, cfg = model.meta, recipe.model
    k, total = int(spec["codebook_size"]), int(spec["num_codebooks"])
    rates = list(spec["bitrate_per_level"])
    chosen = sorted(set(check_levels(levels, total, rates)) | {total})  # all levels: the headline numbers
    if bitrate is not None:
        fits = [i + 1 for i, r in enumerate(rates) if r <= bitrate * 1000 + 1e-6]
        if not fits:
            raise MmtokError(f"--bitrate {bitrate:g} kbps is below this codec's lowest bitrate ({rates[0] / 1000:g} "
                             "kbps with one level)", hint=f"its bitrates: {', '.join(f'{r / 1000:g}' for r in rates)} "
                             "kbps")
        chosen = sorted(set(chosen) | {fits[-1]})
    fingerprint = weights_fingerprint(model, cfg.model_dump(mode="json"))
    n_devices = len(devices) if isinstance(devices, list) else devices
    fabric = L.Fabric(accelerator=accel, devices=devices, strategy="ddp" if n_devices > 1 else "auto",
                      precision="32-true")
    fabric.launch()
    L.seed_everything(recipe.seed, verbose=False)
    device, is_main, world = fabric.device, fabric.is_global_zero, fabric.world_size
    model = model.to(device)
    sr = int(spec["sample_rate"])
    distances = {n: AudioDistances(sr).to(device) for n in chosen}
    per_level = LevelUsage(k, total).to(device)
    usage = CodebookUsage(k, total).to(device)
    extra, unavailable = optional_metrics(sr)
    extra = {name: m.to(device) for name, m in extra.items()}

    loader = make_loader(data, SPLIT, cfg, batch_size=batch_size, num_workers=num_workers, shuffle_buffer=0,
                         seed=recipe.seed, max_samples=num_samples, modality="audio")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = {"encode": 0.0, "decode": 0.0, "n": 0, "first": None}
    kept_x, kept_recon, skipped, bad = [], [], 0, []
    bar = progress_bar(console, num_samples, world, enabled=progress and is_main, unit="segments")
    with bar, torch.no_grad():
        task = bar.add_task("eval", total=math.ceil(num_samples / world) if num_samples else None)
        for i, batch in enumerate(loader):
            x = batch["audio"].to(device)
            skipped += int(batch["skipped"].sum())
            bad += batch.get("bad", [])
            sync()
            t0 = time.perf_counter()
            ids = model.encode(x)
            sync()
            t1 = time.perf_counter()
            recon = model.decode(ids).float().clamp(-1, 1)
            sync()
            t2 = time.perf_counter()
            if i == 0:
                times["first"] = (t1 - t0, t2 - t1, x.shape[0])
            else:
                times["encode"] += t1 - t0
                times["decode"] += t2 - t1
                times["n"] += x.shape[0]
            for n, metric in distances.items():
                metric.update(x, recon if n == total else model.decode(ids[..., :n]).float().clamp(-1, 1))
            per_level.update(ids)
            usage.update(ids.movedim(-1, 1))
            # PESQ and STOI need seconds of speech: each batch's segments joined end to end, per channel
            flat_x, flat_r = x.transpose(0, 1).reshape(x.shape[1], -1), recon.transpose(0, 1).reshape(x.shape[1], -1)
            for metric in extra.values():
                metric.update(flat_r, flat_x)
            if is_main and len(kept_x) * batch_size < CLIPS:
                kept_x.append(x[:CLIPS].cpu())
                kept_recon.append(recon[:CLIPS].cpu())
            bar.advance(task, x.shape[0])

    counted = usage.compute()
    levels_stats = per_level.compute()
    counts = usage.histogram()
    n_total = int(counted["num_samples"])
    by_levels = {}
    for n, metric in distances.items():
        values = metric.compute()
        by_levels[str(n)] = {"kbps": round(rates[n - 1] / 1000, 4), **{key: float(v) for key, v in values.items()}}
    full = by_levels[str(total)]
    metrics = {
        "mel_distance": full["mel_distance"], "stft_distance": full["stft_distance"], "si_sdr": full["si_sdr"],
        "bitrate_kbps": rates[-1] / 1000,
    }
    for name, metric in extra.items():
        value = float(metric.compute())
        metrics[name] = value if math.isfinite(value) else "unavailable"
        if name == "pesq" and int(metric.failed):
            unavailable["pesq_failed_segments"] = f"{int(metric.failed)} segment(s) PESQ could not score (no speech)"
    for name in ("pesq", "stoi"):
        if name in unavailable:
            metrics[name] = "unavailable"
    usage_pct = [round(100 * float(u), 3) for u in levels_stats["usage"]]
    metrics.update({
        "codebook_usage_pct": float(counted["usage_pct"]), "codebook_usage_min_pct": min(usage_pct),
        "codebook_used": int(counted["used_codes"]), "codebook_size": k, "num_codebooks": total,
        "codebook_perplexity": float(counted["perplexity"]), "codebook_entropy_bits": float(counted["entropy_bits"]),
        "codebook_entropy_max_bits": math.log2(k), "tokens_per_sample": float(counted["tokens_per_sample"]),
        "usage_per_level_pct": usage_pct,
        "perplexity_per_level": [round(float(p), 3) for p in levels_stats["perplexity"]],
        "entropy_bits_per_level": [round(float(e), 4) for e in levels_stats["entropy_bits"]],
        "by_levels": by_levels,
    })
    metrics.update(throughput(fabric, times, device))
    skipped = int(fabric.all_reduce(torch.tensor(skipped, device=device), reduce_op="sum"))
    warnings_ = []
    if skipped:
        warnings_.append(f"{skipped} file(s) dropped: " + "; ".join(dict.fromkeys(bad))[:400])
    if num_samples and n_total < num_samples:
        warnings_.append(f"asked for {num_samples} segments, the data held {n_total}")
    seconds = cfg.segment_samples / sr
    result = {
        "mmtok_version": mmtok.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {**info, "family": recipe.model.family, "weights_sha256": fingerprint},
        "protocol": {
            "data": data, "split": SPLIT, "num_samples": n_total, "num_samples_requested": num_samples,
            "skipped_samples": skipped, "sample_rate": sr, "channels": int(spec["channels"]),
            "segment_seconds": seconds, "frame_rate": float(spec["frame_rate"]), "levels": chosen,
            "batch_size": batch_size, "devices": world, "device": str(device.type), "precision": "fp32",
            "weights": info["weights"], "seed": recipe.seed,
            "segments": "every file cut into consecutive non-overlapping segments from its start (a file shorter "
                        "than one segment zero-padded), decoded with soundfile, mixed down and resampled with soxr",
            "distances": "DAC's mel distance (windows 32..2048, 5..320 mel bands, L1 of log10 mel clamped at 1e-5) "
                         "and STFT distance (windows 2048 and 512, L1 of log10 power + L1 of magnitude), per signal, "
                         "averaged; SI-SDR in dB, zero-mean; reconstructions clamped to [-1, 1]",
            "pesq_stoi": "all levels, on each batch's segments joined end to end (both need seconds of speech); "
                         "PESQ wide band after resampling to 16 kHz; STOI at the model's rate",
            "throughput": "segments/s over all devices, first batch excluded as warm-up, encode and decode apart",
        },
        "metrics": metrics,
        "unavailable": unavailable,
        "warnings": warnings_,
    }
    if is_main:
        out_dir = prepare_out(out, model_path, force)
        result["files"] = _write(out_dir, result, counts, kept_x, kept_recon, sr)
        result["out"] = str(out_dir)
    fabric.barrier()
    return result


def _write(out: Path, result: dict, counts, kept_x: list, kept_recon: list, sample_rate: int) -> dict:
    import numpy as np
    import torch

    from mmtok.evaluation.plots import usage_plot
    from mmtok.evaluation.report import write_json
    from mmtok.modalities.audio.samples import spectrogram_picture, write_clips

    files = dict(FILES)
    if kept_x:
        x, recon = torch.cat(kept_x)[:CLIPS], torch.cat(kept_recon)[:CLIPS]
        spectrogram_picture(x, recon, sample_rate, out / files["spectrogram"])
        write_clips(x, recon, sample_rate, out / files["clips"])
    else:
        del files["spectrogram"], files["clips"]
    m = result["metrics"]
    title = (f"codebook usage: {m['codebook_used']}/{counts.numel()} codes of {counts.shape[0]} levels used "
             f"({m['codebook_usage_pct']:.1f}% on average, least-used level {m['codebook_usage_min_pct']:.1f}%)")
    usage_plot(counts.numpy(), out / files["usage_plot"], title=title)
    np.save(out / files["codebook_counts"], counts.numpy().astype(np.int64))
    result["files"] = files
    write_json(out / files["metrics"], result)
    (out / files["report"]).write_text(report_markdown(result))
    return files


def report_markdown(result: dict) -> str:
    """report.md of an audio evaluation: model, protocol, metrics per number of levels, usage per level, pictures."""
    from mmtok.evaluation.report import metric_rows

    model, proto, m = result["model"], result["protocol"], result["metrics"]
    lines = [
        f"# Evaluation of {model.get('recipe_name')} ({model.get('path')})", "",
        f"{proto['num_samples']} segments of {proto['segment_seconds']:g} s at {proto['sample_rate']} Hz of "
        f"`{proto['data']}` ({proto['split']} split), {model['weights']} weights"
        + (f" (step {model['step']})" if model.get("step", -1) >= 0 else "")
        + f", mmtok {result['mmtok_version']}, seed {proto['seed']}, {proto['devices']} device(s) ({proto['device']}).",
        "", "| levels | kbps | mel distance | STFT distance | SI-SDR (dB) |", "|---|---|---|---|---|",
    ]
    for n, row in sorted(m["by_levels"].items(), key=lambda kv: int(kv[0])):
        lines.append(f"| {n} | {row['kbps']:g} | {row['mel_distance']:.4f} | {row['stft_distance']:.4f} | "
                     f"{row['si_sdr']:.2f} |")
    shown = {"mel_distance", "stft_distance", "si_sdr"}
    lines += ["", "| metric (all levels) | value |", "|---|---|"]
    lines += [f"| {label} | {value} |" for label, value in metric_rows({k: v for k, v in m.items() if k not in shown})]
    lines += ["", "Usage per level (%, coarse to fine): " + ", ".join(f"{u:g}" for u in m["usage_per_level_pct"]),
              "", "Perplexity per level: " + ", ".join(f"{p:g}" for p in m["perplexity_per_level"]), ""]
    if result.get("warnings"):
        lines += ["Warnings:", ""] + [f"- {w}" for w in result["warnings"]] + [""]
    if result.get("unavailable"):
        lines += ["Unavailable:", ""] + [f"- **{k}**: {why}" for k, why in result["unavailable"].items()] + [""]
    lines += [f"Segments: {proto['segments']}. Distances: {proto['distances']}. PESQ / STOI: {proto['pesq_stoi']}. "
              f"Throughput: {proto['throughput']}.", ""]
    if model.get("note"):
        lines += [f"Note: {model['note']}", ""]
    files = result.get("files", {})
    if "spectrogram" in files:
        lines += ["## Log-mel spectrograms (originals above, reconstructions with every level below)", "",
                  f"![spectrograms]({files['spectrogram']})", "",
                  f"Clips: `{files['clips']}/clip_K_original.wav` and `clip_K_reconstruction.wav`.", ""]
    lines += ["## Codebook usage (code frequencies of every level, sorted, log scale)", "",
              f"![codebook usage]({files['usage_plot']})", ""]
    return "\n".join(lines)
