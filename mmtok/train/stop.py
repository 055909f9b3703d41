"""Stopping a run early, the same way on one rank or many: on SIGINT / SIGTERM, or when `trainer.max_minutes` of this
invocation have passed.

A signal only sets a flag (`StopRequest`). At the end of every training batch each rank contributes its reason to
one all-reduce (MAX) that every rank runs unconditionally at the same point, so all ranks agree on the same step
to stop at, whichever rank or ranks were signalled. Then the checkpoint is written (rank 0 writes; the barrier
inside `Trainer.save_checkpoint` is reached by every rank) and `RunStopped` ends `fit` on every rank. Nothing
collective ever runs inside a signal handler. A second signal exits at once without saving (for a rank stuck
in a collective whose peer died).

Lightning's own SIGTERM handler (it broadcasts from inside the handler, which hangs when one rank alone is
signalled) is replaced at train start; its SIGUSR1 handler for SLURM auto-requeue is left alone.
"""
from __future__ import annotations

import os
import signal
import sys
import time

import lightning as L
import torch

TIME_LIMIT = 1  # reason code for a stop on `trainer.max_minutes`; a signal's reason is its number (2, 15)
HANDLED = (signal.SIGINT, signal.SIGTERM)


def reason_name(reason: int) -> str:
    return "time limit" if reason == TIME_LIMIT else signal.Signals(reason).name


def exit_code(reason: int) -> int:
    """The shell's convention for a process ended by signal N (130 for SIGINT, 143 for SIGTERM); 0 on time."""
    return 0 if reason == TIME_LIMIT else 128 + reason


class RunStopped(Exception):
    """Raised on every rank at the same step to end `Trainer.fit` early; `reason` as in `reason_name`."""

    def __init__(self, reason: int, step: int):
        super().__init__(f"stopped by {reason_name(reason)} at step {step}")
        self.reason, self.step = reason, step


class StopRequest:
    """Process-wide: the first SIGINT/SIGTERM is recorded, a second one exits immediately."""

    def __init__(self):
        self.signum = 0
        self.on_force = None  # called before a forced exit (e.g. to kill launched child ranks)
        self._previous: dict = {}

    def install(self) -> None:
        """Route SIGINT and SIGTERM here (main thread only; elsewhere this is a no-op)."""
        import threading

        if threading.current_thread() is not threading.main_thread():
            return
        for sig in HANDLED:
            previous = signal.signal(sig, self._handle)
            self._previous.setdefault(sig, previous)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        if self.signum:
            sys.stderr.write(f"\n{signal.Signals(signum).name} again: exiting now without saving\n")
            sys.stderr.flush()
            if self.on_force is not None:
                self.on_force()
            os._exit(128 + signum)
        self.signum = signum
        sys.stderr.write(f"\n{signal.Signals(signum).name} received: stopping after this step and saving a checkpoint "
                         "(send it again to exit at once without saving)\n")
        sys.stderr.flush()


class RunStopper(L.Callback):
    """Agrees on a stop across ranks after each training batch; saves through `save` and raises RunStopped."""

    def __init__(self, request: StopRequest, max_minutes: float | None, save):
        self.request, self.max_minutes, self.save = request, max_minutes, save
        self.t0 = time.monotonic()  # this invocation's clock: max_minutes never spans a resume

    def on_train_start(self, trainer, pl_module):
        self.request.install()  # after Lightning registered its own SIGTERM handler, replacing it
        launcher = trainer.strategy.launcher
        if launcher is not None and hasattr(launcher, "kill"):
            self.request.on_force = lambda: launcher.kill(signal.SIGKILL)

    def _local_reason(self) -> int:
        if self.request.signum:
            return self.request.signum
        if self.max_minutes and time.monotonic() - self.t0 >= 60 * self.max_minutes:
            return TIME_LIMIT
        return 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        reason = self._local_reason()
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            flag = torch.tensor([reason], dtype=torch.int64, device=pl_module.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            reason = int(flag.item())
        if reason:
            if trainer.global_step > 0:
                self.save(trainer)
            raise RunStopped(reason, trainer.global_step)


def fit(trainer, task, train_loader, val_loader, ckpt) -> tuple[RunStopped | None, float]:
    """trainer.fit (resuming from `ckpt` when given) until it ends or a RunStopper stops it: (the stop, or None,
    and the seconds it ran)."""
    import time

    t0 = time.perf_counter()
    try:
        trainer.fit(task, train_dataloaders=train_loader, val_dataloaders=val_loader, ckpt_path=ckpt)
    except RunStopped as e:
        return e, time.perf_counter() - t0
    return None, time.perf_counter() - t0
