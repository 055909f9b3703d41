"""`BadSamples`: the distinct bad samples seen in a run, collected from the batches' "bad" lists.

Every batch from `make_loader` carries "bad": list[str], "NAME: REASON" entries of the samples a worker
dropped for the first time (mmtok.data.stream). Workers (and ranks) do not share what they have named, so
an entry can arrive more than once; `BadSamples.add(batch)` keeps each once and returns only the new
ones, so a trainer can log every bad file exactly once:

    bad = BadSamples()
    for batch in loader:
        for entry in bad.add(batch):
            log.warning("skipped %s", entry)
    bad.count, bad.summary()          # distinct bad samples, one line naming the first few

`state_dict()` / `load_state_dict()` keep the set across a resume (workers start afresh and report again).
"""
from __future__ import annotations

from typing import Iterable


def one_line_reason(e: Exception) -> str:
    """A short one-line reason for a sample that failed to read or decode: the exception's type and first line."""
    text = str(e).splitlines()[0] if str(e) else ""
    return (f"{type(e).__name__}: {text}" if text else type(e).__name__)[:200]


class BadSamples:
    """Distinct "NAME: REASON" entries, in the order first seen."""

    def __init__(self, entries: Iterable[str] = ()):
        self._entries: dict[str, None] = {}
        self.extend(entries)

    def add(self, batch) -> list[str]:
        """Record the entries of a batch (a dict with "bad", or an iterable of entries); returns the new ones."""
        entries = batch.get("bad", ()) if isinstance(batch, dict) else batch
        return self.extend(entries)

    def extend(self, entries: Iterable[str]) -> list[str]:
        new = [str(e) for e in entries if str(e) not in self._entries]
        for e in new:
            self._entries[e] = None
        return list(dict.fromkeys(new))

    @property
    def count(self) -> int:
        return len(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self):
        return iter(list(self._entries))

    @property
    def entries(self) -> list[str]:
        return list(self._entries)

    def summary(self, shown: int = 3) -> str:
        """One line: how many, and the first `shown` entries ("" when there are none)."""
        if not self._entries:
            return ""
        n = len(self._entries)
        head = "; ".join(self.entries[:shown])
        more = f"; ... and {n - shown} more" if n > shown else ""
        return f"{n} bad sample{'s' if n != 1 else ''} skipped: {head}{more}"

    def state_dict(self) -> dict:
        return {"entries": self.entries}

    def load_state_dict(self, state: dict) -> None:
        self._entries = {}
        self.extend(state.get("entries", ()))
