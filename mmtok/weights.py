"""Strict state-dict loading with one error that names every problem (checkpoints and bundles alike)."""
from __future__ import annotations

from typing import Any

from mmtok.errors import CheckpointError


def load_strict(model, state: dict[str, Any], where: str) -> None:
    """Load `state` into `model` requiring exactly its keys and shapes; CheckpointError names every problem."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    problems = []
    if missing:
        problems.append(f"missing {_names(missing)}")
    if unexpected:
        problems.append(f"unexpected {_names(unexpected)}")
    if shapes:
        problems.append("shape mismatch " + _names(
            [f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in shapes]))
    if problems:
        raise CheckpointError(f"{where} does not match the model: " + "; ".join(problems),
                              hint="the weights were written for a different model configuration or are damaged")
    model.load_state_dict(state, strict=True)


def _names(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return f"{len(keys)} key(s): {shown}" + (f", and {len(keys) - limit} more" if len(keys) > limit else "")
