"""`mmtok train` and `mmtok recipes`."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from typing_extensions import Annotated


def train_command(
    recipe: Annotated[str, typer.Argument(help="A shipped recipe name (see `mmtok recipes`) or a YAML path.")],
    data: Annotated[Optional[str], typer.Option(
        "--data", help="Training data instead of the recipe's: shard pattern "
        "('shards/train-{000000..000009}.tar'), image folder, or pipe: URL.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Run directory (default: runs/RECIPE).")] = None,
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", min=1, help="Stop after N optimizer steps.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its last checkpoint.")] = False,
    overrides: Annotated[Optional[List[str]], typer.Option(
        "--set", help="Override a recipe value, e.g. --set optim.lr=2e-4 (repeatable).")] = None,
    print_config: Annotated[bool, typer.Option(
        "--print-config", help="Print the resolved recipe and exit without training.")] = False,
):
    """Train a tokenizer from a recipe.

    Example: [bold]mmtok train quickstart[/bold] trains a small VQGAN on built-in photos (CPU, ~5 min).
    """
    from mmtok import config

    sets = list(overrides or [])
    if data is not None:
        sets.append(f"data.train={data}")
    if max_steps is not None:
        sets.append(f"trainer.max_steps={max_steps}")
    recipe = config.load(recipe, sets)
    if print_config:
        typer.echo(config.dump(recipe), nl=False)
        return
    run_dir = out or Path("runs") / recipe.name

    from rich.console import Console

    from mmtok.train.run import train

    console = Console()
    console.print(f"[bold]mmtok train[/bold] {recipe.name} -> {run_dir}  "
                  f"({recipe.model.family}, {recipe.model.resolution}px, data: {recipe.data.train})")
    summary = train(recipe, run_dir, resume=resume)
    final = summary["final"]
    console.print(f"[green]done[/green]: step {summary['step']} in {summary['seconds']:.0f} s"
                  + (f", held-out PSNR {final['val/psnr']:.2f} dB, codebook usage {100 * final['val/usage']:.1f}%"
                     if "val/psnr" in final else ""))
    if summary["skipped_samples"]:
        console.print(f"[yellow]skipped {summary['skipped_samples']} corrupt or undecodable samples[/yellow]")
    console.print(f"checkpoint: {summary['checkpoint']}")
    if summary["grid"]:
        console.print(f"reconstructions: {summary['grid']}")
    console.print(f"summary: {run_dir / 'summary.json'}")


def recipes_command():
    """List the shipped recipes, one line each."""
    from mmtok.config import shipped_recipes

    for name, line in shipped_recipes().items():
        typer.echo(f"{name:<20} {line}")
