"""`mmtok lm`: a bundle's tokens in a Hugging Face causal LM: extend, train, generate."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from typing_extensions import Annotated

from mmtok.cli.common import guarded, table_console
from mmtok.cli.data import _reflow

lm_app = typer.Typer(help="The LLM stage: extend a causal LM's vocabulary by a bundle's tokens, train it on token "
                     "shards (image, audio, motion), generate images and captions.", no_args_is_help=True,
                     rich_markup_mode="rich",
                     add_completion=False)


def extend_command(
    llm: Annotated[Path, typer.Option("--llm", help="A local Hugging Face causal LM directory (config.json, "
                                      "weights, tokenizer) or a .gguf file.")],
    tokenizer: Annotated[List[Path], typer.Option("--tokenizer", help="A bundle from `mmtok export`; repeat for "
                                                  "several (each gets its own id block).")],
    out: Annotated[Path, typer.Option("--out", help="Directory for the extended model, tokenizer and layout.")],
    pad_to_multiple_of: Annotated[Optional[int], typer.Option(
        "--pad-to-multiple-of", min=1, help="Round the embedding rows up to a multiple of this (e.g. 64).")] = None,
    next_scale: Annotated[bool, typer.Option(
        "--next-scale", help="Multi-scale bundles: train and sample as VAR does (a block per scale that sees every "
        "coarser scale and itself; one forward pass draws a whole scale). Needs eager or sdpa attention.")] = False,
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

    layout = extend(llm, tokenizer, out, pad_to_multiple_of=pad_to_multiple_of, next_scale=next_scale,
                    force=force)
    console = table_console()
    console.print(f"[green]extended[/green] {escape(str(llm))} -> {escape(str(out))}: text ids 0..{layout.text_vocab_size - 1}, "
                  f"{layout.tokenizer_size - layout.text_vocab_size} new tokens, {layout.model_vocab_size} embedding rows",
                  soft_wrap=True)
    for m in layout.modalities:
        lo, hi = m.code_range(0)
        console.print(f"  {m.name}: <{m.prefix}> {m.begin_id}, </{m.prefix}> {m.end_id}"
                      + (f", {m.tokens()[2]} {m.eol_id}" if m.eol_id is not None else "")  # end of row / scale
                      + f", codes {m.code_offset}..{m.end_of_block - 1} ({m.levels} x {m.codebook_size}), "
                      f"{m.span_length} tokens per {m.modality}"
                      + (f"; next-scale: one block per scale ({', '.join(f'{s}x{s}' for s in m.scales)})"
                         if m.next_scale else ""), soft_wrap=True)


def train_command(
    recipe: Annotated[Optional[str], typer.Argument(
        help="An LM recipe: a YAML path or a shipped name (recipes/lm_*.yaml). Not needed with --resume --out.")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="Run directory (default: runs/RECIPE).")] = None,
    max_steps: Annotated[Optional[int], typer.Option("--max-steps", min=1, help="Stop after N optimizer steps.")] = None,
    resume: Annotated[bool, typer.Option(
        "--resume", help="Continue the run in --out from its last checkpoint, with the run's own recipe.yaml; "
        "--set and --max-steps given now apply on top.")] = False,
    overrides: Annotated[Optional[List[str]], typer.Option(
        "--set", help="Override a recipe value, e.g. --set optim.lr=1e-4 (repeatable).")] = None,
    print_config: Annotated[bool, typer.Option(
        "--print-config", help="Print the resolved recipe and exit without training.")] = False,
):
    """Fine-tune an extended LM on token shards: caption -> span and span -> caption (image, audio or motion), packed.

    The token shards are read a few at a time (data.group_shards); their bundle's checksum says which of the
    model's modalities they are. Held-out span-token (image, audio or motion) and caption losses are measured
    before training and at the end (summary.json); the
    trained model (LoRA merged) is written to RUN/model for [bold]mmtok lm generate[/bold]. Ctrl-C or SIGTERM
    saves a checkpoint and exits with 130 / 143; [bold]--resume[/bold] continues exactly.

    Example: [bold]mmtok lm train recipes/lm_smollm2.yaml --out runs/lm_smollm2[/bold]
    """
    from rich.console import Console

    from mmtok.errors import MmtokError
    from mmtok.lm.recipe import dump_recipe, load_recipe
    from mmtok.lm.train import resume_recipe, train

    sets = list(overrides or []) + ([f"trainer.max_steps={max_steps}"] if max_steps is not None else [])
    if resume:
        if out is None:
            raise MmtokError("--resume needs the run to continue", hint="give --out RUN_DIR")
        resolved = resume_recipe(out, sets)
    else:
        if recipe is None:
            raise MmtokError("which recipe?", hint="give a YAML path, e.g. mmtok lm train recipes/lm_smollm2.yaml")
        resolved = load_recipe(recipe, sets)
    if print_config:
        typer.echo(dump_recipe(resolved), nl=False)
        return
    run_dir = out or Path("runs") / resolved.name
    console = Console(soft_wrap=True)
    console.print(f"[bold]mmtok lm train[/bold] {resolved.name} -> {run_dir}  (model {resolved.model.path}, "
                  f"{'LoRA r=' + str(resolved.lora.r) if resolved.lora else 'full fine-tuning'}, "
                  f"tokens: {resolved.data.train}, validation: {resolved.data.val})")
    summary = train(resolved, run_dir, resume=resume)
    if not summary["is_global_zero"]:
        raise typer.Exit(code=summary["exit_code"])
    b, f = summary["before"], summary["final"]
    for name in ("image_loss", "audio_loss", "motion_loss", "caption_loss"):
        if f"val/{name}" in f:
            was = f" (before training {b[f'val/{name}']:.3f})" if f"val/{name}" in b else ""
            console.print(f"held-out {name.replace('_', ' ')}: {f[f'val/{name}']:.3f}{was}")
    console.print(f"summary: {run_dir / 'summary.json'}")
    if summary["model"]:
        console.print(f"trained model: {summary['model']}")
    how = f"mmtok lm train --resume --out {run_dir}"
    if summary["status"] == "finished":
        console.print(f"[green]done[/green]: step {summary['step']} in {summary['seconds']:.0f} s "
                      f"({summary['tokens_per_s']:.0f} tokens/s); checkpoint: {summary['checkpoint']}")
    else:
        console.print(f"[yellow]{summary['status']}[/yellow] at step {summary['step']} of {summary['max_steps']}; "
                      f"checkpoint: {summary['checkpoint']}; continue with: {how}")
    if summary["exit_code"]:
        raise typer.Exit(code=summary["exit_code"])


def generate_command(
    model: Annotated[Path, typer.Argument(help="A trained run directory (its model/), or any extended model directory.")],
    out: Annotated[Path, typer.Option("--out", help="Directory for the PNGs, grid.png and generated.json.")],
    prompt: Annotated[Optional[List[str]], typer.Option("--prompt", help="A caption to draw (repeatable).")] = None,
    image: Annotated[Optional[List[Path]], typer.Option("--image", help="An image to caption (repeatable).")] = None,
    tokenizer: Annotated[Optional[Path], typer.Option(
        "--tokenizer", help="The bundle that decodes / encodes images (default: the one the model was extended "
        "with, at the path recorded in its layout); its checksum must match.")] = None,
    num: Annotated[int, typer.Option("--num", min=1, help="Images per prompt.")] = 4,
    cfg: Annotated[float, typer.Option("--cfg", help="Classifier-free guidance scale (1: none).")] = 3.0,
    temperature: Annotated[float, typer.Option("--temperature", min=0.0, help="Sampling temperature (0: greedy).")] = 1.0,
    top_k: Annotated[int, typer.Option("--top-k", min=0, help="Keep the k most likely codes (0: all).")] = 0,
    top_p: Annotated[float, typer.Option("--top-p", min=0.0, max=1.0, help="Nucleus sampling mass (1: off).")] = 1.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the sampling.")] = 0,
    device: Annotated[str, typer.Option("--device", help="cpu, gpu, gpu:N or auto.")] = "auto",
):
    """Draw images from captions (classifier-free guidance) and write captions for images.

    Inside an image only its code range is sampled and the end-of-row / end-of-image tokens are forced, so every
    sample decodes. Each generated image is also captioned back by the model.

    Example: [bold]mmtok lm generate runs/lm_smollm2 --prompt "a red apple" --out samples/[/bold]
    """
    import json

    from rich.console import Console
    from rich.markup import escape

    import mmtok
    from mmtok.errors import MmtokError
    from mmtok.hardware import torch_device
    from mmtok.lm.generate import caption_images, generate_images
    from mmtok.lm.grid import save_rows
    from mmtok.lm.llm import check_bundle, check_extended, load_extended, model_dir

    if not prompt and not image:
        raise MmtokError("nothing to do", hint='give --prompt "a caption" (text -> image) and/or --image FILE')
    device = torch_device(device)
    directory = model_dir(model)
    layout = check_extended(directory)
    if not any(m.name == "image" for m in layout.modalities):
        raise MmtokError(f"mmtok lm generate draws images only; {directory} was extended with "
                         + ", ".join(m.modality for m in layout.modalities),
                         hint="sample audio / motion spans with mmtok.lm.generate.generate_spans(model, tokenizer, "
                         "layout.modality(NAME), captions) and decode the codes with the bundle")
    m = layout.modality("image")
    bundle = tokenizer or Path(m.bundle)
    check_bundle(bundle, m)
    for path in image or []:
        if not path.is_file():
            raise MmtokError(f"no image at {path}", hint="give image files to --image")
    console = Console(soft_wrap=True)
    tok = mmtok.load(bundle, device=device)
    llm, text_tok, layout = load_extended(directory)
    llm.to(device)
    out.mkdir(parents=True, exist_ok=True)
    record = {"model": str(directory), "bundle": str(bundle), "settings": {"cfg": cfg, "temperature": temperature,
              "top_k": top_k, "top_p": top_p, "seed": seed}, "images": [], "captions": []}
    rows = []
    for i, text in enumerate(prompt or []):
        codes = generate_images(llm, text_tok, layout, [text] * num, cfg_scale=cfg, temperature=temperature,
                                top_k=top_k or None, top_p=top_p, seed=seed + i)
        pictures = tok.decode(codes)
        back = caption_images(llm, text_tok, layout, codes)
        rows.append((text, pictures))
        for k, (pil, said) in enumerate(zip(tok.to_pil(pictures), back)):
            name = f"prompt{i:02d}_{k:02d}.png"
            pil.save(out / name)
            record["images"].append({"prompt": text, "file": name, "captioned_back": said})
        console.print(f"[green]{num} image(s)[/green] for {escape(repr(text))}; captioned back as: "
                      + "; ".join(escape(repr(s)) for s in back))
    if rows:
        console.print(f"grid: {save_rows(rows, out / 'grid.png')}")
    if image:
        codes = tok.encode([str(p) for p in image])
        for path, said in zip(image, caption_images(llm, text_tok, layout, codes)):
            record["captions"].append({"image": str(path), "caption": said})
            console.print(f"{escape(str(path))}: {escape(repr(said))}")
    (out / "generated.json").write_text(json.dumps(record, indent=2))
    console.print(f"record: {out / 'generated.json'}")


lm_app.command("extend", help=_reflow(extend_command.__doc__))(guarded(extend_command))
lm_app.command("train", help=_reflow(train_command.__doc__))(guarded(train_command))
lm_app.command("generate", help=_reflow(generate_command.__doc__))(guarded(generate_command))
