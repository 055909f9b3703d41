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
    fmt: Annotated[str, typer.Option(
        "--format", help="mmtok: a bundle (mmtok.load, mmtok encode / decode, mmtok lm). hf: a folder transformers "
        "loads with its own class (LlamaGen-architecture VQGANs as JanusVQVAE, DAC / EnCodec codecs as DacModel / "
        "EncodecModel), checked against mmtok.")] = "mmtok",
    eval_path: Annotated[Optional[Path], typer.Option(
        "--eval", help="The evaluation to embed as eval.json: a metrics.json from `mmtok eval` or its folder; it must "
        "have measured these weights (default: the newest evaluation of these weights, if any).")] = None,
):
    """Export a bundle: config.json, model.safetensors, tokenizer.json, README.md, eval.json, checksums.json.

    Load it with [bold]mmtok.load(OUT_DIR)[/bold], or use [bold]mmtok encode / decode[/bold]. With
    [bold]--format hf[/bold], a folder for transformers' own class instead (from_pretrained, no remote code).
    Example: [bold]mmtok export runs/quickstart bundles/quickstart --graphs[/bold]
    """
    from rich.markup import escape

    from mmtok.cli.common import table_console
    from mmtok.errors import MmtokError
    from mmtok.export.bundle import export_bundle

    console = table_console()
    if fmt not in ("mmtok", "hf"):
        raise MmtokError(f"unknown --format {fmt!r}", hint="use mmtok (a bundle) or hf (a transformers folder)")
    if fmt == "hf":
        if graphs or onnx or eval_path:
            raise MmtokError("--graphs, --onnx and --eval belong to the mmtok bundle format",
                             hint="drop them with --format hf")
        from mmtok.export.interop import export_hf

        r = export_hf(model, out_dir, ema=not no_ema, force=force)
        c = r["check"]
        console.print(f"[green]exported[/green] {r['info']['recipe_name']} as transformers {r['class']} -> {r['out']}")
        console.print(f"checked against mmtok on {c['inputs']}: ids equal {c['ids_equal']:.0%}, largest output "
                      f"difference {c['max_output_difference']:.2e}")
        return
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
