"""`mmtok import`: a released tokenizer as an ordinary bundle."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated


def _formats() -> str:
    """The import formats every family declares (mmtok.families.Family.formats), torch-free."""
    from mmtok import families

    families.discover()
    return ", ".join(families.FORMATS.names())


def import_command(
    fmt: Annotated[str, typer.Argument(metavar="FORMAT", help=f"The release's layout: {_formats()}.")],
    source: Annotated[Path, typer.Argument(help="The released file (.ckpt / .pt) or transformers folder.")],
    out: Annotated[Path, typer.Option("--out", help="Bundle directory to create.")],
    config: Annotated[Optional[Path], typer.Option(
        "--config", help="taming: the release's YAML config (default: configs/*.yaml beside the checkpoint's "
        "folder, else inferred from tensor shapes).")] = None,
    weights: Annotated[str, typer.Option(
        "--weights", help="ema: the release's EMA copy when it has one; raw: its live weights.")] = "ema",
    force: Annotated[bool, typer.Option("--force", help="Replace an existing non-empty --out.")] = False,
):
    """Import a released tokenizer as a bundle that every command takes (eval, encode / decode, tokenize,
    lm extend, init.path for fine-tuning, export).

    Formats: [bold]taming[/bold] (taming-transformers VQGAN .ckpt, also Chameleon's image tokenizer; its
    discriminator is kept for fine-tuning), [bold]llamagen[/bold] (LlamaGen VQ-8 / VQ-16 .pt, EMA weights by
    default), [bold]janus[/bold] (a transformers JanusVQVAE or Janus model folder), [bold]dac[/bold] (DAC's own
    .pth, or a transformers DacModel folder), [bold]encodec[/bold] (EnCodec 24 kHz's own .th, or a transformers
    EncodecModel folder), [bold]var[/bold] (VAR's multi-scale VQ-VAE .pth, e.g. vae_ch160v4096z32.pth). Every
    tensor is mapped by
    name rules, strictly both ways and shape-checked; nothing is unpickled beyond plain data.

    Example: [bold]mmtok import llamagen vq_ds16_c2i.pt --out bundles/llamagen_vq16[/bold]
    """
    from rich.markup import escape

    from mmtok.errors import MmtokError
    from mmtok.export.interop import import_bundle

    if weights not in ("ema", "raw"):
        raise MmtokError(f"--weights {weights!r}: use ema or raw")
    from mmtok.cli.common import table_console

    console = table_console()
    r = import_bundle(fmt, source, out, config=str(config) if config else None, weights=weights, force=force)
    src = r["source"]
    console.print(f"[green]imported[/green] {fmt} {escape(str(source))} -> {r['out']} "
                  f"({len(r['files'])} files, {src.weights} weights, step {src.step})")
    console.print(f"configuration {escape(src.config_from)}", soft_wrap=True)
    for pattern, why in src.ignore.items():
        console.print(f"  left out {pattern}: {escape(why)}", soft_wrap=True)
    for note in src.notes:
        console.print(f"[yellow]note[/yellow]: {escape(note)}", soft_wrap=True)
    console.print(f"next: mmtok eval {r['out']} --data DATA; fine-tune: mmtok train {r['out']}/recipe.yaml "
                  f"--data DATA --set init.path={r['out']}", soft_wrap=True)
