"""The input samples of `mmtok tokenize` (mmtok.lm.tokens) for a bundle of any modality, in a fixed order.

    for item in read_inputs(tok, "data/"):        # tok = mmtok.load(bundle)
        value = item.load()                         # one element of tok.encode([...]); InputError when unusable

Every item has `index` (its position in the input: 0, 1, 2, ..., the same in every run, so a resumed run knows
which samples a finished shard holds), `key`, `caption`, and `dropped` / `bad` (input the source dropped just
before it, with "NAME: REASON"; the readers here make every unusable input an item whose `load()` raises
InputError instead, so these stay 0 / []).

Each modality reads its own data (`Modality.lm_inputs`, e.g. mmtok.modalities.image.lm_inputs): called as
reader(tok, source, kind) with `kind` from mmtok.data.sources.source_kind ("folder" or "shards"; "demo" is refused
here), and with `whole=SECONDS` when the reader takes it (`mmtok tokenize --whole`: one sample per clip, up to that
length, keyed by the clip's name), it yields `Input`s and makes an unusable sample an item whose `load()` raises
InputError (`failing`).

The "#k" of a piece's key is left out when the LM's held-out split hashes it (`clip_name`), so the pieces of one
clip are all held out or all trained on.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from mmtok.errors import DataError

NOT_A_FOLDER_HINT = "give a folder (or, for images and audio, webdataset shards such as 'data/train-{0..9}.tar')"


class InputError(Exception):
    """One input sample cannot be used: `reason` says why (it is skipped, counted and named)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class Input:
    index: int
    key: str
    caption: str
    load: Callable[[], Any]
    dropped: int = 0
    bad: list[str] = field(default_factory=list)


def clip_name(key: str) -> str:
    """The clip a piece's key "NAME#k" comes from (a key without "#k" is its own clip)."""
    return re.sub(r"#\d+$", "", key)


def read_inputs(tok, source: str, whole: float | None = None) -> Iterator[Input]:
    """The samples of `source` for the loaded bundle `tok`, in a fixed order (module docstring). `whole`: keep each
    clip whole up to that many seconds (one variable-length sample per clip) instead of cutting it into pieces of
    the bundle's input size; only readers that take a `whole` argument can (audio and motion)."""
    import inspect

    from mmtok import modalities
    from mmtok.data.sources import source_kind

    modality = modalities.get(tok.spec.modality)
    if modality.lm_inputs is None:
        raise DataError(f"`mmtok tokenize` cannot read data for a {modality.name} bundle",
                        hint="its modality declares no LM-stage reader (Modality.lm_inputs)")
    kind = source_kind(source)
    if kind == "demo":
        raise DataError(f"`mmtok tokenize` with a {modality.name} bundle cannot read {source!r}",
                        hint=NOT_A_FOLDER_HINT)
    reader = modality.resolve("lm_inputs")
    if whole is None:
        return reader(tok, source, kind)
    if "whole" not in inspect.signature(reader).parameters:
        raise DataError(f"a {modality.name} bundle's samples are whole already: --whole keeps audio and motion clips "
                        "whole instead of cutting them into pieces", hint="drop --whole")
    return reader(tok, source, kind, whole=whole)


def failing(reason: str) -> Callable[[], Any]:
    """A `load` for an unusable sample: it raises InputError(reason), so the sample is skipped, counted and named."""
    def load():
        raise InputError(reason)

    return load
