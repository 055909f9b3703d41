"""Finding and loading Hugging Face causal LMs from local files: a model directory (config.json + safetensors /
bin weights + tokenizer files) or a GGUF file (`from_pretrained(dir, gguf_file=...)` dequantises it), and the
checks every `mmtok lm` command makes before any work: a tokenizer is there, the layout fits the vocabulary.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from mmtok.errors import CheckpointError
from mmtok.lm.layout import Layout, read_layout

TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model")


def resolve_llm(path: str | os.PathLike) -> tuple[Path, str | None]:
    """(directory, GGUF file name or None) of an LLM given as a directory or a .gguf file. A directory without
    config.json but with exactly one .gguf file is that GGUF. CheckpointError, before anything is loaded, for a
    missing path, a directory with neither config.json nor one GGUF, or no tokenizer files."""
    p = Path(path)
    if p.is_file() and p.suffix == ".gguf":
        return p.parent, p.name
    if not p.is_dir():
        raise CheckpointError(f"no LLM at {p}", hint="give a Hugging Face model directory or a .gguf file")
    ggufs = sorted(q.name for q in p.glob("*.gguf"))
    if not (p / "config.json").is_file():
        if len(ggufs) == 1:
            return p, ggufs[0]
        what = f"{len(ggufs)} .gguf files ({', '.join(ggufs[:3])})" if ggufs else "no config.json and no .gguf file"
        raise CheckpointError(f"{p} is not a Hugging Face model directory: {what}",
                              hint="give the directory of a causal LM (config.json, weights, tokenizer) or one .gguf file")
    if not any((p / name).is_file() for name in TOKENIZER_FILES):
        raise CheckpointError(f"LLM directory {p} has no tokenizer (none of {', '.join(TOKENIZER_FILES)})",
                              hint="copy the model's tokenizer files into it (tokenizer.save_pretrained(DIR))")
    return p, None


def quiet_progress_bars() -> None:
    """Hugging Face's tqdm bars (loading and writing weights) off when stderr is not a terminal (`> log`, nohup,
    SLURM): in a file each redraw is another line. On a terminal they stay."""
    import sys

    if not sys.stderr.isatty():
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def load_tokenizer(directory: Path, gguf_file: str | None = None):
    from transformers import AutoTokenizer

    quiet_progress_bars()

    try:
        return AutoTokenizer.from_pretrained(str(directory), gguf_file=gguf_file)
    except Exception as e:  # transformers raises OSError, ValueError, KeyError, ... for unusable files
        raise CheckpointError(f"cannot load the tokenizer of {directory / (gguf_file or '')}: "
                              f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}",
                              hint="check the tokenizer files, or save them again with tokenizer.save_pretrained") from None


def load_model(directory: Path, gguf_file: str | None = None, dtype: str = "auto"):
    """The causal LM in eval mode (GGUF weights dequantised to float32)."""
    import torch
    from transformers import AutoModelForCausalLM

    quiet_progress_bars()
    kwargs = {}
    if gguf_file:  # dequantised to dense float32 weights: trainable and saved as safetensors
        from transformers import GgufConfig

        kwargs = {"gguf_file": gguf_file, "quantization_config": GgufConfig(gguf_file=gguf_file, dequantize=True)}
        dtype = torch.float32 if dtype == "auto" else dtype
    try:
        model = AutoModelForCausalLM.from_pretrained(str(directory), dtype=dtype, **kwargs)
    except Exception as e:
        raise CheckpointError(f"cannot load the causal LM at {directory / (gguf_file or '')}: "
                              f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}",
                              hint="give a directory of a Hugging Face causal LM (or a .gguf file) that "
                              "AutoModelForCausalLM.from_pretrained loads") from None
    quantizer = getattr(model, "hf_quantizer", None)
    if gguf_file and quantizer is not None:
        quantizer.remove_quantization_config(model)  # every weight is a dense tensor now: a plain model
    return model.eval()


def config_vocab_size(directory: Path) -> int | None:
    """vocab_size from a model directory's config.json (text_config's for composite models), without loading."""
    try:
        cfg = json.loads((directory / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return cfg.get("vocab_size") or (cfg.get("text_config") or {}).get("vocab_size")


def check_extended(model_dir: str | os.PathLike) -> Layout:
    """The layout of an extended model directory, checked against its config.json and tokenizer before the
    model is loaded: CheckpointError (one line) when they disagree."""
    directory, gguf = resolve_llm(model_dir)
    layout = read_layout(directory)
    rows = config_vocab_size(directory)
    if rows is not None and rows != layout.model_vocab_size:
        raise CheckpointError(f"{directory}: the layout expects {layout.model_vocab_size} embedding rows, the model "
                              f"has {rows}", hint="the model or its mmtok_layout.json was replaced; re-run "
                              "`mmtok lm extend`")
    size = _tokenizer_size(directory)
    if size is not None and size != layout.tokenizer_size:
        raise CheckpointError(f"{directory}: the layout expects {layout.tokenizer_size} tokenizer entries, the "
                              f"tokenizer has {size}", hint="the tokenizer or mmtok_layout.json was replaced; re-run "
                              "`mmtok lm extend`")
    return layout


def _tokenizer_size(directory: Path) -> int | None:
    """len(tokenizer) read from tokenizer.json (vocab + added tokens), without building the tokenizer."""
    path = directory / "tokenizer.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    vocab = (data.get("model") or {}).get("vocab") or {}
    ids = set(vocab.values()) if isinstance(vocab, dict) else set(range(len(vocab)))  # BPE/WordPiece dict, Unigram list
    ids |= {int(t["id"]) for t in data.get("added_tokens", [])}
    return max(ids) + 1 if ids else None


def load_extended(model_dir: str | os.PathLike, dtype: str = "auto"):
    """(model, tokenizer, layout) of an extended model directory, all checked against each other."""
    layout = check_extended(model_dir)
    directory, gguf = resolve_llm(model_dir)
    tokenizer = load_tokenizer(directory, gguf)
    if len(tokenizer) != layout.tokenizer_size:
        raise CheckpointError(f"{directory}: the layout expects {layout.tokenizer_size} tokenizer entries, the "
                              f"tokenizer has {len(tokenizer)}", hint="re-run `mmtok lm extend`")
    model = load_model(directory, gguf, dtype)
    rows = model.get_input_embeddings().num_embeddings
    if rows != layout.model_vocab_size:
        raise CheckpointError(f"{directory}: the layout expects {layout.model_vocab_size} embedding rows, the model "
                              f"has {rows}", hint="re-run `mmtok lm extend`")
    return model, tokenizer, layout


def model_dir(path: str | os.PathLike) -> Path:
    """An extended model directory, or the `model/` a `mmtok lm train` run directory wrote."""
    from mmtok.lm.layout import LAYOUT_FILE

    p = Path(path)
    if not (p / LAYOUT_FILE).is_file() and (p / "model" / LAYOUT_FILE).is_file():
        return p / "model"
    return p


def check_bundle(bundle: str | os.PathLike, m) -> None:
    """CheckpointError unless `bundle` is the very bundle the model's modality `m` was extended with."""
    from mmtok.lm.layout import bundle_checksum

    digest = bundle_checksum(bundle)
    if digest != m.bundle_checksum:
        raise CheckpointError(f"bundle {bundle} (checksum {digest[:12]}) is not the one the model was extended with "
                              f"({m.bundle}, checksum {m.bundle_checksum[:12]})",
                              hint="decode with the model's own bundle; its ids mean nothing to another tokenizer")


def save_extended(model, tokenizer, layout: Layout, out: str | os.PathLike) -> Path:
    """Write a model, its tokenizer and its layout to `out` atomically (built in OUT.partial, then renamed into
    place, replacing an older `out`): the directory every `mmtok lm` command takes."""
    import shutil

    out = Path(out)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    quiet_progress_bars()
    model.save_pretrained(str(tmp))
    tokenizer.save_pretrained(str(tmp))
    layout.save(tmp)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out
