"""Captioned images read in a fixed order, for `mmtok tokenize` (mmtok.lm.tokens).

A folder of images (sorted, recursively; the caption is a manifest row or the text of `name.txt` beside `name.png`,
mmtok.data.captions) or webdataset
shards (in the order given; the caption is the sample's `txt`, or `caption` / `text` of its `json`). Every sample
gets its position in the input, so a resumed run knows which samples a finished token shard holds.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from mmtok.data.stream import shard_caption
from mmtok.errors import DataError


@dataclass
class Item:
    """One input sample: its position in the input, key, caption, and where its image is (`path` for a folder,
    `data` for shards); `error` says why it cannot be used."""

    index: int
    key: str
    caption: str
    path: Path | None = None
    data: bytes | None = None
    error: str = ""

    def read(self) -> bytes:
        """The encoded image; ImageDecodeError when the file cannot be read."""
        from mmtok.modalities.image.decode import ImageDecodeError

        if self.error:
            raise ImageDecodeError(self.error)
        if self.data is None:
            try:
                return Path(self.path).read_bytes()
            except OSError as e:
                raise ImageDecodeError(f"cannot read: {e.strerror or e}") from None
        return self.data


def iter_items(source: str) -> Iterator[Item]:
    """The samples of a folder or shard source, in a fixed order (a folder's files are read only by `read`)."""
    from mmtok.data.sources import source_kind

    kind = source_kind(source)
    if kind == "folder":
        yield from _folder_items(Path(source))
    elif kind == "shards":
        yield from shard_items(source)
    else:
        raise DataError(f"`mmtok tokenize` needs captioned data, not {source!r}",
                        hint="give a folder of images with name.txt captions beside them, or webdataset shards")


def _folder_items(root: Path) -> Iterator[Item]:
    from mmtok.modalities.image.decode import find_images

    files = find_images(root)
    if not files:
        raise DataError(f"no image files in folder {root}", hint="put .jpg/.png/.webp files in it (searched recursively)")
    from mmtok.data.captions import FolderCaptions

    captions = FolderCaptions(root, files)
    for i, path in enumerate(files):
        yield Item(i, str(path.relative_to(root)), captions.get(path), path=path)


def shard_items(source: str, entries: tuple[str, ...] | None = None, what: str = "image") -> Iterator[Item]:
    """Webdataset samples in order; `data` is the sample's first entry among `entries` (default: the image
    keys), `what` names it in the error of a sample without one (mmtok.lm.inputs reads audio shards this way)."""
    import webdataset as wds

    from mmtok.data.sources import expand_shards
    from mmtok.modalities.image.decode import IMAGE_KEYS

    entries = entries or IMAGE_KEYS

    i = 0
    for url in expand_shards(source):
        broken: list[str] = []

        def handler(exn: Exception) -> bool:
            broken.append(f"{type(exn).__name__}: {str(exn).splitlines()[0][:160] if str(exn) else ''}")
            return False  # stop reading this shard; the next one is read

        for sample in wds.DataPipeline(wds.SimpleShardList([url]), wds.tarfile_to_samples(handler=handler)):
            image = next((k for k in entries if k in sample), None)
            error = "" if image else f"no {what} entry (entries: " + ", ".join(
                sorted(k for k in sample if not k.startswith("__"))) + ")"
            yield Item(i, f"{sample.get('__key__')} in {url}", shard_caption(sample),
                       data=sample[image] if image else None, error=error)
            i += 1
        if broken:
            yield Item(i, url, "", error=f"unreadable shard data ({broken[0]})")
            i += 1
