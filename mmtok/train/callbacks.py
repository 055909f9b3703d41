"""Training callbacks: progress over steps (a rich bar on a terminal, plain lines in a log) and atomic checkpoints."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from mmtok.files import atomic_write, checkpoint_dir, last_checkpoint

SHOWN = [("train/loss", "loss"), ("train/l1", "l1"), ("train/l2", "l2"), ("train/perceptual", "lpips"),
         ("train/gan", "gan"), ("train/disc", "disc"), ("train/usage", "usage"), ("val/psnr", "val psnr"),
         ("val/mpjpe", "val mpjpe"), ("val/usage", "val usage")]


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes checkpoints to a temporary file and renames it into place: a crash never leaves half a file."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        atomic_write(path, lambda tmp: torch.save(checkpoint, tmp))


class Checkpointer(L.Callback):
    """Saves `checkpoints/last.ckpt` every `every` steps and at the end; with `keep_every`, also keeps
    `checkpoints/step_NNNNNNN.ckpt` every that many steps; with `keep_best` (a validation metric such as
    "val/psnr", larger is better unless `best_mode` is "min"), keeps `checkpoints/best.ckpt`.

    Every rank calls `save` at the same step (Lightning writes on rank 0 and then holds a barrier)."""

    def __init__(self, run_dir: Path, every: int, keep_every: int | None = None, keep_best: str | None = None,
                 best_mode: str = "max"):
        self.dir = checkpoint_dir(run_dir)
        self.path = last_checkpoint(run_dir)
        self.every, self.keep_every = every, keep_every
        self.keep_best, self.best_mode = keep_best, best_mode
        self.best: float | None = None
        self._saved_at = -1

    def save(self, trainer: L.Trainer) -> None:
        if trainer.global_step != self._saved_at:
            trainer.save_checkpoint(self.path, weights_only=False)  # full state: resume needs optimizers
            self._saved_at = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = trainer.global_step
        if step > 0 and step % self.every == 0:
            self.save(trainer)
        if self.keep_every and step > 0 and step % self.keep_every == 0:
            kept = self.dir / f"step_{step:07d}.ckpt"
            if not kept.exists():
                trainer.save_checkpoint(kept, weights_only=False)

    def on_validation_end(self, trainer, pl_module):
        if not self.keep_best or trainer.state.fn != "fit" or trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.keep_best)
        if value is None:
            return
        value = float(value)
        better = self.best is None or (value > self.best if self.best_mode == "max" else value < self.best)
        if better and value == value:  # NaN never counts as best
            self.best = value
            trainer.save_checkpoint(self.dir / "best.ckpt", weights_only=False)

    def on_train_end(self, trainer, pl_module):
        self.save(trainer)

    def state_dict(self) -> dict:
        return {"best": self.best}

    def load_state_dict(self, state_dict: dict) -> None:
        self.best = state_dict.get("best")


class ResumeReport(L.Callback):
    """On resume, says (rank 0) what was restored, what starts fresh, and how the lr schedule changed."""

    def __init__(self, before, recipe, console: Console | None = None):
        self.before, self.recipe = before, recipe
        self.console = console or Console(stderr=True)

    def on_train_start(self, trainer, pl_module):
        report = getattr(pl_module, "restore_report", None)
        if not trainer.is_global_zero or report is None:
            return
        say = self.console.print
        say(f"resumed at step {trainer.global_step}: restored {', '.join(report['restored']) or 'nothing'}"
            + (f"; new, starting fresh: {', '.join(report['fresh'])}" if report["fresh"] else "")
            + (f"; no longer used: {', '.join(report['dropped'])}" if report["dropped"] else ""))
        if self.before is not None and self.before.trainer.max_steps != self.recipe.trainer.max_steps:
            say(lr_schedule_line(self.before, self.recipe, trainer.global_step))


def lr_schedule_line(before, recipe, step: int) -> str:
    """What a resume with another trainer.max_steps does to the cosine schedule at `step`, in one line."""
    from mmtok.train.task import lr_lambda

    o = recipe.optim
    old = lr_lambda(o.warmup_steps, before.trainer.max_steps, o.min_lr_ratio)(step) * o.lr
    new = lr_lambda(o.warmup_steps, recipe.trainer.max_steps, o.min_lr_ratio)(step) * o.lr
    change = (f"the lr follows the new curve from here: {old:.3g} -> {new:.3g} at step {step}"
              if f"{old:.3g}" != f"{new:.3g}" else f"the lr at step {step} is unchanged ({new:.3g})")
    return (f"lr schedule: the cosine decay now ends at step {recipe.trainer.max_steps} (was "
            f"{before.trainer.max_steps}); {change}")


class RichSteps(L.Callback):
    """Progress over optimizer steps with the loss terms and codebook usage: a rich bar on a terminal; on anything
    else (a file, nohup, SLURM) a plain line every max(`log_every`, max_steps / 50) steps, at least once every
    PLAIN_SECONDS, and at the last step, so a log shows progress while it happens."""

    PLAIN_SECONDS = 60.0

    def __init__(self, console: Console | None = None, log_every: int = 1):
        self.console = console or Console(stderr=True)
        self.log_every = log_every
        self.progress: Progress | None = None
        self.plain = False

    def on_train_start(self, trainer, pl_module):
        if not trainer.is_global_zero:
            return
        self._t0, self._s0, self._last = time.perf_counter(), trainer.global_step, time.perf_counter()
        if not self.console.is_terminal:
            self.plain = True
            self.every = max(self.log_every, -(-trainer.max_steps // 50))
            return
        self.progress = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                                 TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[metrics]}"),
                                 console=self.console, transient=False)
        self.progress.start()
        self.task = self.progress.add_task("train", total=trainer.max_steps, completed=trainer.global_step,
                                           rate="", metrics="")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.progress is None and not self.plain:
            return
        m = trainer.callback_metrics
        shown = "  ".join(f"{label} {float(m[k]):.4g}" for k, label in SHOWN if k in m)
        step, now = trainer.global_step, time.perf_counter()
        per_s = (step - self._s0) / max(1e-9, now - self._t0)
        if self.progress is not None:
            self.progress.update(self.task, completed=step, metrics=shown, rate=f"{per_s:.2f} step/s")
        elif step % self.every == 0 or step >= trainer.max_steps or now - self._last >= self.PLAIN_SECONDS:
            self._last = now
            eta = (trainer.max_steps - step) / per_s if per_s > 0 else float("nan")
            self.console.print(f"train step {step}/{trainer.max_steps}  {shown}  {per_s:.2f} step/s  "
                               f"elapsed {_clock(now - self._t0)}  eta {_clock(eta)}",
                               soft_wrap=True, markup=False, highlight=False)

    def on_train_end(self, trainer, pl_module):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def on_exception(self, trainer, pl_module, exception):
        self.on_train_end(trainer, pl_module)


def _clock(seconds: float) -> str:
    """1h02m03s / 4m05s / 17s ("?" when unknown)."""
    if seconds != seconds or seconds == float("inf"):
        return "?"
    s = int(round(seconds))
    h, m = divmod(s, 3600)
    m, s = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s" if m else f"{s}s"
