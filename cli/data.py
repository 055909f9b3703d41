"""`mmtok data ...`: prepare data. Heavy modules (PIL, soundfile, webdataset, torch) load inside the commands.

`mmtok data pack` packs a folder for the modality `--modality` names, or the one whose files the folder holds
(`Modality.find_files`). A modality plugs its packer in as `Modality.pack` (mmtok.modalities): into shards,
pack(src, out_pattern, shard_size=, val_fraction=, seed=, progress=, [min_side=, recipe=]) ->
mmtok.data.pack.PackReport; or into a folder (motion: feature files with Mean/Std in the layout of `--recipe`'s
model), pack(src, out, [recipe=, val_fraction=]) with `Modality.pack_summary` printing its report.
"""
from __future__ import annotations

import inspect
import shlex
from pathlib import Path

import typer

from mmtok.cli.common import guarded

HELP = "Prepare data: pack a folder of images or audio into webdataset shards, or motion clips into features."
data_app = typer.Typer(help=HELP,
                       no_args_is_help=True, rich_markup_mode="rich", add_completion=False)


@data_app.callback()
def data_callback() -> None:
    """Prepare data: pack a folder of images or audio into webdataset shards, or motion clips into features."""

SHOWN_SKIPS = 5


def pack_command(
    src: Path = typer.Argument(..., help="Folder of images, searched recursively (.jpg .png .webp .tif ...), of audio, "
                               "or of motion clips (.bvh, DeepMimic .txt, .npy features) with --modality motion."),
    out_pattern: str = typer.Argument(..., help="Shard file pattern with a shard-number field, e.g. "
                                      "shards/photos-%06d.tar (motion: a new folder)."),
    shard_size: int = typer.Option(1000, "--shard-size", help="Samples per shard."),
    val_fraction: float = typer.Option(0.0, "--val-fraction", help="Share of the images held out in validation shards (0 to <1)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sample order and of the validation draw."),
    min_side: int = typer.Option(256, "--min-side", help="Warn about images whose shorter side is below this (px)."),
    modality: str = typer.Option("auto", "--modality", help="image, audio, motion, or auto: the modality whose "
                                 "files the folder holds (image or audio; motion is named)."),
    recipe: str = typer.Option("motion_quickstart", "--recipe", help="Motion only: the recipe whose model (feature "
                               "layout, fps, joint map) the clips are converted for."),
) -> None:
    """Pack a folder of images into webdataset tar shards for `mmtok train` (or a folder of audio files).

    Every file is decoded first: corrupt (and, for audio, silent) files are skipped and listed. Images: JPEG, PNG
    and WebP bytes are stored as they are, other formats as PNG, and images with a shorter side below --min-side
    (256 px) are counted in one warning. Audio: WAV, FLAC, OGG, Opus and MP3 bytes are stored as they are, other
    formats as FLAC. The sample's "txt" (caption or transcript) is its row in a manifest at the top of the folder
    (.tsv / .csv / .jsonl with file and text columns: Common Voice, LJSpeech, NeMo, Hugging Face metadata), else a
    sidecar text file (photo.jpg + photo.txt, take1.wav + take1.txt). With --val-fraction, a seeded share of the
    files goes to validation shards named with
    "-val" (shards/photos-%06d.tar -> shards/photos-val-%06d.tar). Ends with the command that trains on the shards,
    and writes the summary as JSON beside them.

    Motion (--modality motion): every clip is converted to a feature file (.npy) in the layout and fps of --recipe's
    model, into OUT/train and OUT/val (the clips --val-fraction holds out by name), with Mean.npy / Std.npy over the
    training split only; unreadable clips are dropped and named.

    Example: mmtok data pack ~/photos 'shards/photos-%06d.tar' --val-fraction 0.05
    Example: mmtok data pack ~/bvh packed/ --modality motion --val-fraction 0.1
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from mmtok import modalities
    from mmtok.data.pack import check_pattern
    from mmtok.errors import DataError

    name = _modality(src, modality)
    found = modalities.get(name)
    pack = found.resolve("pack")
    if pack is None:
        raise DataError(f"`mmtok data pack` cannot pack {name} data",
                        hint="docs/data.md says how to prepare other data")
    params = inspect.signature(pack).parameters
    options = {k: v for k, v in {"min_side": min_side, "recipe": recipe, "val_fraction": val_fraction}.items()
               if k in params}
    if "out_pattern" not in params:  # a packer into a folder (motion: feature files and their statistics)
        if found.pack_summary is None:
            raise DataError(f"the {name} modality packs into a folder but declares no pack_summary",
                            hint="Modality.pack_summary(report) -> lines (see docs/adding-a-modality.md)")
        report = pack(src, out_pattern, **options)
        for line in found.resolve("pack_summary")(report):
            typer.echo(line)
        return
    check_pattern(out_pattern)
    columns = (TextColumn("packing"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
               TextColumn("{task.description}"))
    bar: list = []  # started on the first file, so that argument errors print one clean line

    def step(done: int, total: int, name: str) -> None:
        if not bar:
            bar.append(Progress(*columns, console=Console(stderr=True), transient=True))
            bar[0].start()
            bar.append(bar[0].add_task("", total=total))
        bar[0].update(bar[1], completed=done, description=name[-40:])

    try:
        report = pack(src, out_pattern, shard_size=shard_size, seed=seed, progress=step, **options)
    finally:
        if bar:
            bar[0].stop()
    _summary(report, out_pattern)


def _modality(src: Path, modality: str) -> str:
    """The modality to pack `src` as: `modality` unless "auto", else the one whose files the folder holds, among
    the modalities that declare `find_files` and pack into shards (a modality that packs into a folder, such as
    motion, is named with --modality)."""
    from mmtok import modalities
    from mmtok.data.pack import check_source
    from mmtok.errors import DataError

    if modality != "auto":
        return modality
    folder = check_source(src)
    counts, explicit = {}, {}
    for name in modalities.names():
        m = modalities.get(name)
        if m.find_files is None or m.pack is None:
            continue
        shards = "out_pattern" in inspect.signature(m.resolve("pack")).parameters
        n = len(m.resolve("find_files")(folder))
        (counts if shards else explicit)[name] = n
    held = {name: n for name, n in counts.items() if n}
    if len(held) > 1:
        what = " and ".join(f"{n} {name}" for name, n in held.items())
        raise DataError(f"{src} holds {what} files", hint="say which to pack with "
                        + " or ".join(f"--modality {name}" for name in held))
    if held:
        return next(iter(held))
    maybe = {name: n for name, n in explicit.items() if n}
    if maybe:
        name, n = next(iter(maybe.items()))
        raise DataError(f"{src} holds no {' or '.join(counts)} files, but {n} that may be {name} data",
                        hint=f"pack them with --modality {name}")
    raise DataError(f"{src} holds nothing to pack: " + ", ".join(f"no {name} files" for name in counts),
                    hint="put files in it (searched recursively), or name the modality with --modality")


def _summary(report, out_pattern: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(soft_wrap=True)
    table = Table(title=f"packed {report.src}", show_header=False)
    table.add_column("what")
    table.add_column("value")
    table.add_row("train samples", str(report.train_written))
    table.add_row("val samples", str(report.val_written))
    table.add_row("skipped", str(report.skipped_count))
    table.add_row(f"with {report.caption_label}", str(report.captions))
    if report.seconds:
        table.add_row("duration", f"{report.seconds / 60:.1f} min")
    table.add_row("other files ignored", str(report.ignored))
    table.add_row("train shards", f"{len(report.train_shards)}  {report.train_pattern or '-'}")
    table.add_row("val shards", f"{len(report.val_shards)}  {report.val_pattern or '-'}")
    console.print(table)
    if report.caption_sources:
        typer.echo(report.caption_sources)
    for name, reason in report.skipped[:SHOWN_SKIPS]:
        typer.echo(f"skipped {name}: {reason}")
    if report.skipped_count > SHOWN_SKIPS:
        typer.echo(f"... and {report.skipped_count - SHOWN_SKIPS} more (all listed in the JSON report)")
    small = report.small_warning()
    if small:
        typer.echo(f"warning: {small} (all listed in the JSON report)")
    if report.stale:
        typer.echo(f"warning: older shards past the range just written still exist (e.g. {report.stale[0]}); "
                   "delete them before using a glob over this folder")
    from mmtok.data.pack import report_path, val_pattern
    from mmtok.files import write_json

    json_path = write_json(report_path(out_pattern), report.to_dict())
    typer.echo(f"report: {json_path}")
    if not report.train_pattern:
        typer.echo("no train samples were written: nothing to train on")
        return
    command = f"mmtok train {report.train_recipe} --data {_quote(report.train_pattern)}"
    if report.val_pattern:
        command += f" --set data.val={_quote(report.val_pattern)}"
    typer.echo("train on them with:")
    typer.echo(f"  {command}")
    if not report.val_pattern:
        typer.echo(f"(no validation shards: validation stays as the recipe says; --val-fraction 0.05 would hold "
                   f"out 5% in {val_pattern(out_pattern)})")


def _quote(text: str) -> str:
    return f"'{text}'" if "'" not in text else shlex.quote(text)


def _reflow(doc: str) -> str:
    """A docstring as help text: paragraphs kept, line breaks inside a paragraph joined."""
    return "\n\n".join(" ".join(p.split("\n")) for p in inspect.cleandoc(doc).split("\n\n"))


data_app.command("pack", help=_reflow(pack_command.__doc__))(guarded(pack_command))
