"""Reading a bundle: `mmtok.load(path) -> Tokenizer`. JSON and safetensors only; nothing is unpickled.

Loading verifies the checksums in checksums.json, checks compatibility, builds the model from config.json
(`families.build_model`) and loads model.safetensors strictly (missing, unexpected or mis-shaped keys are named).

Checksums: the files that decide what the tokens are (config.json, model.safetensors, tokenizer.json, the
encoder/decoder graphs, and any file mmtok does not know) must match, else CheckpointError. The documents a
person may edit - the model card README.md, eval.json and recipe.yaml - only warn (BundleModifiedWarning)
when changed or missing, and the bundle still loads. `load(path, verify=False)` skips the checksums.

Compatibility rule: a bundle loads when its `format_version` is one this mmtok reads (FORMAT_VERSION) and
it was written by an mmtok of the same major version; while the major version is 0, the minor version must
match too (0.x releases may change model code). Anything else is refused with both versions named.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from mmtok.errors import CheckpointError
from mmtok.files import last_checkpoint

FORMAT_VERSION = 1
CONFIG_FILE, WEIGHTS_FILE, META_FILE, CHECKSUMS_FILE = "config.json", "model.safetensors", "tokenizer.json", "checksums.json"
ADVERSARY_FILE = "adversary.safetensors"  # an imported release's discriminator (for fine-tuning); optional
EDITABLE_FILES = ("README.md", "eval.json", "recipe.yaml")  # documents: a change warns, the bundle still loads
SKIP_HINT = "copy the bundle again or re-export it; mmtok.load(path, verify=False) loads it without checksums"


class BundleModifiedWarning(UserWarning):
    """A bundle's documentation file (model card, eval.json, recipe.yaml) differs from its checksum."""


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"bundle {path.parent} has no {path.name}",
                              hint="re-export it with `mmtok export MODEL OUT_DIR`") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} must hold a JSON object")
    return data


def verify_checksums(bundle: str | os.PathLike) -> dict[str, str]:
    """Check every file listed in checksums.json against its sha256; returns the listing.

    CheckpointError naming the first token-deciding file that is missing or differs (module docstring);
    a BundleModifiedWarning for each edited or missing document (EDITABLE_FILES)."""
    import warnings

    bundle = Path(bundle)
    if not (bundle / CHECKSUMS_FILE).is_file():
        raise CheckpointError(f"bundle {bundle} has no {CHECKSUMS_FILE}", hint=SKIP_HINT)
    listing = read_json(bundle / CHECKSUMS_FILE).get("files")
    if not isinstance(listing, dict) or not listing:
        raise CheckpointError(f"{bundle / CHECKSUMS_FILE} lists no files", hint=SKIP_HINT)
    for required in (CONFIG_FILE, WEIGHTS_FILE, META_FILE):
        if required not in listing:
            raise CheckpointError(f"{bundle / CHECKSUMS_FILE} has no checksum for {required}", hint=SKIP_HINT)
    edited = []
    for name, digest in listing.items():
        file = bundle / name
        ok = file.is_file() and sha256(file) == digest
        if ok:
            continue
        if name in EDITABLE_FILES:
            edited.append(f"{name} ({'missing' if not file.is_file() else 'edited'})")
        elif not file.is_file():
            raise CheckpointError(f"bundle {bundle} is missing {name} (listed in {CHECKSUMS_FILE})", hint=SKIP_HINT)
        else:
            raise CheckpointError(f"checksum mismatch for {name} in {bundle}: the file is corrupt or was modified",
                                  hint=SKIP_HINT)
    if edited:
        warnings.warn(f"bundle {bundle}: {', '.join(edited)} differ from {CHECKSUMS_FILE}; the weights, config and "
                      "token metadata are intact, so it loads", BundleModifiedWarning, stacklevel=2)
    return listing


def check_compatible(config: dict, where: str) -> None:
    """CheckpointError unless the bundle's format and mmtok version are readable here (module docstring)."""
    import mmtok

    fmt = config.get("format_version")
    if not isinstance(fmt, int):
        raise CheckpointError(f"{where} has no format_version: not an mmtok bundle")
    if fmt > FORMAT_VERSION:
        raise CheckpointError(f"{where} uses bundle format {fmt}, newer than this mmtok reads ({FORMAT_VERSION})",
                              hint=f"upgrade mmtok (this is {mmtok.__version__})")
    if fmt != FORMAT_VERSION:
        raise CheckpointError(f"{where} uses bundle format {fmt}, which this mmtok no longer reads ({FORMAT_VERSION})",
                              hint=f"re-export it with mmtok {config.get('mmtok_version', '?')} or load it there")
    theirs, ours = _major_minor(config.get("mmtok_version")), _major_minor(mmtok.__version__)
    if theirs is None:
        raise CheckpointError(f"{where} does not say which mmtok version wrote it (mmtok_version)")
    if theirs[0] != ours[0] or (ours[0] == 0 and theirs[1] != ours[1]):
        rule = "the same major version" + (" and, for 0.x, the same minor version" if ours[0] == 0 else "")
        raise CheckpointError(
            f"{where} was written by mmtok {config['mmtok_version']}; this is mmtok {mmtok.__version__}, "
            f"which loads bundles of {rule}",
            hint=f"install mmtok {theirs[0]}.{theirs[1]}.x to load it, or re-export the model with this version")


def _major_minor(version: Any) -> tuple[int, int] | None:
    try:
        parts = str(version).split(".")
        return int(parts[0]), int(parts[1])
    except (ValueError, IndexError):
        return None


def read_bundle(path: str | os.PathLike, verify: bool = True) -> tuple[dict, dict, dict]:
    """(config.json, tokenizer.json, state dict) of a bundle, checksums verified (unless not `verify`),
    compatibility checked."""
    bundle = Path(path)
    if not bundle.is_dir():
        if bundle.exists():
            raise CheckpointError(f"{bundle} is a file; a bundle is a directory", hint="give the bundle directory")
        raise CheckpointError(f"no bundle at {bundle}", hint="make one with `mmtok export MODEL OUT_DIR`")
    if not (bundle / CONFIG_FILE).is_file() and last_checkpoint(bundle).is_file():
        raise CheckpointError(f"{bundle} is a training run, not a bundle",
                              hint=f"export it first: mmtok export {bundle} BUNDLE_DIR")
    config = read_json(bundle / CONFIG_FILE)
    check_compatible(config, f"bundle {bundle}")
    if verify:
        verify_checksums(bundle)
    meta = read_json(bundle / META_FILE)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(bundle / WEIGHTS_FILE))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{bundle / WEIGHTS_FILE} is not a readable safetensors file ({e})") from None
    return config, meta, state


def load_bundle_model(path: str | os.PathLike):
    """(model nn.Module in eval mode, Recipe with the bundle's model section, info) of a bundle."""
    model, recipe, info, _, _ = _build(path)
    return model, recipe, info


def _build(path: str | os.PathLike, verify: bool = True):
    from mmtok import config as recipes
    from mmtok import families
    from mmtok.errors import RecipeError
    from mmtok.weights import load_strict

    cfg, meta, state = read_bundle(path, verify=verify)
    try:
        recipe = recipes.load_stored({"name": cfg.get("recipe_name", "bundle"), "seed": cfg.get("seed", 0),
                                      "model": cfg.get("model")})
    except RecipeError as e:
        raise CheckpointError(f"{Path(path) / CONFIG_FILE}: the model section does not validate ({e.message}; "
                              + "; ".join(e.problems) + ")") from None
    model = families.build_model(recipe.model, pretrained=False)  # every weight comes from the file
    load_strict(model, state, str(Path(path) / WEIGHTS_FILE))
    model.eval().requires_grad_(False)
    info = {"path": str(path), "source": "bundle", "checkpoint": str(Path(path) / WEIGHTS_FILE),
            "weights": cfg.get("weights", "ema"), "note": "", "step": cfg.get("step", -1),
            "mmtok_version": cfg.get("mmtok_version"), "seed": cfg.get("seed"), "recipe_name": recipe.name,
            "imported": cfg.get("imported")}
    return model, recipe, info, cfg, meta


def load(path: str | os.PathLike, device: str = "cpu", verify: bool = True) -> "BaseTokenizer":
    """The bundle at `path` as its modality's tokenizer (mmtok.export.tokenizer.BaseTokenizer; images:
    ImageTokenizer) on `device` ("cpu", "gpu",
    "gpu:N", "auto", or torch's "cuda" / "cuda:N"; mmtok.hardware.torch_device: a GPU without CUDA is an error).

    verify=True checks checksums.json: config.json, model.safetensors, tokenizer.json and the graphs must
    match (CheckpointError), an edited README.md / eval.json / recipe.yaml only warns. verify=False skips
    the checksums entirely (checksums.json may be absent or stale): the files are used as they are. The
    format/version check and the strict weight loading (every key and shape must fit the model built from
    config.json) still apply."""
    from mmtok import modalities
    from mmtok.hardware import torch_device

    device = torch_device(device)  # before any file is read: a bad device name is one line
    model, _, _, cfg, meta = _build(path, verify=verify)
    tokenizer = modalities.get(meta["modality"]).resolve("tokenizer")
    return tokenizer(model, meta, cfg, path=Path(path)).to(device)

