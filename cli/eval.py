"""`mmtok eval`: reconstruction metrics, codebook usage and throughput of a trained tokenizer."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

DEFAULT_CLASSIFIER = "efficientnet_lite2"  # the image evaluator's default (mmtok.modalities.image.evaluate)


def eval_command(
    model: Annotated[Path, typer.Argument(help="Run directory, .ckpt file or exported bundle.")],
    data: Annotated[Optional[str], typer.Option(
        "--data", help="Held-out data of the model's modality: 'demo', a folder, shards ('val-{000000..000004}.tar') "
        "or a pipe: URL (default with --probe: the labelled images).")] = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", help="Output folder, absent or empty (default: a new numbered folder RUN/eval/001, 002, ... for a "
        "run, else ./eval-NAME/001, ...).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Write into a non-empty --out, replacing its results.")] = False,
    num_samples: Annotated[Optional[int], typer.Option(
        "--num-samples", min=1, help="Evaluate at most N samples (default: the whole split; the protocol is 50k).")] = None,
    resolution: Annotated[Optional[int], typer.Option(
        "--resolution", min=8, help="Images only: size, shorter side resized to R, centre crop R x R (default: the model's).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Samples per batch and device.")] = 16,
    devices: Annotated[int, typer.Option("--devices", min=1, help="Devices (GPUs, or CPU processes); >1 runs DDP.")] = 1,
    accelerator: Annotated[str, typer.Option("--accelerator", help="auto, cpu or gpu (cuda: the same as gpu).")] = "auto",
    num_workers: Annotated[int, typer.Option("--num-workers", min=0, help="Data loader workers per device.")] = 2,
    fid_weights: Annotated[Optional[Path], typer.Option(
        "--fid-weights", help="Images only: FID Inception-v3 TorchScript file (default: the asset search, see `mmtok doctor`).")] = None,
    reference_stats: Annotated[Optional[Path], typer.Option(
        "--reference-stats", help="Images only: precomputed real-image statistics (.npz/.safetensors) instead of recomputing.")] = None,
    save_reference_stats: Annotated[Optional[Path], typer.Option(
        "--save-reference-stats", help="Images only: save the real images' statistics here for later --reference-stats.")] = None,
    no_ema: Annotated[bool, typer.Option("--no-ema", help="Evaluate the live weights instead of the EMA.")] = False,
    no_rfid: Annotated[bool, typer.Option(
        "--no-rfid", help="Images only: skip rFID (its Inception pass and 2048-d Frechet distance are the slow part on CPU).")] = False,
    classifier: Annotated[str, typer.Option(
        "--classifier", help="Images only: ImageNet classifier for top-1 agreement between originals and reconstructions "
        "(efficientnet_lite2, efficientnet_lite0), or none.")] = DEFAULT_CLASSIFIER,
    levels: Annotated[Optional[str], typer.Option(
        "--levels", help="Audio only: numbers of RVQ levels to measure besides all of them, e.g. 1,2,8 "
        "(default: 1, 2, 4, ... and all).")] = None,
    bitrate: Annotated[Optional[float], typer.Option(
        "--bitrate", help="Audio only: also measure the most RVQ levels that fit in KBPS kilobits per second.")] = None,
    probe: Annotated[Optional[str], typer.Option(
        "--probe", help="Images only: labelled images (a folder of class folders, or shards whose samples carry "
        "'cls'): k-NN and linear-probe top-1 of features from the tokens, beside chance, a 16x16-pixel floor and "
        "the teacher's features (docs/probe.md).")] = None,
):
    """Evaluate a tokenizer on held-out data with its modality's metrics (images: rFID, PSNR, SSIM, LPIPS,
    classifier agreement, semantic cosine; audio and motion: see docs/audio.md and docs/motion.md), codebook usage
    and throughput.

    Writes metrics.json, report.md and pictures into a new folder per evaluation. The rFID, FID, resolution
    and classifier options apply to image tokenizers only; --levels / --bitrate apply to audio codecs (their
    metrics are shown per number of levels). An rFID from fewer than 5,000 images is flagged (below 500: not
    meaningful).
    --probe LABELLED measures how much of an image's class its tokens carry (a probe on features computed from
    the ids only); without --data, the reconstruction metrics are measured on the same labelled images.
    Example: [bold]mmtok eval runs/quickstart --data demo --num-samples 64[/bold]
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from mmtok.evaluation import evaluate
    from mmtok.evaluation.report import metric_rows, timing_line

    err = Console(stderr=True)
    if data is None and probe is None:
        from mmtok.errors import MmtokError

        raise MmtokError("no data to evaluate on", hint="give --data (held-out data) or --probe (labelled images)")
    given = {}  # the modality-only options given: another modality's evaluator refuses them by name
    for key, value in (("resolution", resolution), ("fid_weights", fid_weights), ("reference_stats", reference_stats),
                       ("save_reference_stats", save_reference_stats)):
        if value is not None:
            given[key] = value if key == "resolution" else str(value)
    if no_rfid:
        given["rfid"] = False
    if classifier != DEFAULT_CLASSIFIER:
        given["classifier"] = None if classifier.lower() == "none" else classifier
    if levels is not None:
        given["levels"] = _parse_levels(levels)
    if bitrate is not None:
        given["bitrate"] = bitrate
    if probe is not None:
        given["probe"] = probe
    result = evaluate(
        model, data if data is not None else probe, out=out, force=force, num_samples=num_samples,
        batch_size=batch_size, devices=devices, accelerator=accelerator, num_workers=num_workers, ema=not no_ema,
        console=err, **given,
    )
    if "files" not in result:  # not global rank 0 under DDP: rank 0 prints and writes
        return
    proto = result["protocol"]
    size = f" at {proto['resolution']}px" if "resolution" in proto else ""
    table = Table(title=f"mmtok eval: {result['model']['recipe_name']} ({result['model']['weights']} weights), "
                        f"{proto['num_samples']} samples{size}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    reliability = result["metrics"].get("rfid_reliability", "ok")
    for label, value in metric_rows(result["metrics"]):
        flagged = label == "rFID" and reliability != "ok"
        style = ("bold red" if reliability == "not_meaningful" else "yellow") if flagged else None
        table.add_row(label, value, style=style)
    from mmtok.cli.common import table_console

    console = table_console()
    console.print(table)
    if "by_levels" in result["metrics"]:
        console.print(_levels_table(result["metrics"]["by_levels"]))
    if "by_scales" in result["metrics"]:
        console.print(_scales_table(result["metrics"]["by_scales"]))
    if result.get("probe"):
        console.print(_probe_table(result["probe"]))
    for key, why in result["unavailable"].items():
        console.print(f"[yellow]{key} unavailable[/yellow]: {escape(why)}", soft_wrap=True)
    for line in result["warnings"]:
        console.print(f"[yellow]warning[/yellow]: {escape(line)}", soft_wrap=True)
    if result["model"].get("note"):
        console.print(f"[yellow]note[/yellow]: {escape(result['model']['note'])}", soft_wrap=True)
    if result.get("timing"):
        console.print(f"time: {timing_line(result['timing'])}", soft_wrap=True)
    out_dir = Path(result["out"])
    console.print("results: " + ", ".join(str(out_dir / name) for name in result["files"].values()), soft_wrap=True)


def _parse_levels(text: str) -> list[int]:
    """"1,2,8" -> [1, 2, 8]; MmtokError for anything but comma-separated whole numbers (the evaluator checks the range)."""
    from mmtok.errors import MmtokError

    parts = [p.strip() for p in text.split(",")]
    if not all(p.isascii() and p.isdigit() for p in parts):
        raise MmtokError(f"--levels {text}: not a comma-separated list of whole numbers", hint="e.g. --levels 1,2,8")
    return [int(p) for p in parts]


def _probe_table(block: dict):
    """The probe's feature sets (metrics.json["probe"]) as a rich table."""
    from rich.table import Table

    from mmtok.evaluation.report import probe_rows

    table = Table(title=f"probe: {block['images']} images, {len(block['classes'])} classes, {block['folds']}-fold "
                        f"cross-validation, {block['bits_per_image']:.0f} bits per image")
    for name in ("features", "dims", "k-NN top-1", "linear top-1"):
        table.add_column(name, justify="left" if name == "features" else "right")
    for row in probe_rows(block):
        table.add_row(*row)
    return table


def _levels_table(by_levels: dict):
    """An audio codec's metrics per number of RVQ levels (metrics["by_levels"]: {"n": {kbps, mel_distance, ...}})."""
    from rich.table import Table

    table = Table(title="per number of RVQ levels")
    for name in ("levels", "kbps", "mel distance", "STFT distance", "SI-SDR (dB)"):
        table.add_column(name, justify="right")
    for n, row in sorted(by_levels.items(), key=lambda kv: int(kv[0])):
        table.add_row(n, f"{row['kbps']:g}", f"{row['mel_distance']:.4f}", f"{row['stft_distance']:.4f}",
                      f"{row['si_sdr']:.2f}")
    return table


def _scales_table(by_scales: dict):
    """A multi-scale image tokenizer's metrics when decoding from its first scales (metrics["by_scales"])."""
    from rich.table import Table

    from mmtok.modalities.image.scales import SCALE_COLUMNS, scale_cells

    table = Table(title="decoding from the first scales (coarse to fine)")
    for name in SCALE_COLUMNS:
        table.add_column(name, justify="right")
    for side, r in by_scales.items():
        table.add_row(*scale_cells(side, r))
    return table
