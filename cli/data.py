"""`mmtok data ...`: prepare data. Heavy modules (PIL, soundfile, webdataset, torch) load inside the commands.

`mmtok data pack` packs a folder into webdataset shards for the modality `--modality` names, or the one the folder
holds (images or audio files). A modality plugs its packer in as `Modality.pack` (mmtok.modalities):
pack(src, out_pattern, shard_size=, val_fraction=, seed=, progress=) -> mmtok.data.pack.PackReport.
Motion packs into a folder of feature files with Mean/Std instead (mmtok.modalities.motion.pack.pack_motion), in the
layout and fps of a motion recipe's model (`--recipe`).
"""
from __future__ import annotations

import inspect
import json
import shlex
from pathlib import Path

import typer

from mmtok.cli.common import guarded

data_app = typer.Typer(help="Prepare data: pack a folder of images or audio into webdataset shards.",
                       no_args_is_help=True, rich_markup_mode="rich", add_completion=False)


@data_app.callback()
def data_callback() -> None:
    """Prepare data: pack a folder of images or audio into webdataset shards."""

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
    modality: str = typer.Option("auto", "--modality", help="image, audio, motion, or auto: what the folder holds "
                                 "(images or audio)."),
    recipe: str = typer.Option("motion_quickstart", "--recipe", help="Motion only: the recipe whose model (feature "
                               "layout, fps, joint map) the clips are converted for."),
) -> None:
    """Pack a folder of images into webdataset tar shards for `mmtok train` (or a folder of audio files).

    Every file is decoded first: corrupt (and, for audio, silent) files are skipped and listed. Images: JPEG, PNG
    and WebP bytes are stored as they are, other formats as PNG, and images with a shorter side below --min-side
    (256 px) are counted in one warning. Audio: WAV, FLAC, OGG, Opus and MP3 bytes are stored as they are, other
    formats as FLAC. A sidecar text file (photo.jpg + photo.txt, take1.wav + take1.txt) becomes the sample's "txt"
    (caption or transcript). With --val-fraction, a seeded share of the files goes to validation shards named with
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

    from mmtok.data.pack import check_pattern

    if modality == "motion":
        return _pack_motion(src, out_pattern, recipe, val_fraction)
    check_pattern(out_pattern)
    name = _modality(src, modality)
    packer, options = _packer(name), {}
    if name == "image":
        options["min_side"] = min_side
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
        report = packer(src, out_pattern, shard_size=shard_size, val_fraction=val_fraction, seed=seed,
                        progress=step, **options)
    finally:
        if bar:
            bar[0].stop()
    _summary(report, out_pattern)


def _pack_motion(src: Path, out: str, recipe: str, val_fraction: float) -> None:
    """Motion clips -> OUT/[train|val]/*.npy features in `recipe`'s model layout, Mean/Std over the training split."""
    from mmtok import config
    from mmtok.errors import RecipeError
    from mmtok.modalities.motion.pack import pack_motion

    spec = config.load(recipe).model
    if not hasattr(spec, "joint_map"):
        raise RecipeError(f"recipe {recipe!r} is not a motion recipe", hint="give --recipe motion_quickstart, "
                          "motion_t2m_gpt, motion_momask_rvq or a YAML of the motion family")
    report = pack_motion(str(src), out, spec, holdout=val_fraction)
    typer.echo(report.summary())
    for line in report.dropped[:SHOWN_SKIPS]:
        typer.echo(f"dropped {line}")
    if len(report.dropped) > SHOWN_SKIPS:
        typer.echo(f"... and {len(report.dropped) - SHOWN_SKIPS} more (all listed in {out}/motion.json)")
    data = f"{out}/train --set data.val={out}/val" if val_fraction else f"{out} --set data.val=null"
    typer.echo("train on them with:")
    typer.echo(f"  mmtok train {recipe} --data {data} --set model.stats={out}")


def _modality(src: Path, modality: str) -> str:
    """The modality to pack `src` as: `modality` unless "auto", else what the folder holds (images or audio)."""
    from mmtok.errors import DataError

    if modality != "auto":
        return modality
    from mmtok.data.pack import check_source
    from mmtok.modalities.audio.decode import find_audio
    from mmtok.modalities.image.decode import find_images

    folder = check_source(src)
    images, audio = len(find_images(folder)), len(find_audio(folder))
    if images and audio:
        raise DataError(f"{src} holds {images} image and {audio} audio files", hint="say which to pack with "
                        "--modality image or --modality audio")
    if not images and not audio:
        from mmtok.modalities.motion.clips import find_clips

        clips = find_clips(folder)
        if clips:
            raise DataError(f"{src} holds no image or audio files, but {len(clips)} that may be motion clips "
                            "(.bvh .txt .npy .json)", hint="pack motion clips with --modality motion (--recipe names "
                            "the feature layout)")
    return "audio" if audio else "image"  # a folder with neither gets the image packer's "no image files" error


def _packer(name: str):
    """The modality's pack hook (mmtok.modalities); DataError when it has none in the shard form."""
    from mmtok import modalities
    from mmtok.errors import DataError

    pack = modalities.get(name).resolve("pack")
    if pack is None or "out_pattern" not in inspect.signature(pack).parameters:
        raise DataError(f"`mmtok data pack` cannot pack {name} data into shards",
                        hint="image and audio folders pack into shards; docs/data.md says how to prepare other data")
    return pack


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
    table.add_row("with transcript" if report.modality == "audio" else "with caption", str(report.captions))
    if report.modality == "audio":
        table.add_row("duration", f"{report.seconds / 60:.1f} min")
    table.add_row("other files ignored", str(report.ignored))
    table.add_row("train shards", f"{len(report.train_shards)}  {report.train_pattern or '-'}")
    table.add_row("val shards", f"{len(report.val_shards)}  {report.val_pattern or '-'}")
    console.print(table)
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

    json_path = report_path(out_pattern)
    json_path.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    typer.echo(f"report: {json_path}")
    if not report.train_pattern:
        typer.echo("no train samples were written: nothing to train on")
        return
    recipe = "audio_quickstart" if report.modality == "audio" else "quickstart"
    command = f"mmtok train {recipe} --data {_quote(report.train_pattern)}"
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
