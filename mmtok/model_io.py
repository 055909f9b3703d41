"""Load a trained tokenizer from wherever it lives: a run directory, a Lightning checkpoint, or a bundle.

`load_model(path, ema=True) -> (tokenizer nn.Module in eval mode, Recipe, info)`.

- run directory (holds checkpoints/last.ckpt): that checkpoint.
- `.ckpt` file: a checkpoint written by `mmtok train`. Read with `torch.load(weights_only=True)`: mmtok's
  checkpoints hold only tensors, numbers, strings and plain containers (the recipe is stored as a dict under
  checkpoint["mmtok"]), so nothing is ever unpickled beyond those. A checkpoint that needs arbitrary
  unpickling is refused with a CheckpointError (it was not written by mmtok).
- bundle directory (holds config.json + model.safetensors): read through `mmtok.export.load` (JSON and
  safetensors only, checksums verified).

Weights: the EMA copy (`ema.module.*`) by default; `ema=False` takes the live weights (`tokenizer.*`).
A checkpoint trained without EMA gives its live weights, and `info["weights"]` says so.
"""
from __future__ import annotations

import os
from pathlib import Path

from mmtok.errors import CheckpointError
from mmtok.files import last_checkpoint

EMA_PREFIX = "ema.module."
RAW_PREFIX = "tokenizer."


def model_kind(path: str | os.PathLike) -> str:
    """"run", "checkpoint" or "bundle" for `path`; CheckpointError saying what is there when it is none."""
    p = Path(path)
    if p.is_file():
        if p.suffix == ".ckpt":
            return "checkpoint"
        raise CheckpointError(f"{p} is not a checkpoint (.ckpt)",
                              hint="give a run directory, a .ckpt file or an exported bundle directory")
    if p.is_dir():
        if last_checkpoint(p).is_file():
            return "run"
        if (p / "config.json").is_file() and (p / "model.safetensors").is_file():
            return "bundle"
        present = sorted(c.name for c in p.iterdir())[:8]
        raise CheckpointError(
            f"{p} is neither a run directory (no checkpoints/last.ckpt) nor a bundle (no config.json + "
            f"model.safetensors); it holds: {', '.join(present) or 'nothing'}",
            hint="point at a run directory from `mmtok train`, its .ckpt file, or a bundle from `mmtok export`",
        )
    raise CheckpointError(f"no model at {p}: the path does not exist",
                          hint="give a run directory, a .ckpt file or an exported bundle directory")


def read_checkpoint(path: str | os.PathLike, mmap: bool = False) -> dict:
    """The checkpoint dict at `path`, read with torch.load(weights_only=True) on CPU (`mmap`: tensors stay in
    the file until touched, for a quick look at the recipe)."""
    import pickle

    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"{path} holds Python objects that safe loading refuses ({first[:160]})",
            hint="mmtok checkpoints load with weights_only=True; this file was not written by `mmtok train`",
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError) as e:
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(e).__name__}: {str(e)[:160]})",
                              hint="the file is truncated or corrupt; use an earlier checkpoint") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{path} is not a Lightning checkpoint (no state_dict)")
    if "mmtok" not in ckpt or "recipe" not in ckpt.get("mmtok", {}):
        raise CheckpointError(f"{path} was not written by mmtok (no recipe inside)",
                              hint="evaluate checkpoints from `mmtok train`")
    return ckpt


def model_family(path: str | os.PathLike) -> str:
    """The family name of the model at `path` (run directory, .ckpt or bundle) without building it."""
    from mmtok import config

    kind = model_kind(path)
    if kind == "bundle":
        from mmtok.export.load import CONFIG_FILE, read_json

        family = read_json(Path(path) / CONFIG_FILE).get("family")
        if not isinstance(family, str):
            raise CheckpointError(f"{Path(path) / CONFIG_FILE} names no family", hint="re-export the bundle")
        return family
    file = last_checkpoint(path) if kind == "run" else Path(path)
    recipe = read_checkpoint(file, mmap=True)["mmtok"]["recipe"]
    model = recipe.get("model") or {}
    if "family" in model:
        return model["family"]
    return config.load_stored(recipe).model.family


def load_model(path: str | os.PathLike, *, ema: bool = True, map_location: str = "cpu"):
    """(tokenizer nn.Module in eval mode with requires_grad off, Recipe, info dict) for a run directory,
    a .ckpt file or a bundle (see the module docstring).

    info: {"path", "source" ("run" | "checkpoint" | "bundle"), "checkpoint" (file read), "weights" ("ema" |
    "raw"), "note" (why the weights differ from those asked for, or ""), "step", "mmtok_version", "seed",
    "recipe_name"}. Raises CheckpointError for anything missing, unreadable or mismatched, naming keys.
    """
    kind = model_kind(path)
    if kind == "bundle":
        from mmtok.export.load import load_bundle_model

        model, recipe, info = load_bundle_model(path)
        if not ema:
            info["note"] = "a bundle holds only the weights it was exported with; --no-ema has no effect"
        return model.to(map_location), recipe, info

    from mmtok import config, families
    from mmtok.errors import RecipeError
    from mmtok.weights import load_strict

    file = last_checkpoint(path) if kind == "run" else Path(path)
    ckpt = read_checkpoint(file)
    meta = ckpt["mmtok"]
    try:
        recipe = config.load_stored(meta["recipe"])
    except RecipeError as e:
        raise CheckpointError(f"the recipe inside {file} does not validate with this mmtok ({e.message})",
                              hint="evaluate it with the mmtok version that trained it "
                              f"({meta.get('version', 'unknown')})") from None
    state = ckpt["state_dict"]
    has_ema = any(k.startswith(EMA_PREFIX) for k in state)
    note = ""
    if ema and has_ema:
        prefix, weights = EMA_PREFIX, "ema"
    else:
        prefix, weights = RAW_PREFIX, "raw"
        if ema:
            note = "no EMA weights in the checkpoint (trained with optim.ema_decay: null): the live weights are used"
    weights_sd = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    model = families.build_model(recipe.model, pretrained=False)  # every weight comes from the file
    if prefix == EMA_PREFIX:  # frozen teachers are stored once, under the live model (mmtok.train.ema.frozen_keys)
        from mmtok.train.ema import frozen_keys

        for key in frozen_keys(model):
            if key not in weights_sd and RAW_PREFIX + key in state:
                weights_sd[key] = state[RAW_PREFIX + key]
    load_strict(model, weights_sd, f"{file} ({prefix}*)")
    model.eval().requires_grad_(False)
    info = {"path": str(path), "source": kind, "checkpoint": str(file), "weights": weights, "note": note,
            "step": int(ckpt.get("global_step", -1)), "mmtok_version": meta.get("version"),
            "seed": meta.get("seed", recipe.seed), "recipe_name": recipe.name}
    return model.to(map_location), recipe, info


def weights_fingerprint(model, model_config: dict) -> str:
    """sha256 over the model section of the recipe (canonical JSON) and every tensor of the model's state dict
    (name, dtype, shape, bytes): the identity of "these weights for this model". `mmtok eval` records it and
    `mmtok export` embeds only an evaluation whose fingerprint equals the exported model's."""
    import hashlib
    import json

    import torch

    h = hashlib.sha256(json.dumps(model_config, sort_keys=True, default=str).encode())
    for name, t in sorted(model.state_dict().items()):
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
