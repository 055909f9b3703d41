"""Training callbacks: a rich progress bar over steps and atomic checkpoints."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

SHOWN = [("train/loss", "loss"), ("train/l1", "l1"), ("train/l2", "l2"), ("train/perceptual", "lpips"),
         ("train/gan", "gan"), ("train/disc", "disc"), ("train/usage", "usage"), ("val/psnr", "val psnr"),
         ("val/usage", "val usage")]


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes checkpoints to a temporary file and renames it into place: a crash never leaves half a file."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(checkpoint, tmp)
        os.replace(tmp, path)


class Checkpointer(L.Callback):
    """Saves `checkpoints/last.ckpt` every `every` steps, at the end, and when a run is interrupted."""

    def __init__(self, run_dir: Path, every: int):
        self.path = Path(run_dir) / "checkpoints" / "last.ckpt"
        self.every = every
        self._saved_at = -1

    def _save(self, trainer: L.Trainer) -> None:
        if trainer.global_step != self._saved_at:
            trainer.save_checkpoint(self.path, weights_only=False)  # full state: resume needs optimizers
            self._saved_at = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step > 0 and trainer.global_step % self.every == 0:
            self._save(trainer)

    def on_train_end(self, trainer, pl_module):
        self._save(trainer)

    def on_exception(self, trainer, pl_module, exception):
        if isinstance(exception, KeyboardInterrupt) and trainer.global_step > 0:
            self._save(trainer)


class RichSteps(L.Callback):
    """A rich progress bar over optimizer steps showing the loss terms and codebook usage."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.progress: Progress | None = None

    def on_train_start(self, trainer, pl_module):
        if not trainer.is_global_zero:
            return
        self.progress = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                                 TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[metrics]}"),
                                 console=self.console, transient=False)
        self.progress.start()
        self.task = self.progress.add_task("train", total=trainer.max_steps, completed=trainer.global_step,
                                           rate="", metrics="")
        self._t0, self._s0 = time.perf_counter(), trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if self.progress is None:
            return
        m = trainer.callback_metrics
        shown = "  ".join(f"{label} {float(m[k]):.4g}" for k, label in SHOWN if k in m)
        done = trainer.global_step - self._s0
        rate = f"{done / max(1e-9, time.perf_counter() - self._t0):.2f} step/s"
        self.progress.update(self.task, completed=trainer.global_step, metrics=shown, rate=rate)

    def on_train_end(self, trainer, pl_module):
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def on_exception(self, trainer, pl_module, exception):
        self.on_train_end(trainer, pl_module)
