"""Reading a local weights file and loading it into a network with a one-line verdict when it does not fit.

`read_state_dict` opens .safetensors or a torch state dict (.pth / .bin / .pt, weights_only) and unwraps the
usual containers ({"state_dict": ...}, {"model": ...}, "module." prefixes). `load_exact` loads every tensor
by name and shape or raises one AssetError naming the file, what was expected (tensor count, missing,
unexpected, wrong shapes, a few of each) and the hint.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn

from mmtok.errors import AssetError

SHOWN = 3  # names listed per kind of problem


def read_state_dict(file: str | os.PathLike, what: str, how: str) -> dict[str, Tensor]:
    path = Path(file)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to read is an unreadable asset
        first = str(e).splitlines()[0] if str(e) else ""
        raise AssetError(f"{what} weights {path} are unreadable ({type(e).__name__}: {first})", hint=how) from e
    for container in ("state_dict", "model", "module"):
        if isinstance(state, dict) and isinstance(state.get(container), dict):
            state = state[container]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise AssetError(f"{what} weights {path} are not a state dict (name -> tensor)", hint=how)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _few(names: list[str]) -> str:
    more = f" ...({len(names) - SHOWN} more)" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def mismatch(expected: dict[str, Tensor], given: dict[str, Tensor]) -> str:
    """'' when `given` has exactly the names and shapes of `expected`, else what differs, in one line."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    shapes = [f"{k} {tuple(given[k].shape)} vs {tuple(expected[k].shape)}" for k in expected
              if k in given and tuple(given[k].shape) != tuple(expected[k].shape)]
    parts = [f"missing: {_few(missing)}" if missing else "", f"unexpected: {_few(unexpected)}" if unexpected else "",
             f"wrong shape (file vs model): {_few(shapes)}" if shapes else ""]
    return "; ".join(p for p in parts if p)


def load_exact(module: nn.Module, state: dict[str, Tensor], file: str | os.PathLike, what: str, how: str) -> None:
    """Load `state` into `module` by name; every tensor must be there with the model's shape, nothing extra."""
    own = module.state_dict()
    problem = mismatch(own, state)
    if problem:
        raise AssetError(f"{file} does not fit {what} ({len(own)} tensors; {problem})", hint=how)
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)
