"""`mmtok doctor`: what this machine has: every pretrained asset, the teachers and classifiers they make, torch,
CUDA, Triton, bf16, CPU threads."""
from __future__ import annotations

import importlib.util
import os
import platform


def asset_rows() -> list[tuple[str, str, str, str]]:
    """(name, "found" | "missing", the path found or every place looked, how to provide it) per asset."""
    from mmtok.assets import ASSETS

    rows = []
    for name, asset in ASSETS.items():
        found = asset.find()
        where = str(found) if found else "\n".join(str(p) for p in asset.candidates())
        rows.append((name, "found" if found else "missing", where, "" if found else asset.how))
    return rows


def teacher_rows() -> list[tuple[str, str, str, str, str]]:
    """(name, "teacher" | "classifier", what it is, "found" | "missing", path or every place looked) per registered
    teacher preset, ImageNet classifier and text encoder preset (mmtok.teachers), from its weights asset. Imports
    no torch."""
    from mmtok.assets import ASSETS
    from mmtok.teachers.config import CLASSIFIERS, TEACHER_PRESETS, TEXT_ENCODER_PRESETS

    rows = []
    named = [(n, "teacher", p["weights"], f"{p['kind']} {p.get('arch') or p['weights']}, layer {p.get('layer', -1)}")
             for n, p in TEACHER_PRESETS.items()]
    named += [(n, "classifier", asset, f"ImageNet logits at {res} px") for n, (asset, res) in CLASSIFIERS.items()]
    named += [(n, "text encoder", p["weights"], f"captions, {p['dim']}-d mean pooled")
              for n, p in TEXT_ENCODER_PRESETS.items()]
    for name, role, asset_name, what in named:
        asset = ASSETS[asset_name]
        found = asset.find()
        where = str(found) if found else "\n".join(str(p) for p in asset.candidates())
        rows.append((name, role, f"{what} (asset {asset_name})", "found" if found else "missing", where))
    return rows


def environment_rows() -> list[tuple[str, str]]:
    import torch

    import mmtok

    cuda = torch.cuda.is_available()
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if cuda else []
    if cuda:
        bf16 = "yes" if torch.cuda.is_bf16_supported() else "no (this GPU lacks native bf16)"
    else:
        bf16 = "CPU only: bf16 autocast works but is slow; training uses fp32 on CPU"
    try:
        triton = importlib.util.find_spec("triton") is not None  # found, not imported (importing is slow)
    except (ImportError, ValueError):
        triton = False
    return [
        ("mmtok", mmtok.__version__),
        ("python", platform.python_version()),
        ("torch", torch.__version__),
        ("CUDA available", f"yes, {len(names)} device(s): " + ", ".join(names) if cuda else "no"),
        ("CUDA runtime", str(torch.version.cuda)),
        ("accelerator auto means", _auto_devices()),
        ("triton importable", "yes (fused lookup kernels on CUDA)" if triton else "no (torch lookup path)"),
        ("bf16", bf16),
        ("CPU threads (torch)", f"{torch.get_num_threads()} of {os.cpu_count()} cores"),
        ("MMTOK_HOME", os.environ.get("MMTOK_HOME", "(unset: ~/.cache/mmtok)")),
    ]


def _auto_devices() -> str:
    """What `auto` resolves to here (train's trainer.accelerator/devices, eval's --accelerator/--devices)."""
    from mmtok.hardware import resolve

    accelerator, devices = resolve("auto", "auto")
    if accelerator == "cpu":
        return "cpu, 1 process (more with devices: N; GPU ids need CUDA)"
    return f"gpu, all {devices} visible GPU(s) (choose with devices: N or a list of ids, e.g. [0, 1])"


def doctor_command():
    """List every pretrained asset (found or missing, where, how to get it), the teachers and classifiers built on
    them, and the machine's torch setup.

    Always exits 0: a missing asset only disables what needs it (e.g. rFID without the Inception weights).
    """
    from rich.table import Table

    from mmtok.cli.common import table_console

    console = table_console()
    assets = Table(title="assets (resolved: explicit path, then $MMTOK_HOME/assets, then the library's cache)")
    for col in ("asset", "status", "path / looked in", "how to provide it"):
        assets.add_column(col, overflow="fold")
    for name, status, where, how in asset_rows():
        colour = "green" if status == "found" else "red"
        assets.add_row(name, f"[{colour}]{status}[/{colour}]", where, how)
    console.print(assets)
    teachers = Table(title="teachers and classifiers (recipe: teacher: NAME; evaluation: classifier agreement)")
    for col in ("name", "role", "what", "status", "weights / looked in"):
        teachers.add_column(col, overflow="fold")
    for name, role, what, status, where in teacher_rows():
        colour = "green" if status == "found" else "red"
        teachers.add_row(name, role, what, f"[{colour}]{status}[/{colour}]", where)
    console.print(teachers)
    env = Table(title="environment")
    env.add_column("what")
    env.add_column("value", overflow="fold")
    for what, value in environment_rows():
        env.add_row(what, value)
    console.print(env)
