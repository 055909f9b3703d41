"""`mmtok export`: a trained tokenizer as a bundle for a model team."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated


def export_command(
    model: Annotated[Path, typer.Argument(help="Run directory, .ckpt file or bundle.")],
    out_dir: Annotated[Path, typer.Argument(help="Bundle directory to create.")],
    graphs: Annotated[bool, typer.Option(
        "--graphs", help="Also write encoder.pt2 / decoder.pt2 (torch.export, dynamic batch), checked against eager.")] = False,
    onnx: Annotated[bool, typer.Option(
        "--onnx", help="Also write encoder.onnx / decoder.onnx (fp32; needs pip install onnx onnxscript).")] = False,
    no_ema: Annotated[bool, typer.Option("--no-ema", help="Export the live weights instead of the EMA.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing non-empty OUT_DIR.")] = False,
    eval_path: Annotated[Optional[Path], typer.Option(
        "--eval", help="The evaluation to embed as eval.json: a metrics.json from `mmtok eval` or its folder; it must "
        "have measured these weights (default: the newest evaluation of these weights, if any).")] = None,
):
    """Export a bundle: config.json, model.safetensors, tokenizer.json, README.md, eval.json, checksums.json.

    Load it with [bold]mmtok.load(OUT_DIR)[/bold], or use [bold]mmtok encode / decode[/bold].
    Example: [bold]mmtok export runs/quickstart bundles/quickstart --graphs[/bold]
    """
    from rich.console import Console
    from rich.markup import escape

    from mmtok.export.bundle import export_bundle

    console = Console()
    report = export_bundle(model, out_dir, ema=not no_ema, graphs=graphs, onnx=onnx, force=force, eval_path=eval_path)
    info = report["info"]
    console.print(f"[green]exported[/green] {info['recipe_name']} (step {info['step']}, {info['weights']} weights) "
                  f"-> {report['out']}")
    if report["eval"]:
        console.print(f"embedded evaluation: {escape(report['eval'])}", soft_wrap=True)
    for name in report["files"]:
        console.print(f"  {name}")
    console.print("  checksums.json")
    for note in report["notes"]:
        console.print(f"[yellow]note[/yellow]: {escape(note)}", soft_wrap=True)
