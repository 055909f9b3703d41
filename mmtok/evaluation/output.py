"""Where evaluations go, and finding them again.

Every `mmtok eval` writes a folder of its own, never over an earlier one:

- without --out: the next free number under the model's evaluation folder, `RUN/eval/001`, `RUN/eval/002`,
  ... (for a run directory or RUN/checkpoints/x.ckpt), else `./eval-NAME/001`, ... The number is taken
  when the results are written (an atomic mkdir), so two evaluations at once never share a folder.
- with --out DIR: DIR must be absent or empty; `--force` writes into a non-empty DIR, first removing the
  files an evaluation writes there (so no stale picture is left beside new numbers).

`find_evaluations(base)` lists the metrics.json files under such a folder, oldest first (by the `created`
time inside, the folder's number breaking ties); an evaluation written before numbered folders existed
(BASE/metrics.json) is listed too.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from mmtok.errors import MmtokError
from mmtok.files import CHECKPOINTS, checkpoint_dir

EVAL_FILES = ("metrics.json", "report.md", "reconstructions.png", "codebook_usage.png", "codebook_counts.npy")


def eval_base(model_path: str | os.PathLike) -> Path:
    """RUN/eval for a run directory (and for RUN/checkpoints/x.ckpt), else ./eval-NAME."""
    p = Path(model_path)
    if p.is_dir() and checkpoint_dir(p).is_dir():
        return p / "eval"
    if p.is_file() and p.parent.name == CHECKPOINTS and (p.parent.parent / "recipe.yaml").is_file():
        return p.parent.parent / "eval"
    return Path(f"eval-{p.stem if p.is_file() else p.resolve().name}")


def _number(p: Path) -> int | None:
    return int(p.name) if p.name.isdigit() else None


def next_eval_dir(base: Path) -> Path:
    """Create and return the next numbered folder under `base` (001, 002, ...)."""
    base.mkdir(parents=True, exist_ok=True)
    n = max([k for k in map(_number, base.iterdir()) if k is not None], default=0) + 1
    while True:
        d = base / f"{n:03d}"
        try:
            d.mkdir()
            return d
        except FileExistsError:  # another evaluation took it meanwhile
            n += 1


def check_out(out: str | os.PathLike | None, force: bool) -> None:
    """Before any work: MmtokError when --out names a file, or a non-empty folder without --force."""
    if out is None:
        return
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise MmtokError(f"--out {p} is a file", hint="give a folder for the evaluation's results")
    if p.is_dir() and any(p.iterdir()) and not force:
        raise MmtokError(f"--out {p} is not empty (an earlier evaluation?)",
                         hint="omit --out to get a new numbered folder under the model's eval/, choose "
                         "another folder, or add --force to replace its results")


def prepare_out(out: str | os.PathLike | None, model_path: str | os.PathLike, force: bool) -> Path:
    """The folder this evaluation writes into, created (see the module docstring)."""
    if out is None:
        return next_eval_dir(eval_base(model_path))
    p = Path(out)
    check_out(p, force)  # again: something may have appeared during the evaluation
    p.mkdir(parents=True, exist_ok=True)
    for name in EVAL_FILES:
        (p / name).unlink(missing_ok=True)
    return p


def find_evaluations(base: str | os.PathLike) -> list[Path]:
    """metrics.json files under `base` (numbered folders and a legacy BASE/metrics.json), oldest first."""
    base = Path(base)
    if not base.is_dir():
        return []
    found = [base / "metrics.json"] if (base / "metrics.json").is_file() else []
    found += [d / "metrics.json" for d in base.iterdir() if _number(d) is not None and (d / "metrics.json").is_file()]

    def key(f: Path):
        try:
            created = str(json.loads(f.read_text()).get("created", ""))
        except (OSError, ValueError):
            created = ""
        return created, _number(f.parent) if f.parent != base else -1

    return sorted(found, key=key)
