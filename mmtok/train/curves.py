"""Loss curves of a run: `read_metrics(run_dir)` and `plot_curves(run_dir) -> run_dir/curves.png`.

Every start or resume of a run logs to its own logs/version_N/metrics.csv (Lightning's CSVLogger: a "step"
column, one column per logged name, empty cells where a name was not logged). The versions are joined in
order of N; a resume restarts from its checkpoint, so each version replaces whatever earlier versions logged
at or after its first step. Drawn with PIL alone (no plotting library): one small panel per series, train
loss terms first (raw values light, smoothed dark), then validation metrics (points), then the learning
rate; grey vertical lines mark where a resume started. Torch-free, so the CLI can read runs quickly.
"""
from __future__ import annotations

import csv
import math
import re
from pathlib import Path

from mmtok.errors import CheckpointError
from mmtok.files import save_image

Series = list[tuple[int, float]]
_VERSION = re.compile(r"version_(\d+)$")
SKIPPED = {"epoch", "step", "train/gan_weight", "data/skipped"}
VAL_FIRST = ("val/psnr", "val/usage", "val/l2", "val/perplexity")


def metric_files(run_dir: str | Path) -> list[Path]:
    """logs/version_N/metrics.csv of a run, in order of N."""
    found = []
    for d in (Path(run_dir) / "logs").glob("version_*"):
        m = _VERSION.search(d.name)
        if m and (d / "metrics.csv").is_file():
            found.append((int(m.group(1)), d / "metrics.csv"))
    return [p for _, p in sorted(found)]


def read_metrics(run_dir: str | Path) -> tuple[dict[str, Series], list[int]]:
    """({name: [(step, value), ...] sorted by step}, [first step of each resumed version]) for a run.

    Unreadable cells are ignored; a missing or empty logs folder gives ({}, [])."""
    series: dict[str, Series] = {}
    resumes: list[int] = []
    for i, path in enumerate(metric_files(run_dir)):
        rows = _rows(path)
        if not rows:
            continue
        first = min(step for step, _ in rows)
        if i and series:
            resumes.append(first)
        for name in series:  # this version restarts at `first`: drop what earlier versions logged since
            series[name] = [(s, v) for s, v in series[name] if s < first]
        for step, values in rows:
            for name, value in values.items():
                series.setdefault(name, []).append((step, value))
    return {k: sorted(v, key=lambda p: p[0]) for k, v in series.items() if v}, resumes


def _rows(path: Path) -> list[tuple[int, dict[str, float]]]:
    out = []
    try:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                step = _number(row.get("step"))
                if step is None:
                    continue
                values = {k: v for k, v in ((k, _number(c)) for k, c in row.items() if k and k not in SKIPPED)
                          if v is not None}
                if values:
                    out.append((int(step), values))
    except (OSError, csv.Error, UnicodeDecodeError):
        return out
    return out


def _number(text) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def last_value(series: dict[str, Series], name: str) -> float | None:
    points = series.get(name)
    return points[-1][1] if points else None


def panel_order(names) -> list[str]:
    """Train loss first, other train terms, validation metrics (PSNR and usage first), then the rest, lr last."""
    names = set(names)
    train = sorted(n for n in names if n.startswith("train/") and n != "train/lr")
    train.sort(key=lambda n: n != "train/loss")
    val = [n for n in VAL_FIRST if n in names] + sorted(n for n in names if n.startswith("val/") and n not in VAL_FIRST)
    rest = sorted(n for n in names if not n.startswith(("train/", "val/")))
    return train + val + rest + (["train/lr"] if "train/lr" in names else [])


def plot_curves(run_dir: str | Path, out: str | Path | None = None, *, columns: int = 3) -> Path:
    """Draw every logged series of the run into `out` (default run_dir/curves.png); returns the path.

    Raises CheckpointError when the run has no logs/version_*/metrics.csv with any number in it."""
    from mmtok.train.plot import draw_panels

    run_dir = Path(run_dir)
    series, resumes = read_metrics(run_dir)
    if not series:
        raise CheckpointError(f"no metrics to plot in {run_dir}: no logs/version_*/metrics.csv with values",
                              hint="give a run directory written by `mmtok train` after it logged a step")
    names = panel_order(series)
    title = run_dir.resolve().name + ("   (dashed lines: resumed)" if resumes else "")
    image = draw_panels([(n, series[n]) for n in names], resumes, title=title, columns=columns)
    out = save_image(image, Path(out) if out is not None else run_dir / "curves.png")
    return out
