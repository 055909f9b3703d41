"""The image modality's reader for the LM stage (`mmtok tokenize`, mmtok.lm.inputs): a folder with NAME.txt
captions or webdataset shards (mmtok.lm.captioned); `load()` decodes the image (mmtok.modalities.image.decode
.decode_image, both sides at least the bundle's resolution).
"""
from __future__ import annotations

from functools import partial
from typing import Iterator

from mmtok.lm.inputs import Input, InputError


def read_inputs(tok, source: str, kind: str) -> Iterator[Input]:
    from mmtok.lm.captioned import iter_items

    for item in iter_items(source):
        yield Input(item.index, item.key, item.caption, partial(_image, item, tok.resolution))


def _image(item, size: int):
    from mmtok.modalities.image.decode import ImageDecodeError, decode_image

    try:
        return decode_image(item.read(), min_size=size)
    except ImageDecodeError as e:
        raise InputError(e.message) from None
