"""`mmtok train` and `mmtok recipes`."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from typing_extensions import Annotated


def train_command(
    recipe: Annotated[Optional[str], typer.Argument(
        help="A shipped recipe name (see `mmtok recipes`) or a YAML path. Not needed with --resume --out.")] = None,
    data: Annotated[Optional[str], typer.Option(
        "--data", help="Training data instead of the recipe's: shard pattern "
        "('shards/train-{000000..000009}.tar'), image folder, or pipe: URL. Unless data.val is set, validation "
        "then uses a held-out part of it (data.val=holdout).")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Run directory (default: runs/RECIPE).")] = None,
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", min=1, help="Stop after N optimizer steps.")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue the run in --out from its last checkpoint, with the run's own recipe.yaml; "
        "--data, --set and --max-steps given now apply on top.")] = False,
    overrides: Annotated[Optional[List[str]], typer.Option(
        "--set", help="Override a recipe value, e.g. --set optim.lr=2e-4 (repeatable).")] = None,
    print_config: Annotated[bool, typer.Option(
        "--print-config", help="Print the resolved recipe and exit without training.")] = False,
):
    """Train a tokenizer from a recipe.

    Example: [bold]mmtok train quickstart[/bold] trains a small VQGAN on built-in photos (CPU, ~3 min).
    Ctrl-C or SIGTERM saves a checkpoint and exits with 130 / 143; [bold]--resume[/bold] continues.
    """
    from rich.console import Console
    from rich.markup import escape

    from mmtok import config
    from mmtok.errors import MmtokError

    console = Console(stderr=True)
    say = console.print if _is_global_zero() else (lambda *a, **k: None)
    sets = list(overrides or [])
    if data is not None:
        sets.append(f"data.train={data}")
    if max_steps is not None:
        sets.append(f"trainer.max_steps={max_steps}")
    if resume:
        if out is None and recipe is None:
            raise MmtokError("--resume needs the run to continue", hint="give --out RUN_DIR (or the recipe name "
                             "whose default run directory runs/NAME to continue)")
        from mmtok.train.run import resume_recipe

        run_dir = out or Path("runs") / config.read_recipe_text(recipe)[0]
        resolved, diff = resume_recipe(run_dir, sets)
        for key, old, new in diff:
            say(f"changed on resume: {key}: {old} -> {new}")
    else:
        if recipe is None:
            raise MmtokError("which recipe?", hint="give a shipped name (mmtok recipes) or a YAML path, "
                             "e.g. mmtok train quickstart")
        resolved = config.load(recipe, sets)
        explicit_val = any(s.split("=", 1)[0].strip() == "data.val" for s in sets)
        if data is not None and not explicit_val and resolved.data.val == "demo" and resolved.data.train != "demo":
            resolved = config.load(recipe, sets + ["data.val=holdout"])
        run_dir = out or Path("runs") / resolved.name
    if print_config:
        typer.echo(config.dump(resolved), nl=False)
        return

    from mmtok.train.run import train

    d = resolved.data
    val = (f"{100 * d.holdout_fraction:g}% of it held out (data.val=holdout)" if d.val == "holdout"
           else (escape(d.val) if d.val else "none"))
    if _is_global_zero():
        size = f"{resolved.model.resolution}px, " if hasattr(resolved.model, "resolution") else ""
        Console(soft_wrap=True).print(f"[bold]mmtok train[/bold] {resolved.name} -> {run_dir}  ({resolved.model.family}, "
                                      f"{size}data: {escape(d.train)}, validation: {val})")
    summary = train(resolved, run_dir, resume=resume)
    if summary["is_global_zero"]:
        _report(Console(soft_wrap=True), summary, resolved, run_dir)
    if summary["exit_code"]:
        raise typer.Exit(code=summary["exit_code"])


def _is_global_zero() -> bool:
    """Rank 0 of a launched group (torchrun / SLURM set RANK; Lightning's own launcher sets LOCAL_RANK / NODE_RANK)."""
    import os

    if "RANK" in os.environ:
        return os.environ["RANK"] == "0"
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"


def _report(console, summary: dict, recipe, run_dir: Path) -> None:
    """The closing lines (rank 0); the last one says how the run ended and how to continue it."""
    from rich.markup import escape

    final, step = summary["final"], summary["step"]
    metrics = ""
    if "val/psnr" in final:
        metrics = f", held-out PSNR {final['val/psnr']:.2f} dB, codebook usage {100 * final['val/usage']:.1f}%"
    elif "val/mpjpe" in final:
        metrics = (f", held-out MPJPE {final['val/mpjpe']:.1f} mm (PA-MPJPE {final['val/pa_mpjpe']:.1f}), "
                   f"codebook usage {100 * final['val/usage']:.1f}%")
    elif "val/mel_distance" in final:
        metrics = (f", held-out mel distance {final['val/mel_distance']:.3f}, SI-SDR {final['val/si_sdr']:.1f} dB, "
                   f"least-used level {100 * final['val/usage_min']:.1f}%")
    bad = summary["bad_samples"]
    if bad:
        shown = "; ".join(bad[:3]) + (f"; ... ({len(bad) - 3} more in summary.json)" if len(bad) > 3 else "")
        console.print(f"[yellow]skipped {len(bad)} bad sample(s)[/yellow]: {escape(shown)}")
    if summary["grid"]:
        console.print(f"reconstructions: {summary['grid']}")
        clips = Path(summary["grid"]).with_suffix("")  # audio: the same validation's clips, beside the picture
        if clips.is_dir():
            console.print(f"clips: {clips}/")
    if summary.get("curves"):
        console.print(f"loss curves: {summary['curves']}")
    console.print(f"summary: {run_dir / 'summary.json'}")
    again = f"mmtok train --resume --out {run_dir}"
    if summary["status"] == "interrupted":
        console.print(f"[yellow]interrupted[/yellow] by {summary['stop_reason']} at step {step} of "
                      f"{summary['max_steps']}; checkpoint: {summary['checkpoint']}; continue with: {again}")
    elif summary["status"] == "stopped on time":
        console.print(f"[yellow]stopped on time[/yellow] (trainer.max_minutes={recipe.trainer.max_minutes}) at step "
                      f"{step} of {summary['max_steps']} in {summary['seconds']:.0f} s{metrics}; checkpoint: "
                      f"{summary['checkpoint']}; continue with: {again}")
    else:
        console.print(f"[green]done[/green]: step {step} in {summary['seconds']:.0f} s{metrics}; "
                      f"checkpoint: {summary['checkpoint']}")


def recipes_command():
    """List the shipped recipes, one line each: tokenizer recipes (`mmtok train NAME`), then the LLM stage's
    (`mmtok lm train`)."""
    from mmtok.config import shipped_recipes

    for name, line in shipped_recipes().items():
        typer.echo(f"{name:<20} {line}")
    for name, line in shipped_recipes(lm=True).items():
        typer.echo(f"{name:<20} [mmtok lm train] {line}")
