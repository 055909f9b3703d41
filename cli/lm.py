"""`mmtok lm`: a bundle's tokens in a Hugging Face causal LM: extend, train, generate."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from typing_extensions import Annotated

from mmtok.cli.common import guarded
from mmtok.cli.data import _reflow

lm_app = typer.Typer(help="The LLM stage: extend a causal LM's vocabulary by a bundle's tokens, train it on token "
                     "shards, generate images and captions.", no_args_is_help=True, rich_markup_mode="rich",
                     add_completion=False)


def extend_command(
    llm: Annotated[Path, typer.Option("--llm", help="A local Hugging Face causal LM directory (config.json, "
                                      "weights, tokenizer) or a .gguf file.")],
    tokenizer: Annotated[List[Path], typer.Option("--tokenizer", help="A bundle from `mmtok export`; repeat for "
                                                  "several (each gets its own id block).")],
    out: Annotated[Path, typer.Option("--out", help="Directory for the extended model, tokenizer and layout.")],
    pad_to_multiple_of: Annotated[Optional[int], typer.Option(
        "--pad-to-multiple-of", min=1, help="Round the embedding rows up to a multiple of this (e.g. 64).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing non-empty OUT.")] = False,
):
    """Add one token per code (per codebook) and begin / end / end-of-row tokens per bundle to an LLM.

    Embeddings are resized with mean initialisation (a padded vocabulary is never shrunk); OUT holds the
    model (safetensors), its tokenizer and mmtok_layout.json (id ranges, special tokens, bundle checksums).

    Example: [bold]mmtok lm extend --llm SmolLM2-135M.gguf --tokenizer bundles/quickstart --out lm/smol-vq[/bold]
    """
    from rich.console import Console
    from rich.markup import escape

    from mmtok.lm.extend import extend

    layout = extend(llm, tokenizer, out, pad_to_multiple_of=pad_to_multiple_of, force=force)
    console = Console()
    console.print(f"[green]extended[/green] {escape(str(llm))} -> {escape(str(out))}: text ids 0..{layout.text_vocab_size - 1}, "
                  f"{layout.tokenizer_size - layout.text_vocab_size} new tokens, {layout.model_vocab_size} embedding rows",
                  soft_wrap=True)
    for m in layout.modalities:
        lo, hi = m.code_range(0)
        console.print(f"  {m.name}: <{m.prefix}> {m.begin_id}, </{m.prefix}> {m.end_id}"
                      + (f", <{m.prefix}_eol> {m.eol_id}" if m.eol_id is not None else "")
                      + f", codes {m.code_offset}..{m.end_of_block - 1} ({m.levels} x {m.codebook_size}), "
                      f"{m.span_length} tokens per {m.modality}", soft_wrap=True)


lm_app.command("extend", help=_reflow(extend_command.__doc__))(guarded(extend_command))
