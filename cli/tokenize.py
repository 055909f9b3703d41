"""`mmtok tokenize`: a captioned dataset (images, audio or motion) encoded once into token shards for LM training."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from typing_extensions import Annotated

DEVICE_HELP = "cpu, gpu, gpu:N or auto (the GPU when there is one); cuda / cuda:N also work."


def tokenize_command(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory (from `mmtok export`).")],
    data: Annotated[str, typer.Option("--data", help="Images or audio: a folder (captions / transcripts from a "
                                      ".tsv / .csv / .jsonl manifest at its top, or name.txt beside each file) or "
                                      "webdataset shards such as "
                                      "'shards/train-{000000..000009}.tar'. Motion: a folder of clips (.npy, .bvh, "
                                      "DeepMimic), captions in name.txt beside .npy / .bvh clips.")],
    out: Annotated[Path, typer.Option("--out", help="Directory for the token shards (resumes when it holds some).")],
    shard_size: Annotated[int, typer.Option("--shard-size", min=1, help="Input samples per token shard.")] = 1000,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Samples per forward pass.")] = 64,
    device: Annotated[str, typer.Option("--device", help=DEVICE_HELP)] = "auto",
    whole: Annotated[Optional[float], typer.Option(
        "--whole", metavar="SECONDS", help="Audio and motion: keep each clip whole, up to SECONDS long (longer clips "
        "are skipped and named), one row of its own length per clip keyed by its name, so an utterance and its "
        "transcript line up for the LM stage. Default: cut clips into pieces of the bundle's input length.")] = None,
):
    """Encode a dataset into token shards with an image, audio or motion bundle: ids, captions, keys, checksum.

    Audio clips and motion clips are cut into consecutive pieces of the bundle's input length (keys NAME#k; a
    trailing short piece is dropped), or with --whole kept whole (speech with its transcript). Killed and started
    again with the same command, it keeps the finished shards and redoes the rest. With RANK / WORLD_SIZE set (torchrun, SLURM), rank R encodes shards
    N % WORLD_SIZE == R. Unreadable, corrupt, silent or too-short inputs are skipped, counted and named.

    Example: [bold]mmtok tokenize bundles/quickstart --data stamps/ --out tokens/stamps[/bold]
    """
    import os

    from rich.markup import escape

    from mmtok.hardware import torch_device
    from mmtok.lm.tokens import tokenize

    device = torch_device(device)  # before any work: a GPU that is not there is one line
    if device == "cuda:0" and "LOCAL_RANK" in os.environ:  # one GPU per rank under torchrun / SLURM
        device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
    report = tokenize(bundle, data, out, shard_size=shard_size, batch_size=batch_size, device=device, whole=whole)
    from mmtok.cli.common import table_console

    console = table_console()
    console.print(f"[green]tokenized[/green] {report['samples']} samples of {escape(data)} -> {escape(str(out))}: "
                  f"{report['encoded']} encoded now, {report['kept']} finished shard(s) kept, "
                  f"{report['skipped']} skipped; {len(report['shards'])} shard(s)"
                  + (f", {report['tokens_per_s']:.0f} tokens/s" if report["tokens_per_s"] else ""), soft_wrap=True)
    for entry in report["bad"][:10]:
        console.print(f"  [yellow]skipped[/yellow] {escape(entry)}", soft_wrap=True)
    if len(report["bad"]) > 10:
        console.print(f"  ... and {len(report['bad']) - 10} more (each shard's 'bad' array names them)")
    summary = {k: v for k, v in report.items() if k != "bad"}
    (Path(out) / "tokenize_summary.json").write_text(json.dumps(summary, indent=2))
