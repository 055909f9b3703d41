"""Starting a run from existing weights (`init`) and keeping parameters frozen (`optim.freeze`).

`init_weights(model, init, family)` copies the weights of a run directory, a `.ckpt` or a bundle of the same
family into a freshly built model: strict by default (every key of the model must come from the source with
its shape, and every key of the source must land), except keys matching `init.partial` globs, which may be
missing from the source (they keep their fresh initialisation), be unexpected (dropped) or differ in shape
(left fresh), and keys matching `init.exclude` globs, which are never copied (e.g. a codebook to re-initialise
by k-means on the new features). Returns a report of what was loaded, kept fresh and dropped.

`freeze(model, patterns)` turns off gradients of the parameters whose names match any glob (fnmatch, e.g.
"qformer.*"); a pattern that matches nothing is an error. The optimizer then leaves them out.
"""
from __future__ import annotations

from fnmatch import fnmatch

from mmtok.errors import CheckpointError, RecipeError


def _matches(name: str, patterns) -> bool:
    return any(fnmatch(name, p) for p in patterns)


def _names(keys: list[str], limit: int = 4) -> str:
    return ", ".join(keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def source_state(path: str, weights: str = "ema") -> tuple[dict, str, dict]:
    """(state dict, family name, info) of the model at `path` (run directory, .ckpt or bundle); `weights` "ema"
    or "raw" picks the checkpoint's copy (a bundle holds one)."""
    from mmtok.model_io import load_model

    model, recipe, info = load_model(path, ema=weights == "ema")
    return model.state_dict(), recipe.model.family, info


def init_weights(model, init, family: str) -> dict:
    """Load `init.path` into `model` (see the module docstring); CheckpointError names the first problems and
    the fix, before any training."""
    from pathlib import Path

    if not Path(init.path).exists():  # e.g. SEED stage 2 before stage 1, or a run trained under another --out
        raise CheckpointError(f"init.path {init.path}: no run, checkpoint or bundle there; this recipe starts from "
                              "existing weights", hint="train those first (e.g. the recipe's stage 1), or point to "
                              "yours: --set init.path=<run directory, .ckpt or bundle>")
    state, source_family, info = source_state(init.path, init.weights)
    if source_family != family:
        raise CheckpointError(f"init.path {init.path} holds a {source_family!r} model; this recipe trains {family!r}",
                              hint=f"start from a {family} run or bundle, or drop init.path")
    own = model.state_dict()
    fresh_by_choice = sorted(k for k in own if _matches(k, init.exclude))
    own = {k: v for k, v in own.items() if k not in fresh_by_choice}
    state = {k: v for k, v in state.items() if not _matches(k, init.exclude)}
    partial = list(init.partial)
    missing = sorted(k for k in own if k not in state)
    unexpected = sorted(k for k in state if k not in own)
    shapes = sorted(k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape))
    problems = []
    hard_missing = [k for k in missing if not _matches(k, partial)]
    hard_unexpected = [k for k in unexpected if not _matches(k, partial)]
    hard_shapes = [k for k in shapes if not _matches(k, partial)]
    if hard_missing:
        problems.append(f"{len(hard_missing)} key(s) of the model missing from it ({_names(hard_missing)})")
    if hard_unexpected:
        problems.append(f"{len(hard_unexpected)} key(s) the model lacks ({_names(hard_unexpected)})")
    if hard_shapes:
        problems.append(f"{len(hard_shapes)} shape mismatch(es) (" + _names(
            [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in hard_shapes]) + ")")
    if problems:
        raise CheckpointError(f"init.path {init.path} does not fit this model: " + "; ".join(problems),
                              hint="use the source's model settings, or list the differing keys in init.partial "
                              "(globs such as 'pixel_decoder.*') to keep them fresh or drop them")
    loaded = {k: v for k, v in state.items() if k in own and k not in shapes}
    model.load_state_dict(loaded, strict=False)
    return {"path": str(init.path), "weights": info["weights"], "step": info["step"], "loaded": len(loaded),
            "fresh": sorted(set(missing) | set(shapes) | set(fresh_by_choice)), "dropped": unexpected}


def freeze(model, patterns) -> dict:
    """requires_grad=False on every parameter whose name matches a glob in `patterns`; RecipeError naming a
    pattern that matches no parameter. Returns {"tensors", "params", "patterns"}."""
    names = [n for n, _ in model.named_parameters()]
    unmatched = [p for p in patterns if not any(fnmatch(n, p) for n in names)]
    if unmatched:
        tops = sorted({n.split(".")[0] for n in names})
        raise RecipeError(f"optim.freeze: {', '.join(repr(p) for p in unmatched)} match(es) no parameter",
                          hint="parameter names start with: " + ", ".join(tops) + " (globs, e.g. 'encoder.*')")
    frozen = 0
    tensors = 0
    for n, p in model.named_parameters():
        if _matches(n, patterns):
            p.requires_grad_(False)
            frozen += p.numel()
            tensors += 1
    return {"tensors": tensors, "params": frozen, "patterns": list(patterns)}


def init_adversary(adversary, path: str, exclude=()) -> str:
    """Load the discriminator weights that `path` carries into `adversary`: a bundle's adversary.safetensors (an
    imported release's), or the `adversary.*` weights of a run / .ckpt. Keys matching an `exclude` glob (init.exclude,
    e.g. 'adversary.*') are not copied. Each of the adversary's parts (its top-level modules, e.g. `discriminator`,
    `lecam`) that the source has is loaded strictly (a mismatch names the keys and the fix); a part the source lacks
    stays fresh. Returns what happened, in words; a source without any leaves the adversary fresh (it then trains
    alone for loss.gan.warmup_steps steps before the generator sees it)."""
    from pathlib import Path

    from mmtok.files import last_checkpoint
    from mmtok.model_io import model_kind, read_checkpoint
    from mmtok.weights import load_strict

    kind = model_kind(path)
    if kind == "bundle":
        from mmtok.export.load import ADVERSARY_FILE

        file = Path(path) / ADVERSARY_FILE
        if not file.is_file():
            return "fresh (the source has no discriminator)"
        from safetensors.torch import load_file

        state = load_file(str(file))
    else:
        file = last_checkpoint(path) if kind == "run" else Path(path)
        state = {k[len("adversary."):]: v for k, v in read_checkpoint(file)["state_dict"].items()
                 if k.startswith("adversary.")}
        if not state:
            return "fresh (the source trained without a discriminator)"
    state = {k: v for k, v in state.items() if not _matches(f"adversary.{k}", exclude)}
    if not state:
        return "fresh (init.exclude)"
    parts = {name: module for name, module in adversary.named_children() if module.state_dict()}
    unknown = sorted({k.split(".", 1)[0] for k in state} - set(parts))
    if unknown:
        raise CheckpointError(f"{file}: discriminator parts {', '.join(unknown)} do not exist in this recipe's "
                              f"adversary ({', '.join(parts)})", hint="use the source's loss.gan settings")
    loaded = []
    for name, module in parts.items():
        mine = {k[len(name) + 1:]: v for k, v in state.items() if k.startswith(name + ".")}
        if mine:
            try:
                load_strict(module, mine, f"{file} ({name})")
            except CheckpointError as e:
                raise CheckpointError(e.message, hint="use the source's loss.gan settings, or add 'adversary.*' to "
                                      "init.exclude to start the discriminator fresh") from None
            loaded.append(name)
    fresh = [n for n in parts if n not in loaded]
    return f"loaded {', '.join(loaded)} from {file}" + (f" ({', '.join(fresh)} fresh)" if fresh else "")
