"""Shared CLI plumbing: user errors become one line on stderr (plus hint) and exit code 2."""
from __future__ import annotations

import functools
import sys

import typer

from mmtok.errors import MmtokError


def guarded(fn):
    """Wrap a command: an MmtokError prints `error: ...` on stderr, no traceback, and exits 2."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except MmtokError as e:
            print(f"error: {e}", file=sys.stderr)
            raise typer.Exit(code=2) from None

    return wrapper
