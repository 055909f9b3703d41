"""Named registries (timm-style): `@QUANTIZERS.register("vq")` then `QUANTIZERS.get("vq")`.

A registry maps a name to an object (a class, a builder, a preset dict). Unknown names raise an
MmtokError that lists the known names and the closest match.
"""
from __future__ import annotations

import difflib
from typing import Any, Iterator

from mmtok.errors import MmtokError


class Registry:
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, Any] = {}

    def register(self, name: str, obj: Any = None) -> Any:
        """Register `obj` under `name`; without `obj`, return a decorator."""
        if obj is None:
            return lambda o: self.register(name, o)
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is registered twice")
        self._items[name] = obj
        return obj

    def get(self, name: str) -> Any:
        if name not in self._items:
            raise MmtokError(f"unknown {self.kind} {name!r}", hint=did_you_mean(name, self._items))
        return self._items[name]

    def names(self) -> list[str]:
        return sorted(self._items)

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


def did_you_mean(name: str, choices: Any, *, list_known: bool = True) -> str:
    """A hint naming the closest choice (if any) and the known choices (the first 12); with `list_known=False`
    the known choices only when none is close. The one did-you-mean of mmtok (recipes, registries, assets)."""
    choices = sorted(str(c) for c in choices)
    close = difflib.get_close_matches(str(name), choices, n=1, cutoff=0.5)
    if close and not list_known:
        return f"did you mean {close[0]!r}?"
    known = ", ".join(choices) if len(choices) <= 12 else ", ".join(choices[:12]) + ", ..."
    return (f"did you mean {close[0]!r}? " if close else "") + f"known: {known}"


QUANTIZERS = Registry("quantizer")
