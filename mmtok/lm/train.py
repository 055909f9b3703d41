"""`train(recipe, out)`: an extended causal LM fine-tuned on token shards (mmtok.lm.task), with the trainer,
checkpoints, signals and time limits of tokenizer training (mmtok.train).

Run directory:
  recipe.yaml              the resolved LM recipe
  checkpoints/last.ckpt    trainable weights + optimizer + step, written atomically; --resume continues exactly
  logs/version_N/          metrics.csv: train/loss, train/image_loss, train/caption_loss, val/image_loss, ...
  model/                   the trained model (LoRA merged), tokenizer and mmtok_layout.json, for `mmtok lm generate`
  summary.json             held-out image and caption losses before training and at the end, steps, time, tokens/s

Everything that can be checked is checked before the model is loaded: the layout against the model's vocabulary,
the token shards' bundle against the layout's, the block size against the longest sequence.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from mmtok.errors import CheckpointError, DataError, RecipeError
from mmtok.lm.recipe import LMRecipe, dump_recipe, load_recipe


def _check_tokens(directory: str, layout, modality: str, what: str) -> None:
    from mmtok.lm.tokens import read_header

    header = read_header(directory)
    m = layout.modality(modality)
    if header["bundle_checksum"] != m.bundle_checksum:
        raise DataError(f"{what} {directory} were made with bundle {header.get('bundle')} "
                        f"(checksum {header['bundle_checksum'][:12]}), but the model was extended with {m.bundle} "
                        f"(checksum {m.bundle_checksum[:12]})",
                        hint=f"tokenize the data with the model's bundle: mmtok tokenize {m.bundle} --data ... --out ...")


def check_inputs(recipe: LMRecipe):
    """The layout (checked against the model directory), after checking the token shards and block size."""
    from mmtok.lm.llm import check_extended

    layout = check_extended(recipe.model.path)
    d = recipe.data
    _check_tokens(d.train, layout, d.modality, "token shards")
    if d.val and d.val != "holdout":
        _check_tokens(d.val, layout, d.modality, "validation token shards")
    m = layout.modality(d.modality)
    longest = 2 + d.max_caption_tokens + m.span_length
    if d.block_size < longest:
        raise RecipeError(f"data.block_size {d.block_size} is shorter than the longest sequence ({longest} tokens: "
                          f"{m.span_length} image tokens + up to {d.max_caption_tokens} caption tokens + 2)",
                          hint=f"set data.block_size >= {longest} or lower data.max_caption_tokens")
    return layout


def split_holdout(keys: list[str], fraction: float) -> tuple[list[int], list[int]]:
    """(train, held-out) indices chosen by a stable hash of each key (mmtok.data.holdout); both non-empty when
    there are at least 2 keys."""
    from mmtok.data.holdout import holdout_score

    scores = [holdout_score(k) for k in keys]
    held = [s < fraction for s in scores]
    if len(keys) >= 2 and not any(held):
        held[scores.index(min(scores))] = True
    if len(keys) >= 2 and all(held):
        held[scores.index(max(scores))] = False
    return [i for i, h in enumerate(held) if not h], [i for i, h in enumerate(held) if h]


def build_data(recipe: LMRecipe, tokenizer, layout):
    """(train stream, validation batches or None, {"train_pairs", "val_pairs"})."""
    from mmtok.lm.sequences import PackedBatches, Sequences, make_pairs, validation_batches
    from mmtok.lm.tokens import read_tokens

    d = recipe.data
    m = layout.modality(d.modality)
    ts = read_tokens(d.train)
    pairs = make_pairs(ts.ids, ts.captions, ts.keys, m, tokenizer, d.max_caption_tokens)
    val = None
    if d.val == "holdout":
        train_idx, val_idx = split_holdout(pairs.keys, d.holdout_fraction)
        pairs, val = pairs.subset(train_idx), pairs.subset(val_idx)
    elif d.val:
        vs = read_tokens(d.val)
        val = make_pairs(vs.ids, vs.captions, vs.keys, m, tokenizer, d.max_caption_tokens)
    if val is not None:
        val = val.subset(range(min(len(val), d.val_pairs)))
    seqs = Sequences(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else seqs.eos
    stream = PackedBatches(pairs, m, seqs, block_size=d.block_size, batch_size=d.batch_size,
                           t2i_fraction=d.t2i_fraction, caption_dropout=d.caption_dropout, seed=recipe.seed, pad_id=pad)
    batches = validation_batches(val, m, seqs, d.batch_size, pad) if val is not None and len(val) else None
    return stream, batches, {"train_pairs": len(pairs), "val_pairs": len(val) if val is not None else 0,
                             "skipped_samples": ts.skipped}


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def resume_recipe(out: Path, overrides=()) -> LMRecipe:
    saved = Path(out) / "recipe.yaml"
    if not saved.is_file():
        raise CheckpointError(f"nothing to resume in {out}: {saved} does not exist",
                              hint="drop --resume to start a new run, or point --out at an earlier run")
    before, after = load_recipe(str(saved)), load_recipe(str(saved), list(overrides))
    if before.model != after.model or before.lora != after.lora:
        raise RecipeError(f"cannot resume {out} with a different model or lora section",
                          hint="only training settings may change on resume; start a new run in another --out")
    return after


def train(recipe: LMRecipe, out: str | Path, *, resume: bool = False, callbacks: list | None = None,
          save_model: bool = True) -> dict:
    """Train per `recipe` into run directory `out`; returns the summary (also summary.json). "status" is
    "finished", "stopped on time" or "interrupted" (a signal: checkpoint saved, exit_code 130 / 143)."""
    from mmtok.train.stop import StopRequest

    out = Path(out)
    ckpt = out / "checkpoints" / "last.ckpt"
    if resume and not ckpt.is_file():
        raise CheckpointError(f"nothing to resume in {out}: {ckpt} does not exist",
                              hint="drop --resume to start a new run, or point --out at an earlier run")
    if not resume and ckpt.is_file():
        raise CheckpointError(f"{out} already holds a run ({ckpt})",
                              hint="add --resume to continue it, or choose another --out")
    layout = check_inputs(recipe)
    import torch

    threads = torch.get_num_threads()
    if recipe.trainer.threads:
        torch.set_num_threads(recipe.trainer.threads)
    request = StopRequest()
    request.install()
    try:
        return _train(recipe, out, layout, ckpt if resume else None, callbacks or [], request, save_model)
    finally:
        request.restore()
        torch.set_num_threads(threads)


def _train(recipe: LMRecipe, out: Path, layout, ckpt, callbacks: list, request, save_model: bool) -> dict:
    import lightning as L
    import torch
    from torch.utils.data import DataLoader

    from mmtok.lm.llm import load_extended
    from mmtok.lm.task import LMTask
    from mmtok.train.callbacks import Checkpointer, RichSteps
    from mmtok.train.run import build_trainer, quiet_lightning
    from mmtok.train.stop import TIME_LIMIT, RunStopped, RunStopper, exit_code, reason_name

    t = recipe.trainer
    quiet_lightning()
    L.seed_everything(recipe.seed, workers=True, verbose=False)
    dtype = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16}[recipe.model.dtype]
    model, tokenizer, _ = load_extended(recipe.model.path, dtype=dtype)
    stream, val_batches, counts = build_data(recipe, tokenizer, layout)
    task = LMTask(recipe, model, layout, stream)
    _write(out / "recipe.yaml", dump_recipe(recipe))

    train_loader = DataLoader(stream, batch_size=None)
    val_loader = DataLoader(val_batches, batch_size=None) if val_batches else None
    checkpointer = Checkpointer(out, t.ckpt_every, t.keep_every, t.keep_best, t.keep_best_mode)
    stopper = RunStopper(request, t.max_minutes, checkpointer.save)
    trainer = build_trainer(recipe, out, [RichSteps(), checkpointer, stopper, *callbacks])
    before = {}
    if ckpt is None and val_loader is not None:
        before = trainer.validate(task, dataloaders=val_loader, verbose=False)[0]
    t0 = time.perf_counter()
    stopped = None
    try:
        trainer.fit(task, train_dataloaders=train_loader, val_dataloaders=val_loader, ckpt_path=ckpt)
    except RunStopped as e:
        stopped = e
    seconds = time.perf_counter() - t0
    interrupted = stopped is not None and stopped.reason != TIME_LIMIT
    final = {}
    if val_loader is not None and not interrupted and not request.signum:
        final = trainer.validate(task, dataloaders=val_loader, verbose=False)[0]
    steps = trainer.global_step - task.start_step
    tokens = steps * t.accumulate_grad_batches * recipe.data.batch_size * recipe.data.block_size * trainer.world_size
    summary = {
        "recipe": recipe.name, "status": "finished" if stopped is None else ("interrupted" if interrupted else
                                                                             "stopped on time"),
        "step": trainer.global_step, "steps_this_run": steps, "max_steps": t.max_steps,
        "seconds": round(seconds, 1), "tokens_per_s": round(tokens / seconds, 1) if seconds > 0 else None,
        "before": {k: round(float(v), 4) for k, v in before.items()},
        "final": {k: round(float(v), 4) for k, v in final.items()},
        **counts, "lora": recipe.lora is not None,
        "checkpoint": str(out / "checkpoints" / "last.ckpt"),
        "model": None, "stop_reason": reason_name(stopped.reason) if stopped is not None else None,
        "exit_code": exit_code(stopped.reason) if interrupted else 0, "is_global_zero": trainer.is_global_zero,
    }
    if trainer.is_global_zero:
        if save_model and not interrupted:
            summary["model"] = str(save_trained(task, tokenizer, layout, out / "model"))
        _write(out / "summary.json", json.dumps(summary, indent=2))
    return summary


def save_trained(task, tokenizer, layout, out: Path) -> Path:
    """The trained model (LoRA adapters and trainable rows merged into a copy) with its tokenizer and layout,
    written atomically to `out`: a directory `mmtok lm generate` and `mmtok lm train` take like an extended one."""
    import copy

    model = task.model
    if hasattr(model, "merge_and_unload"):
        model = copy.deepcopy(model).merge_and_unload()
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    layout.save(tmp)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out
