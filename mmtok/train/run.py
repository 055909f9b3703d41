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
import os
import time
from pathlib import Path

from mmtok import config
from mmtok.config import Recipe
from mmtok.errors import CheckpointError, RecipeError


def last_checkpoint(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints" / "last.ckpt"


def prepare_run_dir(recipe: Recipe, out: Path, resume: bool) -> Path | None:
    """Check the run directory against --resume; returns the checkpoint to resume from (or None)."""
    ckpt = last_checkpoint(out)
    if resume:
        if not ckpt.is_file():
            raise CheckpointError(f"nothing to resume in {out}: {ckpt} does not exist",
                                  hint="drop --resume to start a new run, or point --out at an earlier run")
        saved = out / "recipe.yaml"
        if saved.is_file():
            before = config.load(str(saved))
            if before.model != recipe.model:
                raise RecipeError(f"cannot resume {out}: the model section differs from the run's recipe.yaml",
                                  hint="resume with the same recipe (only training settings such as max_steps may change)")
        return ckpt
    if ckpt.is_file():
        raise CheckpointError(f"{out} already holds a run ({ckpt})",
                              hint="add --resume to continue it, or choose another --out")
    return None


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _precision(recipe: Recipe, accelerator: str) -> str:
    if recipe.trainer.precision != "auto":
        return recipe.trainer.precision
    return "bf16-mixed" if accelerator == "gpu" else "32-true"


def build_trainer(recipe: Recipe, out: Path, callbacks: list):
    import lightning as L
    import torch
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    from mmtok.train.callbacks import AtomicCheckpointIO

    t = recipe.trainer
    accelerator = t.accelerator if t.accelerator != "auto" else ("gpu" if torch.cuda.is_available() else "cpu")
    strategy = t.strategy
    if strategy == "ddp":
        from lightning.pytorch.strategies import DDPStrategy

        # The discriminator is not in the generator's graph (and vice versa): unused parameters are expected.
        strategy = DDPStrategy(find_unused_parameters=recipe.loss.gan.weight > 0)
    loggers = [CSVLogger(out, name="logs")]  # logs/version_N: a resumed run never overwrites earlier logs
    if importlib.util.find_spec("tensorboard") is not None:
        loggers.append(TensorBoardLogger(out, name="logs", version=loggers[0].version))
    return L.Trainer(
        accelerator=accelerator, devices=t.devices, num_nodes=t.num_nodes, strategy=strategy,
        precision=_precision(recipe, accelerator), max_steps=t.max_steps, max_epochs=-1,
        max_time={"minutes": t.max_minutes} if t.max_minutes else None,
        val_check_interval=t.val_every * t.accumulate_grad_batches, check_val_every_n_epoch=None,
        num_sanity_val_steps=0, log_every_n_steps=t.log_every, logger=loggers, callbacks=callbacks,
        plugins=[AtomicCheckpointIO()], enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, use_distributed_sampler=False, default_root_dir=out,
    )


def train(recipe: Recipe, out: str | Path, *, resume: bool = False, callbacks: list | None = None) -> dict:
    """Train the recipe's tokenizer into run directory `out`; returns the summary (also in summary.json).

    `callbacks` are extra Lightning callbacks (e.g. for tests or custom logging).
    """
    out = Path(out)
    ckpt = prepare_run_dir(recipe, out, resume)
    import lightning as L
    import torch

    from mmtok.data import make_loader
    from mmtok.train.callbacks import Checkpointer, RichSteps
    from mmtok.train.task import TokenizerTask

    if recipe.trainer.threads:
        torch.set_num_threads(recipe.trainer.threads)
    L.seed_everything(recipe.seed, workers=True, verbose=False)
    task = TokenizerTask(recipe, run_dir=out)  # validates the model (e.g. resolution vs downsample) first
    d, res = recipe.data, recipe.model.resolution
    train_loader = make_loader(d.train, "train", res, batch_size=d.batch_size, num_workers=d.num_workers,
                               shuffle_buffer=d.shuffle_buffer, seed=recipe.seed)
    val_loader = None
    if d.val:
        val_loader = make_loader(d.val, "val", res, batch_size=d.batch_size, num_workers=min(d.num_workers, 1),
                                 shuffle_buffer=0, seed=recipe.seed, max_samples=d.val_samples)
    _write(out / "recipe.yaml", config.dump(recipe))

    trainer = build_trainer(recipe, out, [RichSteps(), Checkpointer(out, recipe.trainer.ckpt_every), *(callbacks or [])])
    t0 = time.perf_counter()
    trainer.fit(task, train_dataloaders=train_loader, val_dataloaders=val_loader, ckpt_path=ckpt)
    seconds = time.perf_counter() - t0
    final = {}
    if val_loader is not None and not trainer.interrupted:
        final = trainer.validate(task, dataloaders=val_loader, verbose=False)[0]
    summary = {
        "recipe": recipe.name, "step": trainer.global_step, "steps_this_run": trainer.global_step - task.start_step,
        "seconds": round(seconds, 1), "skipped_samples": task.skipped,
        "final": {k: round(float(v), 5) for k, v in final.items()},
        "checkpoint": str(last_checkpoint(out)), "grid": _latest_grid(out),
    }
    if trainer.is_global_zero:
        _write(out / "summary.json", json.dumps(summary, indent=2))
    return summary


def _latest_grid(out: Path) -> str | None:
    grids = sorted((out / "samples").glob("step_*.png"))
    return str(grids[-1]) if grids else None
