"""`mmtok eval`: reconstruction metrics, codebook usage and throughput of a trained tokenizer."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated


def eval_command(
    model: Annotated[Path, typer.Argument(help="Run directory, .ckpt file or exported bundle.")],
    data: Annotated[str, typer.Option(
        "--data", help="Held-out images: 'demo', a folder, shards ('val-{000000..000004}.tar') or a pipe: URL.")],
    out: Annotated[Optional[Path], typer.Option(
        "--out", help="Output folder, absent or empty (default: a new numbered folder RUN/eval/001, 002, ... for a "
        "run, else ./eval-NAME/001, ...).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Write into a non-empty --out, replacing its results.")] = False,
    num_samples: Annotated[Optional[int], typer.Option(
        "--num-samples", min=1, help="Evaluate at most N images (default: the whole split; the protocol is 50k).")] = None,
    resolution: Annotated[Optional[int], typer.Option(
        "--resolution", min=8, help="Image size: shorter side resized to R, centre crop R x R (default: the model's).")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per batch and device.")] = 16,
    devices: Annotated[int, typer.Option("--devices", min=1, help="Devices (GPUs, or CPU processes); >1 runs DDP.")] = 1,
    accelerator: Annotated[str, typer.Option("--accelerator", help="auto, cpu or gpu (cuda: the same as gpu).")] = "auto",
    num_workers: Annotated[int, typer.Option("--num-workers", min=0, help="Data loader workers per device.")] = 2,
    fid_weights: Annotated[Optional[Path], typer.Option(
        "--fid-weights", help="FID Inception-v3 TorchScript file (default: the asset search, see `mmtok doctor`).")] = None,
    reference_stats: Annotated[Optional[Path], typer.Option(
        "--reference-stats", help="Precomputed real-image statistics (.npz/.safetensors) instead of recomputing.")] = None,
    save_reference_stats: Annotated[Optional[Path], typer.Option(
        "--save-reference-stats", help="Save the real images' statistics here for later --reference-stats.")] = None,
    no_ema: Annotated[bool, typer.Option("--no-ema", help="Evaluate the live weights instead of the EMA.")] = False,
    no_rfid: Annotated[bool, typer.Option(
        "--no-rfid", help="Skip rFID (its Inception pass and 2048-d Frechet distance are the slow part on CPU).")] = False,
    classifier: Annotated[str, typer.Option(
        "--classifier", help="ImageNet classifier for top-1 agreement between originals and reconstructions "
        "(efficientnet_lite2, efficientnet_lite0), or none.")] = "efficientnet_lite2",
):
    """Evaluate a tokenizer: rFID, PSNR, SSIM, LPIPS, classifier agreement, semantic cosine, usage, throughput.

    Writes metrics.json, report.md, reconstructions.png and codebook_usage.png into a new folder per
    evaluation. An rFID from fewer than 5,000 images is flagged (below 500: not meaningful).
    Example: [bold]mmtok eval runs/quickstart --data demo --num-samples 64[/bold]
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from mmtok.evaluation import evaluate
    from mmtok.evaluation.report import metric_rows

    err = Console(stderr=True)
    result = evaluate(
        model, data, out=out, force=force, num_samples=num_samples, resolution=resolution, batch_size=batch_size,
        devices=devices, accelerator=accelerator, num_workers=num_workers, ema=not no_ema,
        fid_weights=str(fid_weights) if fid_weights else None,
        reference_stats=str(reference_stats) if reference_stats else None,
        save_reference_stats=str(save_reference_stats) if save_reference_stats else None, rfid=not no_rfid,
        classifier=None if classifier.lower() == "none" else classifier, console=err,
    )
    if "files" not in result:  # not global rank 0 under DDP: rank 0 prints and writes
        return
    proto = result["protocol"]
    table = Table(title=f"mmtok eval: {result['model']['recipe_name']} ({result['model']['weights']} weights), "
                        f"{proto['num_samples']} images at {proto['resolution']}px")
    table.add_column("metric")
    table.add_column("value", justify="right")
    reliability = result["metrics"].get("rfid_reliability", "ok")
    for label, value in metric_rows(result["metrics"]):
        flagged = label == "rFID" and reliability != "ok"
        style = ("bold red" if reliability == "not_meaningful" else "yellow") if flagged else None
        table.add_row(label, value, style=style)
    console = Console()
    console.print(table)
    for key, why in result["unavailable"].items():
        console.print(f"[yellow]{key} unavailable[/yellow]: {escape(why)}", soft_wrap=True)
    for line in result["warnings"]:
        console.print(f"[yellow]warning[/yellow]: {escape(line)}", soft_wrap=True)
    if result["model"].get("note"):
        console.print(f"[yellow]note[/yellow]: {escape(result['model']['note'])}", soft_wrap=True)
    out_dir = Path(result["out"])
    console.print(f"results: {out_dir / 'metrics.json'}, {out_dir / 'report.md'}, "
                  f"{out_dir / 'reconstructions.png'}, {out_dir / 'codebook_usage.png'}", soft_wrap=True)
