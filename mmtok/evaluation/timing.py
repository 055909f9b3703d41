"""The evaluation pass's clock and progress bar: throughput over all ranks, and a rich bar on rank 0 only."""
from __future__ import annotations


def throughput(fabric, times: dict, device) -> dict:
    """Samples/s over all ranks: total samples / the slowest rank's time, for encode and decode."""
    import torch

    enc, dec, n = times["encode"], times["decode"], times["n"]
    if n == 0 and times["first"] is not None:  # one batch only: it is all we have
        enc, dec, n = times["first"]
    t = torch.tensor([enc, dec], dtype=torch.float64, device=device)
    t = fabric.all_reduce(t, reduce_op="max") if fabric.world_size > 1 else t
    total = int(fabric.all_reduce(torch.tensor(n, device=device), reduce_op="sum")) if fabric.world_size > 1 else n
    out = {}
    for i, key in enumerate(("encode_samples_per_s", "decode_samples_per_s")):
        out[key] = total / float(t[i]) if float(t[i]) > 0 else None
    return out


class _NoBar:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def add_task(self, *a, **k):
        return 0

    def advance(self, *a, **k):
        pass


def progress_bar(console, num_samples, world, *, enabled: bool, unit: str = "images"):
    """The evaluation pass's bar on `console` ("eval [bar] done/total UNIT elapsed"), or a no-op bar unless
    `enabled` (rank 0). `unit` names what is counted: "images", "segments" (audio), "windows" (motion)."""
    if not enabled:
        return _NoBar()
    from rich.markup import escape
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                               TimeRemainingColumn)

    return Progress(TextColumn("[bold]eval[/bold]"), BarColumn(), MofNCompleteColumn(), TextColumn(escape(unit)),
                    TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=console, transient=False)
