"""What runs a folder holds: `list_runs(root)` -> one `RunInfo` per run directory, newest activity first.

A run directory is a folder with a recipe.yaml and at least one of summary.json, checkpoints/ or logs/ (what
`mmtok train` writes). Everything is read from files, never from checkpoints (no torch, fast):
- recipe: summary.json's "recipe", else recipe.yaml's "name";
- step, held-out PSNR and codebook usage: summary.json when it is up to date (written after the last
  checkpoint and log), else the last values in logs/version_*/metrics.csv;
- status: summary.json's "status" ("finished", "stopped on time", "interrupted"; older summaries: finished
  when step >= max_steps, else "stopped"); without an up-to-date summary, "running?" when a log or the
  checkpoint changed in the last `RECENT_S` seconds, else "interrupted" (the process ended without a summary:
  killed, crashed or still in its first steps' buffering);
- time: summary.json's "seconds_total" (every invocation of the run: the first and each resume), else its
  "seconds" (summaries written before resumes were added up).
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from mmtok.errors import CheckpointError
from mmtok.files import last_checkpoint
from mmtok.train.curves import last_value, metric_files, read_metrics

RECENT_S = 15 * 60
_SLACK_S = 2.0  # a summary written within this of the last log/checkpoint write is up to date


@dataclass
class RunInfo:
    path: str
    recipe: str | None
    step: int | None
    max_steps: int | None
    psnr: float | None
    usage: float | None  # fraction of the codebook used, 0..1
    seconds: float | None
    status: str
    modified: float  # newest write to summary, logs or checkpoint (epoch seconds)

    def to_dict(self) -> dict:
        return asdict(self)


def is_run_dir(path: Path) -> bool:
    return (path / "recipe.yaml").is_file() and any(
        (path / n).exists() for n in ("summary.json", "checkpoints", "logs"))


def find_runs(root: str | Path) -> list[Path]:
    """Run directories at or under `root` (not looking inside a run directory)."""
    root = Path(root)
    if not root.is_dir():
        raise CheckpointError(f"no runs folder at {root}",
                              hint="give the folder that holds your runs (default: ./runs)")
    found = []
    for dirpath, dirnames, _ in os.walk(root, followlinks=True):
        here = Path(dirpath)
        if is_run_dir(here):
            found.append(here)
            dirnames[:] = []
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
    return found


def list_runs(root: str | Path) -> list[RunInfo]:
    """Every run under `root`, newest activity first."""
    return sorted((run_info(p) for p in find_runs(root)), key=lambda r: r.modified, reverse=True)


def run_info(run: str | Path) -> RunInfo:
    run = Path(run)
    recipe = _yaml(run / "recipe.yaml")
    summary = _json(run / "summary.json")
    activity = max([_mtime(p) for p in metric_files(run)] + [_mtime(last_checkpoint(run)),
                                                               _mtime(run / "recipe.yaml")])
    summary_time = _mtime(run / "summary.json")
    current = summary is not None and summary_time + _SLACK_S >= activity
    max_steps = _get(summary, "max_steps") if current else None
    if max_steps is None:
        max_steps = _get(recipe, "trainer", "max_steps")

    series, _ = read_metrics(run)
    logged_steps = [pts[-1][0] for pts in series.values() if pts]
    final = (_get(summary, "final") or {}) if current else {}
    step = _get(summary, "step") if current else (max(logged_steps) if logged_steps else _get(summary, "step"))
    psnr = final.get("val/psnr", last_value(series, "val/psnr"))
    usage = final.get("val/usage", last_value(series, "val/usage"))

    if current:
        status = summary.get("status") or ("finished" if (step or 0) >= (max_steps or 0) else "stopped")
    elif time.time() - activity < RECENT_S:
        status = "running?"
    else:
        status = "interrupted"
    return RunInfo(path=str(run), recipe=_get(summary, "recipe") or _get(recipe, "name"), step=_int(step),
                   max_steps=_int(max_steps), psnr=_float(psnr), usage=_float(usage),
                   seconds=_float(_get(summary, "seconds_total") or _get(summary, "seconds")), status=status,
                   modified=max(activity, summary_time))


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _yaml(path: Path) -> dict | None:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


def _get(d: dict | None, *keys):
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def _int(v) -> int | None:
    try:
        return int(v) if v is not None else None
    except (TypeError, ValueError):
        return None


def _float(v) -> float | None:
    try:
        return float(v) if v is not None else None
    except (TypeError, ValueError):
        return None
