"""Writing a bundle: `export_bundle(model, out_dir)` -> a directory a model team can use without mmtok's
training code.

    config.json         format_version, mmtok_version, family, the resolved model section, weights (ema|raw)
    model.safetensors   the tokenizer's weights (EMA by default), contiguous fp32 tensors
    adversary.safetensors  (imported releases that ship one) the discriminator, for fine-tuning with `init.path`
    tokenizer.json      token metadata: modality, input size/range/normalisation, grid, codebook, id layout
                        and offsets, suggested special tokens (see `tokenizer_meta`)
    recipe.yaml         the exact resolved training recipe (for fine-tuning: `mmtok train recipe.yaml`)
    eval.json           the model's evaluation (`mmtok eval`), when one matches these weights
    README.md           model card: tokens, metrics, recipe, usage
    encoder.pt2         (--graphs) torch.export graph: images -> ids, dynamic batch
    decoder.pt2         (--graphs) torch.export graph: ids -> images
    encoder.onnx        (--onnx) the same graphs as ONNX (fp32, dynamic batch; optional onnx + onnxscript)
    decoder.onnx
    checksums.json      sha256 of every other file

The bundle is built in OUT_DIR.tmp and renamed into place, so OUT_DIR is either absent or complete.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from mmtok.errors import CheckpointError, MmtokError
from mmtok.export.load import (
    ADVERSARY_FILE,
    CHECKSUMS_FILE,
    CONFIG_FILE,
    FORMAT_VERSION,
    META_FILE,
    WEIGHTS_FILE,
    sha256,
)

PARTIAL_MARKER = ".mmtok-partial"


def tokenizer_meta(model, recipe) -> dict:
    """tokenizer.json: the model's `meta` (checked as a mmtok.contract.TokenSpec) plus what its modality
    adds for a language model to use the ids (input preparation, id layout, vocabulary, special tokens)."""
    from mmtok import modalities
    from mmtok.contract import TokenSpec

    meta = TokenSpec.from_meta(dict(model.meta)).to_meta()
    meta["format_version"] = FORMAT_VERSION
    meta.update(modalities.get(meta["modality"]).resolve("bundle_meta")(meta))
    return meta


def find_evals(model_path: Path, source: str) -> list[Path]:
    """Every evaluation `mmtok eval` left for this model, oldest first: a bundle's eval.json, else the
    metrics.json files under the run's eval/ folder (see mmtok.evaluation.output)."""
    from mmtok.evaluation.output import eval_base, find_evaluations

    p = Path(model_path)
    if source == "bundle":
        return [p / "eval.json"] if (p / "eval.json").is_file() else []
    bases = [eval_base(p)]
    if source == "checkpoint" and p.parent / "eval" not in bases:
        bases.append(p.parent / "eval")
    return [f for base in bases for f in find_evaluations(base)]


def _read_eval(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise MmtokError(f"evaluation {path} is unreadable ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("model"), dict):
        raise MmtokError(f"{path} is not an evaluation written by `mmtok eval`")
    return data


def eval_mismatch(data: dict, fingerprint: str, info: dict) -> str:
    """"" when the evaluation `data` measured the weights with this fingerprint, else why not (one clause)."""
    model = data.get("model", {})
    theirs = model.get("weights_sha256")
    if theirs is None:
        return "it does not record which weights it measured (made by an older mmtok)"
    if theirs != fingerprint:
        return (f"it measured other weights (step {model.get('step')}, {model.get('weights')}; the export is step "
                f"{info['step']}, {info['weights']})")
    return ""


def choose_eval(model_path: Path, info: dict, fingerprint: str, explicit: str | os.PathLike | None
                ) -> tuple[Path | None, dict | None, str]:
    """(path, evaluation, "") for the evaluation to embed, or (None, None, why there is none).

    `explicit` (--eval): a metrics.json / eval.json file or a folder holding metrics.json; it must exist and
    have measured these very weights, else MmtokError. Without it: the newest evaluation of these weights
    among those `mmtok eval` wrote for the model (find_evals); others are left out and counted."""
    if explicit is not None:
        p = Path(explicit)
        f = p / "metrics.json" if p.is_dir() else p
        if not f.is_file():
            raise MmtokError(f"--eval {p}: no evaluation there (no such file" + (" metrics.json" if p.is_dir() else "")
                             + ")", hint="give a metrics.json written by `mmtok eval` or its folder")
        data = _read_eval(f)
        why = eval_mismatch(data, fingerprint, info)
        if why:
            raise MmtokError(f"--eval {f}: {why}", hint="omit --eval to take the newest evaluation of these "
                             "weights, or evaluate them: mmtok eval MODEL --data ...")
        return f, data, ""
    found = find_evals(model_path, info["source"])
    skipped = []
    for f in reversed(found):  # newest first
        try:
            data = _read_eval(f)
        except MmtokError as e:
            skipped.append(e.message)
            continue
        why = eval_mismatch(data, fingerprint, info)
        if not why:
            return f, data, ""
        skipped.append(f"{f}: {why}")
    if not found:
        return None, None, "no evaluation found (run `mmtok eval MODEL --data ...` before exporting)"
    return None, None, (f"no evaluation of these weights: {len(skipped)} left out ({skipped[0]}"
                        + (", ..." if len(skipped) > 1 else "") + "); re-run `mmtok eval` on them")


def export_bundle(model_path: str | os.PathLike, out_dir: str | os.PathLike, *, ema: bool = True, graphs: bool = False,
                  onnx: bool = False, force: bool = False, eval_path: str | os.PathLike | None = None) -> dict:
    """Write the bundle for a run directory, checkpoint or bundle at `model_path` into `out_dir`.

    Returns {"out", "files" (name -> sha256), "info" (from load_model), "eval" (path used or None), "notes"}.
    Refuses an existing non-empty `out_dir` unless `force`. With `graphs`, also writes encoder.pt2 /
    decoder.pt2 and checks them against the eager model before the bundle is moved into place. With `onnx`,
    encoder.onnx / decoder.onnx (fp32; needs the optional packages onnx and onnxscript), checked with
    onnxruntime when it is installed (a note says so when it is not). The embedded eval.json is
    `eval_path` (--eval) or the newest evaluation of these very weights (see choose_eval): evaluations match by
    the fingerprint of the weights and model configuration that `mmtok eval` records.
    """
    from mmtok.model_io import load_model, weights_fingerprint

    out = Path(out_dir)
    _check_onnx(onnx)
    _check_out(out, force)
    model, recipe, info = load_model(model_path, ema=ema)
    notes = [info["note"]] if info.get("note") else []
    fingerprint = weights_fingerprint(model, recipe.model.model_dump(mode="json"))
    eval_file, evaluation, why = choose_eval(Path(model_path), info, fingerprint, eval_path)
    if why:
        notes.append(why + "; eval.json left out")
    report = write_bundle(model, recipe, info, out, graphs=graphs, onnx=onnx, force=force, evaluation=evaluation)
    report.update(eval=str(eval_file) if evaluation else None, notes=notes + report["notes"])
    return report


def write_bundle(model, recipe, info: dict, out: Path, *, graphs: bool = False, onnx: bool = False,
                 force: bool = False, evaluation: dict | None = None, adversary: dict | None = None) -> dict:
    """Write the bundle of an in-memory `model` (eval mode) trained or imported by `recipe` into `out` (built in
    OUT.tmp and moved into place). `info` as mmtok.model_io.load_model gives it (its "imported" entry, when there
    is one, says where an imported model came from); `adversary`: the discriminator's weights for fine-tuning
    (adversary.safetensors). Returns {"out", "files", "info", "eval": None, "notes"}."""
    import mmtok
    from mmtok import config as recipes
    from mmtok import modalities

    _check_onnx(onnx)
    _check_out(out, force)
    notes: list[str] = []
    tmp = _fresh_tmp(out)
    _save_tensors(model.state_dict(), tmp / WEIGHTS_FILE)
    if adversary:
        _save_tensors(adversary, tmp / ADVERSARY_FILE)
    cfg = {"format_version": FORMAT_VERSION, "mmtok_version": mmtok.__version__, "family": recipe.model.family,
           "model": recipe.model.model_dump(mode="json"), "weights": info["weights"], "step": info["step"],
           "recipe_name": recipe.name, "seed": recipe.seed}
    if info.get("imported"):
        cfg["imported"] = info["imported"]
    meta = tokenizer_meta(model, recipe)
    _write_json(tmp / CONFIG_FILE, cfg)
    _write_json(tmp / META_FILE, meta)
    (tmp / "recipe.yaml").write_text(recipes.dump(recipe))
    if evaluation is not None:
        _write_json(tmp / "eval.json", evaluation)
    if graphs:
        _write_graphs(model, recipe, tmp)
    if onnx:
        notes += _write_onnx(model, recipe, tmp)
    model_card = modalities.get(meta["modality"]).resolve("card")
    (tmp / "README.md").write_text(model_card(cfg, meta, evaluation, recipes.dump(recipe), info,
                                              graphs=graphs, onnx=onnx, name=out.name))
    files = {p.name: sha256(p) for p in sorted(tmp.iterdir()) if p.is_file() and p.name != PARTIAL_MARKER}
    _write_json(tmp / CHECKSUMS_FILE, {"algorithm": "sha256", "files": files})
    (tmp / PARTIAL_MARKER).unlink()
    _move_into_place(tmp, out)
    return {"out": out, "files": files, "info": info, "eval": None, "notes": notes}


def _check_onnx(onnx: bool) -> None:
    if onnx:
        from mmtok.export.graphs import onnx_missing

        missing = onnx_missing()
        if missing:
            raise MmtokError(f"--onnx needs {' and '.join(missing)}, not installed here",
                             hint="pip install onnx onnxscript (and onnxruntime to check the graphs), or export "
                             "without --onnx (encoder.pt2 / decoder.pt2 need nothing extra: --graphs)")


def _check_out(out: Path, force: bool) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise CheckpointError(f"{out} already exists and is not empty", hint="choose another OUT_DIR or add --force")


def _save_tensors(state: dict, path: Path) -> None:
    """Contiguous CPU tensors to a safetensors file with the permissions of any other new file."""
    from safetensors.torch import save_file

    import mmtok

    save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(path),
              metadata={"format": "pt", "mmtok_version": mmtok.__version__})
    _readable(path)


def _write_graphs(model, recipe, tmp: Path) -> None:
    import torch

    from mmtok.export.graphs import check_graphs, export_graphs

    try:
        export_graphs(model, tmp)
        gen = torch.Generator().manual_seed(0)
        check_graphs(model, tmp, torch.rand(3, *model.meta["input_size"], generator=gen) * 2 - 1)
    except Exception as e:  # noqa: BLE001 - an export failure must leave no bundle behind and say why
        shutil.rmtree(tmp, ignore_errors=True)
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        raise MmtokError(f"torch.export of the encoder/decoder graphs failed: {type(e).__name__}: {first}",
                         hint="export without --graphs; the bundle's safetensors weights work with mmtok.load") from e


def _write_onnx(model, recipe, tmp: Path) -> list[str]:
    import torch

    from mmtok.export.graphs import check_onnx, export_onnx

    try:
        export_onnx(model, tmp)
        gen = torch.Generator().manual_seed(0)
        checked = check_onnx(model, tmp, torch.rand(3, *model.meta["input_size"], generator=gen) * 2 - 1)
    except Exception as e:  # noqa: BLE001 - leave no bundle behind and say why
        shutil.rmtree(tmp, ignore_errors=True)
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        raise MmtokError(f"ONNX export of the encoder/decoder failed: {type(e).__name__}: {first}",
                         hint="export without --onnx; --graphs (torch.export) and the safetensors weights "
                         "do not need it") from e
    return [] if checked else ["encoder.onnx / decoder.onnx were not checked against the eager model "
                               "(onnxruntime is not installed)"]


def _readable(path: Path) -> None:
    """Give a file the permissions of any other new file (safetensors writes 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def _fresh_tmp(out: Path) -> Path:
    """An empty OUT_DIR.tmp holding a marker; a leftover one from an interrupted export (marked) is removed."""
    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        if not (tmp / PARTIAL_MARKER).is_file():
            raise CheckpointError(f"{tmp} exists and was not made by mmtok export",
                                  hint="remove or rename it; export builds the bundle there before moving it")
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    (tmp / PARTIAL_MARKER).write_text("an mmtok export in progress (or interrupted); safe to delete\n")
    return tmp


def _move_into_place(tmp: Path, out: Path) -> None:
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    if out.exists():  # --force over an existing bundle: swap, then delete the old one
        old = out.with_name(f".{out.name}.replaced-{os.getpid()}")
        os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    else:
        os.replace(tmp, out)
