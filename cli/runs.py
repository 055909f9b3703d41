"""`mmtok runs [DIR]`: a table of the runs under DIR (default ./runs). Reads files only (no torch)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated


def runs_command(
    folder: Annotated[Optional[Path], typer.Argument(
        help="Folder holding run directories (searched recursively), or one run directory.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the list as JSON instead of a table.")] = False,
):
    """List training runs: recipe, step, held-out PSNR, codebook usage, time and status, newest first.

    A run is a folder with the recipe.yaml that `mmtok train` writes. Values come from its summary.json, or
    from its logs while it is running or when it ended without one. Status: finished, stopped on time,
    interrupted (signal, or no summary written), running? (logs written in the last 15 minutes).

    Example: mmtok runs runs/
    """
    from rich.console import Console
    from rich.table import Table

    from mmtok.train.inventory import list_runs

    root = folder if folder is not None else Path("runs")
    runs = list_runs(root)
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in runs], indent=2))
        return
    console = Console(soft_wrap=True)
    if not runs:
        console.print(f"no runs in {root} (a run is a folder with the recipe.yaml that `mmtok train` writes)")
        return
    table = Table(title=f"runs in {root} (newest first)")
    for name, justify in (("run", "left"), ("recipe", "left"), ("step", "right"), ("PSNR dB", "right"),
                          ("usage", "right"), ("time", "right"), ("status", "left"), ("last write", "right")):
        table.add_column(name, justify=justify, overflow="fold")
    now = time.time()
    for r in runs:
        table.add_row(_relative(r.path, root), r.recipe or "-", _step(r.step, r.max_steps),
                      f"{r.psnr:.2f}" if r.psnr is not None else "-",
                      f"{100 * r.usage:.1f}%" if r.usage is not None else "-",
                      _duration(r.seconds), _status(r.status), _age(now - r.modified))
    console.print(table)


def _relative(path: str, root: Path) -> str:
    try:
        rel = Path(path).relative_to(root).as_posix()
    except ValueError:
        return path
    return rel if rel != "." else Path(path).name


def _step(step: int | None, max_steps: int | None) -> str:
    if step is None:
        return "-"
    return f"{step}/{max_steps}" if max_steps else str(step)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _age(seconds: float) -> str:
    if seconds < 90:
        return "just now"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} days ago"


def _status(status: str) -> str:
    color = {"finished": "green", "running?": "cyan", "interrupted": "yellow"}.get(status)
    return f"[{color}]{status}[/{color}]" if color else status
