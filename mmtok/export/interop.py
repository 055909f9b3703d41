"""Released tokenizers in, mmtok tokenizers out: the engine under `mmtok import` and `mmtok export --format hf`.

A family whose architecture matches a release owns that release's name rules (its `interop` module, named by
`Family.formats` / `Family.hf_export`); this module applies them, the same way for every family:

- reading: the release's files are read by mmtok.export.release_files (weights_only, plain-data records, weight
  norm merged).
- mapping: a list of `Rule`s, one per tensor of the mmtok model (weight-norm parametrisations merged into plain
  weights: `plain_state`): `target` <- the source keys and how they combine. `apply_rules` is strict both ways:
  every model key has a rule, every source key is used or matched by an `ignore` glob with its reason, every shape
  is checked; problems come back as one line naming the first keys and the likely cause. `invert_rules` runs the
  same rules backwards for an export.
- writing: `write_imported` writes an ordinary bundle (mmtok.export.bundle) from the mapped weights.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from fnmatch import fnmatch
from pathlib import Path
from typing import Any, Callable, Mapping

from mmtok.errors import CheckpointError, MmtokError

# ------------------------------------------------------------------------------------------------- rules


@dataclass(frozen=True)
class Rule:
    """mmtok key `target` <- source keys `sources` combined by `how` (a key of TRANSFORMS); with `how="fill"`,
    a value mmtok keeps that the source has no counterpart for (`value`, filled on import, dropped on export)."""

    target: str
    sources: tuple[str, ...] = ()
    how: str = "copy"
    value: float = 0.0


def _conv1x1_in(ts):
    (t,) = ts
    if t.dim() != 4 or tuple(t.shape[2:]) != (1, 1):
        return None  # not a 1x1 conv: reported as a shape mismatch
    return t.reshape(t.shape[0], t.shape[1])


def _unit_rows_out(t, n):
    import torch.nn.functional as F

    return [F.normalize(t.float(), dim=1).to(t.dtype)]


# how -> (source tensors -> mmtok tensor (None: not of the expected kind), (mmtok tensor, n sources) -> source tensors)
TRANSFORMS: dict[str, tuple[Callable, Callable]] = {
    "copy": (lambda ts: ts[0], lambda t, n: [t]),
    # separate q / k / v (1x1 convs) -> one fused qkv, stacked on the output channels
    "cat": (lambda ts: __import__("torch").cat(list(ts), 0), lambda t, n: list(t.chunk(n, 0))),
    # a 1x1 Conv2d weight [out, in, 1, 1] <-> a Linear weight [out, in]
    "conv1x1": (_conv1x1_in, lambda t, n: [t.reshape(*t.shape, 1, 1)]),
    # a kernel-1 Conv1d weight [out, in, 1] <-> a Linear weight [out, in]
    "conv1d_k1": (lambda ts: ts[0][..., 0] if ts[0].dim() == 3 and ts[0].shape[2] == 1 else None,
                  lambda t, n: [t.unsqueeze(-1)]),
    # codes that mmtok l2-normalises at use: copied in; written out as unit rows for a class that does not
    "unit_rows": (lambda ts: ts[0], _unit_rows_out),
}


@dataclass
class Source:
    """What a family's reader found in a release: its tensors, the model section it builds, and notes."""

    tensors: Mapping[str, Any]  # source key -> tensor (the model's weights, names as the release writes them)
    model: dict  # the recipe's model section (family, preset fields, ...)
    recipe: str  # the shipped recipe whose loss / optim / data sections the bundle's recipe.yaml starts from
    ignore: dict[str, str] = field(default_factory=dict)  # glob of source keys left unused -> why
    adversary: Mapping[str, Any] | None = None  # the release's discriminator, keyed as the recipe's adversary
    overrides: list[str] = field(default_factory=list)  # recipe overrides that fit the adversary ("loss.gan.ndf=64")
    step: int = -1  # the release's training step, when it records one
    weights: str = "raw"  # "ema" when the release's EMA copy was taken
    config_from: str = ""  # where the configuration came from: a file, or "inferred from tensor shapes"
    notes: list[str] = field(default_factory=list)


VQ_BOOKKEEPING = ("initted", "steps_unused", "restarts")  # mmtok's codebook state: no release has it


def codebook_fills(prefix: str) -> list[Rule]:
    """The fills of one mmtok codebook's bookkeeping (`prefix`: its module): initialised (so k-means does not
    re-draw the imported codes), nothing unused, no restarts."""
    return [Rule(f"{prefix}.{k}", how="fill", value=1.0 if k == "initted" else 0.0) for k in VQ_BOOKKEEPING]


def refuse_config(fmt: str, config: str | None, where: str) -> None:
    """MmtokError when --config is given to a format whose configuration comes from the release (`where`)."""
    if config:
        raise MmtokError(f"--config does not apply to {fmt}: the configuration is read from {where}",
                         hint="drop --config")


def apply_rules(rules: list[Rule], source: Mapping[str, Any], model_state: Mapping[str, Any], *,
                ignore: Mapping[str, str], where: str, fmt: str) -> dict[str, Any]:
    """The mmtok state dict made from `source` by `rules`; CheckpointError (one line) unless every model key has
    a rule, every rule's source keys exist with fitting shapes, and every source key is used or ignored."""
    import torch

    targets = [r.target for r in rules]
    unset = [k for k in model_state if k not in set(targets)]
    extra = [t for t in targets if t not in model_state]
    if unset or extra:  # the rules and the model disagree: a defect in mmtok's rules, not in the file
        raise MmtokError(f"mmtok's {fmt} name rules do not cover the model: unset {_first(unset)}; "
                         f"unknown targets {_first(extra)}", hint="report this as a bug in mmtok")
    out, missing, shapes, used = {}, [], [], set()
    for rule in rules:
        own = model_state[rule.target]
        if rule.how == "fill":
            out[rule.target] = torch.full_like(own, rule.value)
            continue
        absent = [k for k in rule.sources if k not in source]
        if absent:
            missing += absent
            continue
        used.update(rule.sources)
        try:
            made = TRANSFORMS[rule.how][0]([source[k] for k in rule.sources])
        except RuntimeError:  # e.g. q / k / v of different shapes
            made = None
        if made is None or tuple(made.shape) != tuple(own.shape):
            got = tuple(source[rule.sources[0]].shape)
            shapes.append(f"{rule.sources[0]} {got} (mmtok {rule.target} needs {tuple(own.shape)})")
            continue
        out[rule.target] = made.detach().to(dtype=own.dtype).clone()
    unknown = [k for k in source if k not in used and not any(fnmatch(k, g) for g in ignore)]
    if missing or shapes or unknown:
        raise CheckpointError(f"{where} does not fit the {fmt} layout: " + _problems(missing, shapes, unknown),
                              hint=_likely_cause(missing, shapes, unknown, len(rules), fmt))
    return out


def plain_state(model) -> dict[str, Any]:
    """The model's state dict with every weight-norm parametrisation merged into its plain weight (`X.weight`
    instead of `X.parametrizations.weight.original0 / original1`): name rules speak of plain weights, since
    releases store either those or their own g / v pair (see merge_weight_norm)."""
    from torch.nn.utils import parametrize

    state = dict(model.state_dict())
    for name, module in model.named_modules():
        if parametrize.is_parametrized(module, "weight"):
            for part in ("original0", "original1"):
                del state[f"{name}.parametrizations.weight.{part}"]
            state[f"{name}.weight"] = module.weight.detach().clone()
    return state


def load_plain(model, plain: Mapping[str, Any]) -> None:
    """Load a plain state (plain_state's keys) strictly: a weight-norm parametrised weight W becomes v = W and
    g = ||W|| over the parametrisation's norm dimensions, so the model's weight is W again (to rounding)."""
    import torch
    from torch.nn.utils import parametrize

    state = dict(plain)
    for name, module in model.named_modules():
        if parametrize.is_parametrized(module, "weight"):
            w = state.pop(f"{name}.weight")
            dim = module.parametrizations.weight[0].dim
            state[f"{name}.parametrizations.weight.original0"] = torch.norm_except_dim(w, 2, dim)
            state[f"{name}.parametrizations.weight.original1"] = w
    model.load_state_dict(state, strict=True)


def invert_rules(rules: list[Rule], state: Mapping[str, Any]) -> dict[str, Any]:
    """The source-layout tensors of an mmtok state dict: each rule backwards (fills are dropped: the source has no
    such tensor)."""
    out = {}
    for rule in rules:
        if rule.how == "fill":
            continue
        parts = TRANSFORMS[rule.how][1](state[rule.target].detach(), len(rule.sources))
        out.update({k: t.contiguous().clone() for k, t in zip(rule.sources, parts)})
    return out


def _first(keys: list[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (f" and {len(keys) - n} more" if len(keys) > n else "") if keys else "none"


def _problems(missing, shapes, unknown) -> str:
    parts = []
    if missing:
        parts.append(f"{len(missing)} key(s) missing ({_first(missing)})")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatch(es) ({_first(shapes, 2)})")
    if unknown:
        parts.append(f"{len(unknown)} unknown key(s) ({_first(unknown)})")
    return "; ".join(parts)


def _likely_cause(missing, shapes, unknown, n_rules: int, fmt: str) -> str:
    if len(missing) > n_rules // 2:
        return (f"most keys the {fmt} layout names are absent: the file is likely another format or another part "
                "of the release (see `mmtok import --help` for the formats)")
    if shapes:
        return ("the tensors do not match the configuration: a config file of another model, or a --set that "
                "changes the architecture; drop it to infer the configuration from the tensors")
    if missing:
        return "keys are absent: the file is truncated, partial, or a variant these rules do not know"
    return "the file holds tensors these rules do not know: an architecture variant mmtok cannot express yet"


# ------------------------------------------------------------------------------------------------- formats


def import_bundle(fmt: str, source: str | os.PathLike, out: str | os.PathLike, *, config: str | None = None,
                  weights: str = "ema", force: bool = False) -> dict:
    """`mmtok import FORMAT SOURCE --out OUT`: read the release with its family's reader, map every tensor by the
    family's rules, check the model built from the result, and write a bundle. Returns write_bundle's report
    plus "source" (the Source read)."""
    from mmtok import families

    families.discover()
    family = families.get(families.FORMATS.get(fmt))  # an unknown format: MmtokError with a did-you-mean
    outp = Path(out)
    if outp.exists() and (not outp.is_dir() or any(outp.iterdir())) and not force:
        raise CheckpointError(f"{outp} already exists and is not empty", hint="choose another --out or add --force")
    src, rules_for = families.resolve(family.formats[fmt])(Path(source), config=config, weights=weights)
    return write_imported(fmt, Path(source), src, rules_for, outp, force=force)


def write_imported(fmt: str, path: Path, src: Source, rules_for: Callable, out: Path, *, force: bool) -> dict:
    """Build the model of `src.model`, fill it by `rules_for(model_cfg)` and write the bundle."""
    from mmtok import config as recipes
    from mmtok import families
    from mmtok.errors import RecipeError
    from mmtok.export.bundle import write_bundle
    from mmtok.export.load import sha256

    base = recipes.load(src.recipe).model_dump(mode="json")
    base.update(model=src.model, name=f"{fmt}-import")
    try:
        recipe = recipes.load(base, src.overrides)
    except RecipeError as e:
        raise CheckpointError(f"{path}: its configuration does not validate ({e.message}; "
                              + "; ".join(e.problems) + ")",
                              hint="the release's configuration (its config file, or --config where the format takes "
                              "one) does not describe a model mmtok can build") from None
    model = families.build_model(recipe.model, pretrained=False)
    state = apply_rules(rules_for(recipe.model), src.tensors, plain_state(model), ignore=src.ignore,
                        where=str(path), fmt=fmt)
    load_plain(model, state)
    model.eval().requires_grad_(False)
    provenance = {"format": fmt, "file": path.name, "sha256": sha256(path) if path.is_file() else None,
                  "config": src.config_from, "ignored": dict(src.ignore), "notes": list(src.notes),
                  "adversary": bool(src.adversary)}
    info = {"path": str(path), "source": "import", "checkpoint": str(path), "weights": src.weights, "note": "",
            "step": src.step, "recipe_name": recipe.name, "imported": provenance}
    report = write_bundle(model, recipe, info, out, force=force, adversary=src.adversary)
    report["source"] = src
    return report


# ------------------------------------------------------------------------------------------------- export


def transformers_classes(*names: str) -> list:
    """The transformers classes `names` (MmtokError with the install hint when transformers is missing)."""
    try:
        import transformers
    except ImportError:
        raise MmtokError("--format hf needs transformers", hint="pip install 'mmtok[lm]'") from None
    return [getattr(transformers, n) for n in names]


HF_TOLERANCE = 1e-4  # largest output difference an export may show against mmtok (fp32 attention / conv order)


def export_hf(model_path: str | os.PathLike, out: str | os.PathLike, *, ema: bool = True, force: bool = False) -> dict:
    """`mmtok export MODEL OUT --format hf`: a folder transformers loads with its own class (`from_pretrained`, no
    trust_remote_code). The family's `hf_export` builds the transformers model and checks its own encode / decode
    against mmtok's; a check that fails leaves nothing behind. Returns {"out", "class", "check", "info"}."""
    from mmtok import families
    from mmtok.export.bundle import PARTIAL_MARKER, _check_out, _fresh_tmp, _move_into_place
    from mmtok.model_io import load_model

    outp = Path(out)
    _check_out(outp, force)
    model, recipe, info = load_model(model_path, ema=ema)
    family = families.get(recipe.model.family)
    if family.hf_export is None:
        covered = [f"{n}" for n in families.names() if families.get(n).hf_export]
        raise MmtokError(f"transformers has no class for the {family.name} family",
                         hint=f"--format hf covers the families {', '.join(covered)}; use the default bundle format")
    hf, check = families.resolve(family.hf_export)(model, recipe)
    if check["ids_equal"] < 1.0 or check["max_output_difference"] > HF_TOLERANCE:
        raise MmtokError(f"the transformers model disagrees with mmtok's ({check})", hint="report this as a bug")
    tmp = _fresh_tmp(outp)  # OUT.tmp with a marker: an interrupted export's leftover is removed, anything else refused
    from mmtok.lm.llm import quiet_progress_bars

    quiet_progress_bars()  # no "Writing model shards" bar in a log file
    hf.save_pretrained(str(tmp))
    name = type(hf).__name__
    (tmp / "README.md").write_text(
        f"# {outp.name}\n\nA {family.name} tokenizer exported by mmtok for Hugging Face transformers "
        f"(`{name}`, no remote code).\n\n```python\nfrom transformers import {name}\n\n"
        f"model = {name}.from_pretrained(\"{outp.name}\").eval()\n```\n\n"
        f"Checked at export against mmtok on {check['inputs']}: ids equal {check['ids_equal']:.0%}, largest output "
        f"difference {check['max_output_difference']:.2e}.\n")
    (tmp / PARTIAL_MARKER).unlink()
    _move_into_place(tmp, outp)
    return {"out": outp, "class": name, "check": check, "info": info}
