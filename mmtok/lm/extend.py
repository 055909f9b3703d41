"""`extend(llm, bundles, out)`: a local causal LM and its tokenizer, extended by one token per code per codebook of
each bundle plus its structural tokens (mmtok.lm.layout), embeddings resized with mean initialisation.

    layout = extend("SmolLM2-135M.gguf", ["bundles/quickstart"], "lm/smollm2-vq")

The output directory holds the model (safetensors), the tokenizer and `mmtok_layout.json`. Text ids keep their
ids and their embeddings, so the model's logits over the text vocabulary are unchanged on text. New rows are
drawn around the mean of the old ones (transformers' `mean_resizing`); a model whose vocabulary is padded beyond
its tokenizer keeps its rows (the new ids fill the padding first) and is never shrunk.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from mmtok.errors import CheckpointError
from mmtok.lm.layout import LAYOUT_FILE, Layout, bundle_checksum, bundle_spec, check_next_scale, plan_layout
from mmtok.lm.llm import load_model, load_tokenizer, resolve_llm, save_extended


def read_bundle_meta(bundle: str | os.PathLike) -> tuple[str, dict]:
    """(checksum, tokenizer.json) of a bundle, its checksums verified, without building its model."""
    from mmtok.export.load import CONFIG_FILE, META_FILE, check_compatible, read_json, verify_checksums

    path = Path(bundle)
    if not path.is_dir():
        raise CheckpointError(f"no bundle at {path}", hint="make one with `mmtok export RUN OUT_DIR`")
    check_compatible(read_json(path / CONFIG_FILE), f"bundle {path}")
    verify_checksums(path)
    return bundle_checksum(path), read_json(path / META_FILE)


def extend(llm: str | os.PathLike, bundles: Sequence[str | os.PathLike], out: str | os.PathLike, *,
           pad_to_multiple_of: int | None = None, next_scale: bool = False, force: bool = False) -> Layout:
    """Extend the causal LM at `llm` (directory or .gguf) by the tokens of `bundles`; write model, tokenizer and
    layout to `out` (atomically: a temporary directory renamed into place). Returns the layout.

    Every input is checked before the model is loaded: the LLM has a tokenizer, each bundle's checksums hold,
    `out` is new (or `force`), the LLM was not extended before. `next_scale`: VAR's block-causal caption -> image
    sequences for the multi-scale bundles (mmtok.lm.layout)."""
    from tokenizers import AddedToken

    out = Path(out)
    if not bundles:
        raise CheckpointError("no tokenizer bundle given", hint="add --tokenizer BUNDLE (once per bundle)")
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise CheckpointError(f"{out} already exists and is not empty", hint="choose another --out or add --force")
    directory, gguf = resolve_llm(llm)
    if (directory / LAYOUT_FILE).is_file():
        raise CheckpointError(f"{directory} is already extended by mmtok ({LAYOUT_FILE})",
                              hint="extend the original LLM with every bundle at once (--tokenizer A --tokenizer B)")
    metas = [(str(b), *read_bundle_meta(b)) for b in bundles]
    specs = [bundle_spec(path, meta) for path, _, meta in metas]  # one line before the model loads
    if next_scale:
        check_next_scale([s.multi_scale for s in specs])
    tokenizer = load_tokenizer(directory, gguf)
    model = load_model(directory, gguf)

    text_vocab = len(tokenizer)
    rows = model.get_input_embeddings().num_embeddings
    layout = plan_layout(str(directory / gguf) if gguf else str(directory), text_vocab, rows, metas, pad_to_multiple_of,
                         next_scale)
    new = [AddedToken(t, special=True, normalized=False) for m in layout.modalities for t in m.tokens()]
    clash = [t.content for t in new[:3] if t.content in tokenizer.get_vocab()]
    if clash:
        raise CheckpointError(f"the tokenizer of {llm} already has {clash[0]!r}",
                              hint="extend the original LLM, not one extended before")
    tokenizer.add_tokens(new, special_tokens=True)
    if len(tokenizer) != layout.tokenizer_size:
        raise CheckpointError(f"adding {len(new)} tokens gave a tokenizer of {len(tokenizer)} entries, expected "
                              f"{layout.tokenizer_size}", hint="the tokenizer merges added tokens; report this")
    for m in layout.modalities:  # the ids the tokenizer gave are the ids the layout promises
        first, last = m.tokens()[0], m.tokens()[-1]
        if tokenizer.convert_tokens_to_ids([first, last]) != [m.first_id, m.end_of_block - 1]:
            raise CheckpointError(f"the tokenizer placed {first!r} at an unexpected id", hint="report this")
    if layout.model_vocab_size > rows:
        model.resize_token_embeddings(layout.model_vocab_size, mean_resizing=True)
    if model.get_input_embeddings().num_embeddings != layout.model_vocab_size:
        raise CheckpointError("resizing the embeddings gave an unexpected size", hint="report this")

    save_extended(model, tokenizer, layout, out)
    return layout
