"""The one evaluation loop of `mmtok eval`, for every modality.

`run(model_path, data, make_pass, ...)` loads the model (run dir, .ckpt or bundle; EMA weights unless told
otherwise), starts the devices (Lightning Fabric, fp32, DDP over `devices`), streams the "val" split of `data`
through the model's modality's data sources, encodes and decodes every batch with the two timed apart (the first
batch is a warm-up, used only when it is the only one), counts every codebook's codes over all ranks and writes one
numbered folder (mmtok.evaluation.output): metrics.json, report.md, codebook_usage.png, codebook_counts.npy and the
modality's pictures.

What is modality-specific comes from an `EvalPass` that the modality's `evaluate` makes (`make_pass(model,
recipe)`, called after the model is loaded and before any process starts, so its checks stop before any work):
its metric suite, its protocol keys, its pictures and its report.md.
"""
from __future__ import annotations

import math
import os
import time
from abc import ABC, abstractmethod
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from mmtok.errors import MmtokError
from mmtok.evaluation.output import check_out, prepare_out

SPLIT = "val"


class EvalPass(ABC):
    """A modality's part of one evaluation pass. Attributes it may fill: `warnings` (lines for the report, in
    order) and `unavailable` ({metric: why it was not measured})."""

    unit = "samples"  # what one sample is, on the progress bar and in messages ("images", "segments", ...)

    def __init__(self, model, recipe):
        self.model, self.recipe = model, recipe
        self.spec = model.spec
        self.warnings: list[str] = []
        self.unavailable: dict[str, str] = {}
        self.seconds: dict[str, float] = {}  # where the pass spent its time (see `timed`, the harness's "timing")
        self.sync = lambda: None  # the harness sets the device's synchronise (CUDA) before the pass starts

    @contextmanager
    def timed(self, name: str):
        """Add the seconds of the block to `seconds[name]` (device work finished at both ends): a pass times each
        metric it updates, so metrics.json says where an evaluation spends its time."""
        self.sync()
        start = time.perf_counter()
        try:
            yield
        finally:
            self.sync()
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    @property
    def data_spec(self):
        """What the data sources get as `spec` (mmtok.data.sources.build_dataset): the recipe's model section."""
        return self.recipe.model

    def model_info(self) -> dict:
        """Keys added to metrics.json["model"]."""
        return {}

    @abstractmethod
    def setup(self, device, *, console, is_main: bool, world: int) -> None:
        """Make the metric suite on `device` (after the processes started)."""

    @abstractmethod
    def decode(self, ids):
        """The model's reconstruction of `ids` (timed as decode), or None when it has none."""

    @abstractmethod
    def update(self, batch: dict, x, ids, recon) -> None:
        """One batch (x on the device); keep what the pictures need on rank 0."""

    @abstractmethod
    def metrics(self, num_samples: int) -> dict:
        """The modality's metrics over the pass (every rank calls it: metric states are summed here)."""

    @abstractmethod
    def protocol(self) -> dict:
        """Keys added to metrics.json["protocol"]: how the numbers were measured."""

    def extra(self) -> dict:
        """Top-level keys added to metrics.json after "metrics" (e.g. per-clip numbers)."""
        return {}

    def usage_title(self, metrics: dict, counts) -> str:
        """The codebook usage plot's title ("" for the default)."""
        if counts.shape[0] == 1:
            return ""
        return (f"codebook usage: {metrics['codebook_used']}/{counts.numel()} codes of {counts.shape[0]} codebooks "
                f"used ({metrics['codebook_usage_pct']:.1f}% on average)")

    @abstractmethod
    def write(self, out: Path, result: dict) -> dict[str, str]:
        """Write the pictures into `out` (rank 0); {role: file name} of what was written."""

    @abstractmethod
    def report(self, result: dict) -> str:
        """report.md."""


def check_settings(batch_size: int, devices: int, num_samples: int | None) -> None:
    if batch_size < 1 or devices < 1 or (num_samples is not None and num_samples < 1):
        raise MmtokError(f"bad settings: batch_size={batch_size}, devices={devices}, num_samples={num_samples}",
                         hint="all must be >= 1")


def run(model_path: str | os.PathLike, data: str, make_pass: Callable, *, out: str | os.PathLike | None = None,
        force: bool = False, num_samples: int | None = None, batch_size: int = 16, devices: int = 1,
        accelerator: str = "auto", num_workers: int = 2, ema: bool = True, console=None,
        progress: bool = True) -> dict:
    """Evaluate the tokenizer at `model_path` on `data` with the pass `make_pass(model, recipe)` gives.

    Returns the result dict also written to OUT/metrics.json (keys: mmtok_version, created, model (with
    weights_sha256, the identity `mmtok export` matches), protocol, metrics, the pass's extra keys, unavailable,
    warnings, files) plus "out", the folder written (not in the file). OUT is `out` (absent or empty unless
    `force`) or a new numbered folder under the model's eval/ (see mmtok.evaluation.output). Files are written on
    global rank 0. `console` is a rich Console for progress and warnings (None: a new one on stderr)."""
    check_settings(batch_size, devices, num_samples)
    from mmtok import hardware  # a GPU asked for on a CPU machine is one line here, before any work

    accel, devices = hardware.resolve(accelerator, devices, "ddp" if devices > 1 else "auto")
    check_out(out, force)

    import lightning as L
    import torch
    from rich.console import Console

    import mmtok
    from mmtok.data import make_loader
    from mmtok.evaluation.timing import progress_bar, throughput
    from mmtok.metrics import CodebookUsage
    from mmtok.model_io import load_model, weights_fingerprint

    console = console or Console(stderr=True)
    model, recipe, info = load_model(model_path, ema=ema)
    ev = make_pass(model, recipe)
    spec = ev.spec
    fingerprint = weights_fingerprint(model, recipe.model.model_dump(mode="json"))

    n_devices = len(devices) if isinstance(devices, list) else devices
    fabric = L.Fabric(accelerator=accel, devices=devices, strategy="ddp" if n_devices > 1 else "auto",
                      precision="32-true")
    fabric.launch()
    L.seed_everything(recipe.seed, verbose=False)
    device, is_main, world = fabric.device, fabric.is_global_zero, fabric.world_size
    ev.model = model = model.to(device)
    ev.setup(device, console=console, is_main=is_main, world=world)
    usage = CodebookUsage(spec.codebook_size, spec.num_codebooks).to(device)

    loader = make_loader(data, SPLIT, ev.data_spec, batch_size=batch_size, num_workers=num_workers,
                         shuffle_buffer=0, seed=recipe.seed, max_samples=num_samples, modality=spec.modality)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    ev.sync = sync
    times = {"encode": 0.0, "decode": 0.0, "n": 0, "first": None}
    skipped, bad = 0, []
    total = _pass_size(loader.dataset, num_samples)
    bar = progress_bar(console, total, world, enabled=progress and is_main, unit=ev.unit)
    started = time.perf_counter()
    with bar, torch.no_grad():
        task = bar.add_task("eval", total=math.ceil(total / world) if total else None)
        waited = time.perf_counter()
        for i, batch in enumerate(loader):
            ev.seconds["data"] = ev.seconds.get("data", 0.0) + time.perf_counter() - waited
            x = batch[spec.modality].to(device, non_blocking=True)
            skipped += int(batch["skipped"].sum())
            bad += batch.get("bad", [])
            sync()
            t0 = time.perf_counter()
            ids = model.encode(x)
            sync()
            t1 = time.perf_counter()
            recon = ev.decode(ids)
            sync()
            t2 = time.perf_counter()
            if i == 0:  # warm-up batch: timed apart, used only when it is the only one
                times["first"] = (t1 - t0, t2 - t1, x.shape[0])
            else:
                times["encode"] += t1 - t0
                times["decode"] += t2 - t1
                times["n"] += x.shape[0]
            ev.seconds["encode"] = ev.seconds.get("encode", 0.0) + t1 - t0
            ev.seconds["decode"] = ev.seconds.get("decode", 0.0) + t2 - t1
            usage.update(ids.movedim(-1, 1) if spec.levels else ids)
            with ev.timed("metrics"):
                ev.update(batch, x, ids, recon)
            bar.advance(task, x.shape[0])
            waited = time.perf_counter()

    # ---- compute (every rank takes part: the metric states are summed across ranks here)
    counted = usage.compute()
    counts = usage.histogram()  # [codebooks, K]
    n_total = int(counted["num_samples"])
    k = spec.codebook_size
    with ev.timed("compute"):
        metrics = ev.metrics(n_total)
    metrics.update({
        "codebook_usage_pct": float(counted["usage_pct"]), "codebook_used": int(counted["used_codes"]),
        "codebook_size": k, "num_codebooks": spec.num_codebooks, "codebook_perplexity": float(counted["perplexity"]),
        "codebook_entropy_bits": float(counted["entropy_bits"]), "codebook_entropy_max_bits": math.log2(k),
        "tokens_per_sample": float(counted["tokens_per_sample"]),
    })
    metrics.update(throughput(fabric, times, device))
    skipped = int(fabric.all_reduce(torch.tensor(skipped, device=device), reduce_op="sum"))
    warnings_ = list(ev.warnings)
    if skipped:
        named = "; ".join(dict.fromkeys(bad))[:400]
        warnings_.append(f"{skipped} undecodable sample(s) dropped" + (f": {named}" if named else ""))
    if num_samples and n_total < num_samples:
        warnings_.append(f"asked for {num_samples} {ev.unit}, the data held {n_total}")

    result = {
        "mmtok_version": mmtok.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {**info, "family": recipe.model.family, **ev.model_info(), "weights_sha256": fingerprint},
        "protocol": {
            "data": data, "split": SPLIT, "num_samples": n_total, "num_samples_requested": num_samples,
            "skipped_samples": skipped, **ev.protocol(), "batch_size": batch_size, "devices": world,
            "device": str(device.type), "precision": "fp32", "weights": info["weights"], "seed": recipe.seed,
            "throughput": f"{ev.unit}/s over all devices, first batch excluded as warm-up, encode and decode timed "
                          "apart",
        },
        "metrics": metrics,
        "timing": timing(ev.seconds, time.perf_counter() - started, n_total),
        **ev.extra(),
        "unavailable": ev.unavailable,
        "warnings": warnings_,
    }
    if is_main:
        out_dir = prepare_out(out, model_path, force)
        _write(out_dir, result, counts, ev)  # sets result["files"]
        result["out"] = str(out_dir)
    fabric.barrier()
    return result


def timing(seconds: dict[str, float], total: float, num_samples: int) -> dict:
    """metrics.json["timing"] (rank 0's clock): seconds per part of the pass, the pass's total from the first batch
    asked for to the metrics computed (data: waiting for the loader; encode, decode: the model; metrics: updating
    every metric, with the pass's own parts "metrics/NAME" inside it; compute: the metrics' final values)."""
    parts = {k: round(v, 2) for k, v in seconds.items()}
    inside = sum(v for k, v in seconds.items() if k.startswith("metrics/"))
    if inside and "metrics" in seconds:
        parts["metrics/other"] = round(max(seconds["metrics"] - inside, 0.0), 2)
    return {"total_s": round(total, 2), "samples": num_samples, "seconds": parts}


def _pass_size(dataset, num_samples: int | None) -> int | None:
    """The samples this pass will read: the source's own count when it knows it (a folder, the demo, counted
    held-out shards), capped by num_samples; else num_samples (None: unknown until read)."""
    known = dataset.pass_size() if hasattr(dataset, "pass_size") else None
    return known if known is not None else num_samples


def _write(out: Path, result: dict, counts, ev: EvalPass) -> dict[str, str]:
    """metrics.json, report.md, the pass's pictures, the usage plot and the code counts, into `out`."""
    import numpy as np

    from mmtok.evaluation.plots import usage_plot
    from mmtok.files import write_json

    files = {"metrics": "metrics.json", "report": "report.md", **ev.write(out, result),
             "usage_plot": "codebook_usage.png", "codebook_counts": "codebook_counts.npy"}
    usage_plot(counts.numpy(), out / files["usage_plot"], title=ev.usage_title(result["metrics"], counts))
    kept = counts if counts.shape[0] > 1 or ev.spec.levels else counts[0]  # [levels, K] for residual layouts
    np.save(out / files["codebook_counts"], kept.numpy().astype(np.int64))
    result["files"] = files
    write_json(out / files["metrics"], result)
    (out / files["report"]).write_text(ev.report(result))
    return files
