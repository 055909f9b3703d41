"""`train(recipe, out)`: an extended causal LM fine-tuned on token shards (mmtok.lm.task), with the trainer,
checkpoints, signals and time limits of tokenizer training (mmtok.train).

Run directory:
  recipe.yaml              the resolved LM recipe
  checkpoints/last.ckpt    trainable weights + optimizer + step, written atomically; --resume continues exactly
  logs/version_N/          metrics.csv: train/loss, train/image_loss, train/caption_loss, val/image_loss, ...
                           (audio_loss / motion_loss for those modalities)
  model/                   the trained model (LoRA merged), tokenizer and mmtok_layout.json, for `mmtok lm generate`
  summary.json             held-out span (image, audio, motion) and caption losses before training and at the end,
                           steps, time, tokens/s

Everything that can be checked is checked before the model is loaded: the layout against the model's vocabulary,
the token shards' bundle against the layout's, the block size against the longest sequence.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mmtok.errors import CheckpointError, DataError, RecipeError
from mmtok.files import last_checkpoint, write_text
from mmtok.lm.recipe import LMRecipe, dump_recipe, load_recipe


def tokens_modality(directory: str, layout, modality: str | None, what: str):
    """The layout's modality the token shards in `directory` belong to (by their bundle's checksum); DataError
    when they were made with a bundle the model was not extended with, or not `modality`'s when one is named."""
    from mmtok.lm.tokens import read_header

    header = read_header(directory)
    found = layout.for_bundle(header["bundle_checksum"])
    wanted = layout.modality(modality) if modality else found
    if found is None or found is not wanted:
        m = wanted or layout.modalities[0]
        raise DataError(f"{what} {directory} were made with bundle {header.get('bundle')} "
                        f"(checksum {header['bundle_checksum'][:12]}), but the model was extended with {m.bundle} "
                        f"(checksum {m.bundle_checksum[:12]})",
                        hint=f"tokenize the data with the model's bundle: mmtok tokenize {m.bundle} --data ... --out ...")
    return found


def check_inputs(recipe: LMRecipe):
    """(layout, the trained modality's ModalityLayout), after checking the layout against the model directory,
    the token shards against the layout and the block size against the longest sequence."""
    from mmtok.lm.llm import check_extended

    layout = check_extended(recipe.model.path)
    d = recipe.data
    m = tokens_modality(d.train, layout, d.modality, "token shards")
    if d.val and d.val != "holdout":
        tokens_modality(d.val, layout, m.name, "validation token shards")
    span = longest_span(d, m)
    longest = 2 + d.max_caption_tokens + span
    if d.block_size < longest:
        raise RecipeError(f"data.block_size {d.block_size} is shorter than the longest sequence ({longest} tokens: "
                          f"{span} {m.modality} tokens + up to {d.max_caption_tokens} caption tokens + 2)",
                          hint=f"set data.block_size >= {longest} or lower data.max_caption_tokens"
                          + (" (or tokenize with a shorter --whole)" if span != m.span_length else ""))
    return layout, m


def longest_span(d, m) -> int:
    """The longest span of the training (and validation) token shards: the layout's own, or with clips kept whole
    (`mmtok tokenize --whole`) begin + the longest clip's codes + end."""
    from mmtok.lm.tokens import TokenShards

    span = m.span_length
    for source in (d.train, d.val if d.val and d.val != "holdout" else None):
        if source is not None:
            shards = TokenShards(source)
            if shards.variable:
                span = max(span, shards.longest_codes() + 2)
    return span


def split_holdout(keys: list[str], fraction: float) -> tuple[list[int], list[int]]:
    """(train, held-out) indices chosen by a stable hash of each key (mmtok.data.holdout); both non-empty when
    there are at least 2 keys."""
    masks, held = split_shards([keys], fraction)
    return [int(i) for i in np.flatnonzero(masks[0])], [i for _, i in held]


def split_shards(shard_keys, fraction: float) -> tuple[dict[int, np.ndarray], list[tuple[int, int]]]:
    """The held-out split of keys given shard by shard (an iterable of key lists, read one at a time): ({shard:
    bool [count], True for training samples}, [(shard, position) of the held-out samples in input order]). A key is
    held out when its stable hash (mmtok.data.holdout) falls below `fraction`; with at least 2 keys both parts are
    non-empty (the lowest-scoring key is held out, or the highest-scoring one kept for training). A piece's key
    "NAME#k" (audio, motion: mmtok.lm.inputs) is scored by NAME, so a clip's pieces stay together."""
    from mmtok.data.holdout import holdout_score
    from mmtok.lm.inputs import clip_name

    masks, held, total = {}, [], 0
    lowest, highest = (float("inf"), None), (float("-inf"), None)
    for n, keys in enumerate(shard_keys):
        scores = np.array([holdout_score(clip_name(k)) for k in keys], dtype=np.float64)
        masks[n] = scores >= fraction
        held += [(n, int(i)) for i in np.flatnonzero(~masks[n])]
        if len(scores):
            i, j = int(scores.argmin()), int(scores.argmax())
            if scores[i] < lowest[0]:
                lowest = (scores[i], (n, i))
            if scores[j] > highest[0]:
                highest = (scores[j], (n, j))
        total += len(scores)
    if total >= 2 and not held:
        n, i = lowest[1]
        masks[n][i] = False
        held = [(n, i)]
    if total >= 2 and not any(m.any() for m in masks.values()):
        n, i = highest[1]
        masks[n][i] = True
        held.remove((n, i))
    return masks, held


def _first_pairs(shards, picks: list[tuple[int, int]], m, tokenizer, max_caption_tokens: int):
    """Pairs of the samples `picks` ((shard, position) each, in order), reading only their shards."""
    from mmtok.lm.sequences import concat_pairs, make_pairs, take

    parts = []
    for n in sorted({n for n, _ in picks}):
        z = shards.load(n)
        keep = [i for k, i in picks if k == n]
        parts.append(make_pairs(take(z["ids"], keep), [z["captions"][i] for i in keep], [z["keys"][i] for i in keep],
                                m, tokenizer, max_caption_tokens))
    return concat_pairs(parts, m.span_length)


def build_data(recipe: LMRecipe, tokenizer, layout):
    """(train stream, validation batches or None, {"train_pairs", "val_pairs", "skipped_samples"}). The training
    shards are read lazily (mmtok.lm.sequences.PackedBatches); only the held-out pairs are held in memory."""
    from mmtok.lm.sequences import PackedBatches, Sequences, TokenPairs, validation_batches
    from mmtok.lm.tokens import TokenShards

    d = recipe.data
    shards = TokenShards(d.train)
    m = tokens_modality(d.train, layout, d.modality, "token shards")
    masks, val = None, None
    if d.val == "holdout":
        masks, held = split_shards((shards.keys(n) for n in range(len(shards))), d.holdout_fraction)
        val = _first_pairs(shards, held[:d.val_pairs], m, tokenizer, d.max_caption_tokens)
    elif d.val:
        vs = TokenShards(d.val)
        picks, n = [], 0
        while len(picks) < d.val_pairs and n < len(vs):
            picks += [(n, i) for i in range(min(vs.count(n), d.val_pairs - len(picks)))]
            n += 1
        val = _first_pairs(vs, picks, m, tokenizer, d.max_caption_tokens)
    seqs = Sequences(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else seqs.eos
    pairs = TokenPairs(shards, m, tokenizer, d.max_caption_tokens, masks)
    stream = PackedBatches(pairs, m, seqs, block_size=d.block_size, batch_size=d.batch_size,
                           t2i_fraction=d.t2i_fraction, caption_dropout=d.caption_dropout, seed=recipe.seed, pad_id=pad,
                           group_shards=d.group_shards)
    batches = validation_batches(val, m, seqs, d.batch_size, pad) if val is not None and len(val) else None
    return stream, batches, {"train_pairs": len(pairs), "val_pairs": len(val) if val is not None else 0,
                             "skipped_samples": shards.skipped()[0], "modality": m.name}


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
    ckpt = last_checkpoint(out)
    if resume and not ckpt.is_file():
        raise CheckpointError(f"nothing to resume in {out}: {ckpt} does not exist",
                              hint="drop --resume to start a new run, or point --out at an earlier run")
    if not resume and ckpt.is_file():
        raise CheckpointError(f"{out} already holds a run ({ckpt})",
                              hint="add --resume to continue it, or choose another --out")
    layout, m = check_inputs(recipe)
    import torch

    threads = torch.get_num_threads()
    if recipe.trainer.threads:
        torch.set_num_threads(recipe.trainer.threads)
    request = StopRequest()
    request.install()
    try:
        return _train(recipe, out, layout, m, ckpt if resume else None, callbacks or [], request, save_model)
    finally:
        request.restore()
        torch.set_num_threads(threads)


def _train(recipe: LMRecipe, out: Path, layout, m, ckpt, callbacks: list, request, save_model: bool) -> dict:
    import lightning as L
    import torch
    from torch.utils.data import DataLoader

    from mmtok.lm.attention import check_block_attention
    from mmtok.lm.llm import load_extended
    from mmtok.lm.task import LMTask
    from mmtok.train.callbacks import Checkpointer, RichSteps
    from mmtok.train.run import build_trainer, quiet_lightning
    from mmtok.train.stop import TIME_LIMIT, RunStopper, exit_code, fit, reason_name

    t = recipe.trainer
    quiet_lightning()
    L.seed_everything(recipe.seed, workers=True, verbose=False)
    dtype = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16}[recipe.model.dtype]
    model, tokenizer, _ = load_extended(recipe.model.path, dtype=dtype)
    if m.next_scale:
        check_block_attention(model)
    stream, val_batches, counts = build_data(recipe, tokenizer, layout)
    task = LMTask(recipe, model, layout, stream, modality=m.modality)
    write_text(out / "recipe.yaml", dump_recipe(recipe))

    train_loader = DataLoader(stream, batch_size=None)
    val_loader = DataLoader(val_batches, batch_size=None) if val_batches else None
    checkpointer = Checkpointer(out, t.ckpt_every, t.keep_every, t.keep_best, t.keep_best_mode)
    stopper = RunStopper(request, t.max_minutes, checkpointer.save)
    trainer = build_trainer(recipe, out, [RichSteps(), checkpointer, stopper, *callbacks])
    before = {}
    if ckpt is None and val_loader is not None:
        before = trainer.validate(task, dataloaders=val_loader, verbose=False)[0]
    stopped, seconds = fit(trainer, task, train_loader, val_loader, ckpt)
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
        "checkpoint": str(last_checkpoint(out)),
        "model": None, "stop_reason": reason_name(stopped.reason) if stopped is not None else None,
        "exit_code": exit_code(stopped.reason) if interrupted else 0, "is_global_zero": trainer.is_global_zero,
    }
    if trainer.is_global_zero:
        if save_model and not interrupted:
            summary["model"] = str(save_trained(task, tokenizer, layout, out / "model"))
        write_text(out / "summary.json", json.dumps(summary, indent=2))
    return summary


def save_trained(task, tokenizer, layout, out: Path) -> Path:
    """The trained model (LoRA adapters and trainable rows merged into a copy) with its tokenizer and layout,
    written atomically to `out`: a directory `mmtok lm generate` and `mmtok lm train` take like an extended one."""
    import copy

    from mmtok.lm.llm import save_extended

    model = task.model
    if hasattr(model, "merge_and_unload"):
        model = copy.deepcopy(model).merge_and_unload()
    return save_extended(model, tokenizer, layout, out)
