"""`mmtok encode` and `mmtok decode`: images to token ids (.npy) and back, with a bundle."""
from __future__ import annotations

from pathlib import Path
from typing import List

import typer
from typing_extensions import Annotated


def _batches(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def encode_command(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory (from `mmtok export`).")],
    images: Annotated[List[Path], typer.Argument(help="Image files, or folders of images (searched recursively).")],
    out: Annotated[Path, typer.Option("--out", help="Where to write the ids: int64 .npy of shape [N, h, w].")],
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images per forward pass.")] = 32,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:1 ...")] = "cpu",
):
    """Encode images into token ids (resized: shorter side to the bundle's size, centre crop).

    Also writes OUT.files.txt: the image paths in row order.

    Example: [bold]mmtok encode bundles/quickstart cat.jpg dog.png --out ids.npy[/bold]
    """
    import numpy as np

    import mmtok
    from mmtok.data.image import find_images
    from mmtok.errors import DataError

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
    ids = np.concatenate([tok.encode(chunk).cpu().numpy() for chunk in _batches(files, batch_size)])
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, ids.astype(np.int64))
    order = out.with_name(out.stem + ".files.txt")
    order.write_text("".join(f"{f}\n" for f in files))
    typer.echo(f"{len(files)} image(s) -> {out} (int64 {list(ids.shape)}; row i is line i of {order})")


def decode_command(
    bundle: Annotated[Path, typer.Argument(help="Bundle directory (from `mmtok export`).")],
    ids_file: Annotated[Path, typer.Argument(help=".npy of integer ids: [N, h, w], [h, w] or flat [N, h*w].")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the decoded PNGs (000000.png, ...).")],
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Samples per forward pass.")] = 32,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:1 ...")] = "cpu",
):
    """Decode token ids (.npy) into PNG images.

    Example: [bold]mmtok decode bundles/quickstart ids.npy --out recon/[/bold]
    """
    import numpy as np

    import mmtok
    from mmtok.errors import DataError

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
