"""`train(recipe, out)`: the run directory, the Lightning Trainer built from the recipe, fit, final validation.

Run directory layout:
  recipe.yaml              the resolved recipe (also stored inside every checkpoint)
  checkpoints/last.ckpt    written atomically every trainer.ckpt_every steps, at the end and on Ctrl-C
  logs/version_N/          metrics.csv with every logged term, one version per start or resume
                           (TensorBoard events beside it when tensorboard is installed)
  samples/step_N.png       reconstruction grids (inputs above, reconstructions below), one per validation
  summary.json             final step, wall time, final held-out metrics, skipped samples
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from mmtok import config
from mmtok.config import Recipe
from mmtok.errors import CheckpointError, RecipeError
from mmtok.files import last_checkpoint, write_text


def flat(d: dict, prefix: str = "") -> dict:
    """{"a.b": value} for a nested dict."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def recipe_diff(before: Recipe, after: Recipe) -> list[tuple[str, object, object]]:
    """(dotted key, old value, new value) for every recipe value that differs."""
    a, b = flat(before.model_dump(mode="json")), flat(after.model_dump(mode="json"))
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def resume_recipe(out: Path, overrides: list[str] | tuple[str, ...] = ()) -> tuple[Recipe, list]:
    """The recipe to continue run `out` with: its own recipe.yaml with `overrides` applied on top, and the diff
    (see `recipe_diff`). A change to the model section is refused: the weights could not be restored into it."""
    saved = Path(out) / "recipe.yaml"
    if not saved.is_file():
        raise CheckpointError(f"nothing to resume in {out}: {saved} does not exist",
                              hint="drop --resume to start a new run, or point --out at an earlier run")
    before = config.load_stored(str(saved))
    after = config.load_stored(str(saved), list(overrides))
    diff = recipe_diff(before, after)
    model = [k for k, _, _ in diff if k.startswith("model.") or k == "optim.freeze"]
    if model:
        raise RecipeError(f"cannot resume {out} with a different model or frozen set ({', '.join(model)})",
                          hint="only training settings may change on resume; start a new run in another --out")
    return after, diff


def requeue_checkpoint(out: Path) -> Path | None:
    """Lightning's SLURM auto-requeue checkpoint (hpc_ckpt_N.ckpt in the run directory), the newest, if any."""
    found = sorted(Path(out).glob("hpc_ckpt_*.ckpt"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    return found[-1] if found else None


def prepare_run_dir(recipe: Recipe, out: Path, resume: bool) -> Path | None:
    """Check the run directory against --resume; returns the checkpoint to resume from (or None).

    A run directory holding a SLURM requeue checkpoint (`hpc_ckpt_N.ckpt`) resumes without --resume: a requeued
    job runs the same command again. The newest of last.ckpt and that file is used."""
    ckpt = last_checkpoint(out)
    hpc = requeue_checkpoint(out)
    if hpc is not None and (not ckpt.is_file() or hpc.stat().st_mtime > ckpt.stat().st_mtime):
        ckpt, resume = hpc, True
    elif hpc is not None:
        resume = True
    if resume:
        if not ckpt.is_file():
            raise CheckpointError(f"nothing to resume in {out}: {ckpt} does not exist",
                                  hint="drop --resume to start a new run, or point --out at an earlier run")
        return ckpt
    if ckpt.is_file():
        raise CheckpointError(f"{out} already holds a run ({ckpt})",
                              hint="add --resume to continue it, or choose another --out")
    return None


def prepare_recipe(recipe: Recipe, out: Path, ckpt: Path | None) -> Recipe:
    """The recipe to train with: the family's `prepare` applied (model fields derived from the training data,
    see mmtok.families.Family.prepare); a resumed run (`ckpt`) must have the model section of its recipe.yaml."""
    from mmtok import families

    recipe = families.get(recipe.model.family).prepare_recipe(recipe, out, fresh=ckpt is None)
    saved = out / "recipe.yaml"
    if ckpt is not None and saved.is_file() and config.load(str(saved)).model != recipe.model:
        raise RecipeError(f"cannot resume {out}: the model section differs from the run's recipe.yaml",
                          hint="resume with the same recipe (only training settings such as max_steps may change)")
    return recipe


def _precision(recipe: Recipe, accelerator: str) -> str:
    if recipe.trainer.precision != "auto":
        return recipe.trainer.precision
    return "bf16-mixed" if accelerator == "gpu" else "32-true"


def build_trainer(recipe: Recipe, out: Path, callbacks: list, find_unused: bool = False):
    """The Lightning Trainer for a recipe; `find_unused`: DDP expects parameters outside a step's graph (an
    adversary is not in the generator's graph, and vice versa)."""
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    from mmtok.hardware import resolve
    from mmtok.train.callbacks import AtomicCheckpointIO

    t = recipe.trainer
    accelerator, devices = resolve(t.accelerator, t.devices, t.strategy)
    strategy = t.strategy
    if strategy == "ddp":
        from lightning.pytorch.strategies import DDPStrategy

        strategy = DDPStrategy(find_unused_parameters=find_unused)
    loggers = [CSVLogger(out, name="logs")]  # logs/version_N: a resumed run never overwrites earlier logs
    if importlib.util.find_spec("tensorboard") is not None:
        loggers.append(TensorBoardLogger(out, name="logs", version=loggers[0].version))
    return L.Trainer(
        accelerator=accelerator, devices=devices, num_nodes=t.num_nodes, strategy=strategy,
        precision=_precision(recipe, accelerator), max_steps=t.max_steps, max_epochs=-1,
        val_check_interval=t.val_every * t.accumulate_grad_batches, check_val_every_n_epoch=None,
        num_sanity_val_steps=0, log_every_n_steps=t.log_every, logger=loggers, callbacks=callbacks,
        plugins=[AtomicCheckpointIO()], enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, use_distributed_sampler=False, default_root_dir=out,
    )


def train(recipe: Recipe, out: str | Path, *, resume: bool = False, callbacks: list | None = None) -> dict:
    """Train the recipe's tokenizer into run directory `out`; returns the summary (also in summary.json).

    The summary's "status" is "finished", "stopped on time" (trainer.max_minutes; final validation still runs)
    or "interrupted" (SIGINT / SIGTERM: checkpoint saved, no final validation); "exit_code" is what a command
    line should exit with (0, or 130 / 143 after a signal); "is_global_zero" tells the rank that reports.
    `callbacks` are extra Lightning callbacks (e.g. for tests or custom logging).
    """
    from mmtok.train.stop import StopRequest

    out = Path(out)
    request = StopRequest()
    request.install()  # from here a signal is recorded; training stops at the next step boundary
    try:
        return _train(recipe, out, resume, callbacks or [], request)
    finally:
        request.restore()


def _train(recipe: Recipe, out: Path, resume: bool, callbacks: list, request) -> dict:
    before = config.load(str(out / "recipe.yaml")) if (out / "recipe.yaml").is_file() else None
    ckpt = prepare_run_dir(recipe, out, resume)
    recipe = prepare_recipe(recipe, out, ckpt)
    earlier = _earlier_seconds(out) if ckpt else 0.0  # training time of the invocations this one resumes
    import lightning as L
    import torch

    from mmtok.train.callbacks import Checkpointer, ResumeReport, RichSteps
    from mmtok.train.stop import TIME_LIMIT, RunStopper, exit_code, fit, reason_name
    from mmtok.train.task import TokenizerTask

    t = recipe.trainer
    if t.threads:
        torch.set_num_threads(t.threads)
    quiet_lightning()
    L.seed_everything(recipe.seed, workers=True, verbose=False)
    train_loader, val_loader = _loaders(recipe)  # a bad data source fails here, before any model is built
    _say_held_out(recipe, val_loader)
    task = TokenizerTask(recipe, run_dir=out, initialise=ckpt is None)  # a resumed run has its weights already
    if t.keep_best and t.keep_best not in task.val_metrics:
        raise RecipeError(f"trainer.keep_best: unknown validation metric {t.keep_best!r}",
                          hint="one of " + ", ".join(task.val_metrics))
    write_text(out / "recipe.yaml", config.dump(recipe))

    checkpointer = Checkpointer(out, t.ckpt_every, t.keep_every, t.keep_best, t.keep_best_mode)
    stopper = RunStopper(request, t.max_minutes, checkpointer.save)
    report = ResumeReport(before if ckpt else None, recipe)
    trainer = build_trainer(recipe, out, [RichSteps(log_every=t.log_every), checkpointer, stopper, report, *callbacks],
                            find_unused=task.adversary is not None)
    stopped, seconds = fit(trainer, task, train_loader, val_loader, ckpt)
    final = {}
    interrupted = stopped is not None and stopped.reason != TIME_LIMIT
    if val_loader is not None and not interrupted and not request.signum:
        final = trainer.validate(task, dataloaders=val_loader, verbose=False)[0]
    bad = _all_bad_samples(task.bad)
    status = "finished" if stopped is None else ("stopped on time" if not interrupted else "interrupted")
    summary = {
        "recipe": recipe.name, "status": status, "step": trainer.global_step,
        "steps_this_run": trainer.global_step - task.start_step, "max_steps": t.max_steps,
        "seconds": round(seconds, 1), "seconds_total": round(earlier + seconds, 1),
        "final": {k: round(float(v), 5) for k, v in final.items()},
        "checkpoint": str(last_checkpoint(out)) if last_checkpoint(out).is_file() else None,
        "grid": _latest_grid(out),
        "stop_reason": reason_name(stopped.reason) if stopped is not None else None,
        "exit_code": exit_code(stopped.reason) if interrupted else 0,
        "bad_samples": bad, "skipped_samples": len(bad), "is_global_zero": trainer.is_global_zero, "curves": None,
        "init": task.init_report, "frozen": task.freeze_report,
    }
    if trainer.is_global_zero:
        summary["curves"] = _curves(out)
        write_text(out / "summary.json", json.dumps(summary, indent=2))
    return summary


def _say_held_out(recipe: Recipe, val_loader) -> None:
    """With data.val=holdout, one line on rank 0 saying how many samples validation holds out (a count, not only
    the fraction: a 3-image folder holds out 1 image, 33%, whatever the fraction asks)."""
    import os

    d = recipe.data
    counts = getattr(getattr(val_loader, "dataset", None), "held_counts", None)
    if d.val != "holdout" or counts is None or int(os.environ.get("RANK", "0")) != 0:
        return
    from rich.console import Console
    from rich.markup import escape

    held, total = counts
    Console(stderr=True, soft_wrap=True).print(
        f"validating on {held} of {total} samples of {escape(d.train)}, held out by name (data.holdout_fraction "
        f"{d.holdout_fraction:g}; at least one is held out and one trains)" + (
            f", {d.val_samples} of them per validation" if d.val_samples and d.val_samples < held else ""))


def _earlier_seconds(out: Path) -> float:
    """The training seconds of every earlier invocation of the run at `out`, from its summary.json (0 without one)."""
    try:
        summary = json.loads((out / "summary.json").read_text())
    except (OSError, ValueError):
        return 0.0
    value = summary.get("seconds_total", summary.get("seconds", 0.0)) if isinstance(summary, dict) else 0.0
    return float(value) if isinstance(value, (int, float)) else 0.0


def _all_bad_samples(bad) -> list[str]:
    """The distinct bad samples every rank met (each rank streams its own share of the data)."""
    import torch.distributed as dist

    from mmtok.data.bad import BadSamples

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return bad.entries
    gathered: list = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, bad.entries)  # every rank reaches this line once, after fit
    return BadSamples(e for entries in gathered for e in entries).entries


def _curves(out: Path) -> str | None:
    from mmtok.errors import MmtokError
    from mmtok.train.curves import plot_curves

    try:
        return str(plot_curves(out))
    except MmtokError:  # nothing logged yet (e.g. stopped before the first logged step)
        return None


def _loaders(recipe: Recipe):
    """(train, val or None) loaders; data.val 'holdout' validates on a hash-chosen part of data.train that
    training never sees."""
    from mmtok import families
    from mmtok.data import make_loader

    d, spec = recipe.data, recipe.model  # the model section says what one sample is (resolution, rate, ...)
    modality = families.get(recipe.model.family).modality  # data sources are keyed by modality and kind
    holdout = d.holdout_fraction if d.val == "holdout" else 0.0
    train_loader = make_loader(d.train, "train", spec, batch_size=d.batch_size, num_workers=d.num_workers,
                               shuffle_buffer=d.shuffle_buffer, seed=recipe.seed, holdout=holdout, modality=modality)
    val_loader = None
    if d.val:
        val_loader = make_loader(d.train if holdout else d.val, "val", spec, batch_size=d.batch_size,
                                 num_workers=min(d.num_workers, 1), shuffle_buffer=0, seed=recipe.seed,
                                 max_samples=d.val_samples, holdout=holdout, modality=modality)
    return train_loader, val_loader


def quiet_lightning() -> None:
    """Keep Lightning's tips, hardware banners and routine warnings out of mmtok's console (errors still show)."""
    import logging
    import warnings

    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
                 "lightning.pytorch.accelerators.cuda", "lightning.fabric.utilities.seed",
                 "lightning.pytorch.utilities.distributed", "lightning.fabric.utilities.distributed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for pattern in (".*does not have many workers.*", ".*smaller than the logging interval.*",
                    ".*is an invalid value for the.*", ".*Checkpoint directory .* exists and is not empty.*",
                    ".*Your `IterableDataset` has `__len__` defined.*", ".*tensorboardX.*",
                    ".*process group has NOT been destroyed.*", ".*but have no `val_dataloader`.*", ".*sync_dist=True.*", ".*module\\(s\\) in eval mode.*", ".*LeafSpec.*",
                    ".*'pretrained' is deprecated.*", ".*Arguments other than a weight enum.*"):
        warnings.filterwarnings("ignore", message=pattern)


def _latest_grid(out: Path) -> str | None:
    grids = sorted((out / "samples").glob("step_*.png"))
    return str(grids[-1]) if grids else None
