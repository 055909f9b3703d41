"""`mmtok encode` and `mmtok decode`: images to token ids (.npy) and back, with a bundle."""
from __future__ import annotations

from pathlib import Path
from typing import List

import typer
from typing_extensions import Annotated


def _batches(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


DEVICE_HELP = "cpu, gpu, gpu:N or auto (the GPU when there is one); cuda / cuda:N also work."


SHOWN_SKIPS = 10


def encode_command(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory (from `mmtok export`).")],
    images: Annotated[List[Path], typer.Argument(help="Image files, or folders of images (searched recursively).")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the ids: int64 .npy of shape [N, h, w].")],
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per forward pass.")] = 32,
    device: Annotated[str, typer.Option("--device", help=DEVICE_HELP)] = "cpu",
    strict: Annotated[bool, typer.Option(
        "--strict", help="Stop at the first image that cannot be read, instead of skipping and listing it.")] = False,
):
    """Encode images into token ids (resized: shorter side to the bundle's size, centre crop).

    Also writes OUT.files.txt: the image paths in row order. An image that cannot be read (corrupt,
    truncated, not an image) is skipped and named with its reason, at the end and in OUT.skipped.txt, so
    the rest is still encoded; --strict stops at it instead.

    Example: [bold]mmtok encode bundles/quickstart cat.jpg dog.png --out ids.npy[/bold]
    """
    import numpy as np

    import mmtok
    from mmtok.errors import DataError
    from mmtok.hardware import torch_device
    from mmtok.modalities.image.decode import find_images

    device = torch_device(device)  # before any work: a GPU that is not there is one line
    from mmtok.modalities.image import require_image_bundle

    require_image_bundle(bundle, "encode")
    files: list[Path] = []
    for p in images:
        if p.is_dir():
            files += find_images(p)
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"no image at {p}", hint="give image files or folders")
    if not files:
        raise DataError("no image files found in " + ", ".join(str(p) for p in images))
    tok = mmtok.load(bundle, device=device)
    chunks, encoded, skipped = _encode_files(tok, files, batch_size, strict)
    skipped_file = out.with_name(out.stem + ".skipped.txt")
    if not chunks:
        _list_skips(skipped)
        raise DataError(f"none of the {len(files)} image(s) could be read", hint="see the reasons above")
    ids = np.concatenate(chunks)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, ids.astype(np.int64))
    order = out.with_name(out.stem + ".files.txt")
    order.write_text("".join(f"{f}\n" for f in encoded))
    if skipped:
        skipped_file.write_text("".join(f"{f}\t{reason}\n" for f, reason in skipped))
    elif skipped_file.exists():
        skipped_file.unlink()  # from an earlier run of the same --out: no longer true
    _list_skips(skipped)
    typer.echo(f"{len(encoded)} image(s) -> {out} (int64 {list(ids.shape)}; row i is line i of {order})")
    if skipped:
        typer.echo(f"skipped {len(skipped)} image(s) that could not be read: listed in {skipped_file}")


def _encode_files(tok, files: list[Path], batch_size: int, strict: bool):
    """(id arrays per batch, the files encoded in row order, [(file, reason)] of those that could not be read)."""
    from mmtok.errors import DataError
    from mmtok.modalities.image.decode import ImageDecodeError, read_image

    chunks, encoded, skipped = [], [], []
    for batch in _batches(files, batch_size):
        pictures = []
        for f in batch:
            try:
                pictures.append(read_image(f))
            except ImageDecodeError as e:
                if strict:
                    raise DataError(f"cannot read {f}: {_reason(e, f)}", hint="fix or remove it, or leave out --strict "
                                    "to skip unreadable images and list them") from None
                skipped.append((f, _reason(e, f)))
                continue
            encoded.append(f)
        if pictures:
            chunks.append(tok.encode(pictures).cpu().numpy())
    return chunks, encoded, skipped


def _reason(e: Exception, f: Path) -> str:
    """The reason without the prefixes read_image puts before it (the file is named beside it anyway)."""
    text = getattr(e, "message", str(e))
    return text.removeprefix("cannot decode image: ").removeprefix(f"cannot read {f}: ")


def _list_skips(skipped: list[tuple[Path, str]]) -> None:
    for f, reason in skipped[:SHOWN_SKIPS]:
        typer.echo(f"skipped {f}: {reason}", err=True)
    if len(skipped) > SHOWN_SKIPS:
        typer.echo(f"... and {len(skipped) - SHOWN_SKIPS} more", err=True)


def decode_command(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory (from `mmtok export`).")],
    ids_file: Annotated[Path, typer.Argument(help=".npy of integer ids: [N, h, w], [h, w] or flat [N, h*w].")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the decoded PNGs (000000.png, ...).")],
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Samples per forward pass.")] = 32,
    device: Annotated[str, typer.Option("--device", help=DEVICE_HELP)] = "cpu",
):
    """Decode token ids (.npy) into PNG images.

    Example: [bold]mmtok decode bundles/quickstart ids.npy --out recon/[/bold]
    """
    import numpy as np

    import mmtok
    from mmtok.errors import DataError
    from mmtok.hardware import torch_device

    device = torch_device(device)  # before reading anything: a GPU that is not there is one line
    from mmtok.modalities.image import require_image_bundle

    require_image_bundle(bundle, "decode")
    try:
        ids = np.load(ids_file, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"no ids file at {ids_file}") from None
    except (ValueError, OSError) as e:
        raise DataError(f"{ids_file} is not a readable .npy array ({e})") from None
    tok = mmtok.load(bundle, device=device)
    ids = tok.check_ids(ids)  # the whole array checked before anything is written
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    for chunk in _batches(list(range(ids.shape[0])), batch_size):
        for img in tok.to_pil(tok.decode(ids[chunk[0] : chunk[-1] + 1])):
            img.save(out / f"{n:06d}.png")
            n += 1
    typer.echo(f"{n} image(s) -> {out}")
