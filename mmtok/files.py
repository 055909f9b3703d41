"""Files mmtok writes: every file is written atomically (a temporary file, then a rename), and a run directory's
parts have one name each.

    atomic_write(path, lambda tmp: torch.save(obj, tmp))   # any writer
    write_text(path, text); write_json(path, data); save_image(pil_image, path)
    last_checkpoint(run_dir)                              # RUN/checkpoints/last.ckpt
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

CHECKPOINTS = "checkpoints"  # RUN/checkpoints/: last.ckpt, step_NNNNNNN.ckpt, best.ckpt
LAST = "last.ckpt"


def checkpoint_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / CHECKPOINTS


def last_checkpoint(run_dir: str | os.PathLike) -> Path:
    """RUN/checkpoints/last.ckpt (it may not exist yet)."""
    return checkpoint_dir(run_dir) / LAST


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Call `write(tmp)`, then rename the temporary file onto `path` (parent folders made): readers see the old
    file or the whole new one, never a part. The temporary file keeps `path`'s suffix (writers that pick a format
    by suffix, such as PIL's, still do) and carries the process id, so ranks writing at once never share one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text))


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """`data` as indented JSON with a final newline."""
    return write_text(path, json.dumps(data, indent=2) + "\n")


def save_image(image, path: str | os.PathLike) -> Path:
    """A PIL image, in the format of `path`'s suffix."""
    return atomic_write(path, image.save)
