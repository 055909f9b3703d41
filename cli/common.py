"""Shared CLI plumbing: user errors become one line on stderr (plus hint) and exit code 2; the command and group
classes every mmtok command uses (`-h` / `--help`, and no type placeholder after a boolean flag)."""
from __future__ import annotations

import functools
import sys

import typer
from typer.core import TyperCommand, TyperGroup

from mmtok.errors import MmtokError

HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}


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


def _bare_flags(params: list) -> list:
    """Typer's rich help shows a `<bool>` type after every boolean flag (--help included), although a flag takes
    no value: an empty metavar shows nothing there instead."""
    for param in params:
        if getattr(param, "is_bool_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


class Command(TyperCommand):
    """An mmtok command: boolean flags are shown without a type placeholder."""

    def get_params(self, ctx):
        return _bare_flags(super().get_params(ctx))


class Group(TyperGroup):
    """An mmtok command group (`mmtok`, `mmtok data`): boolean flags are shown without a type placeholder."""

    def get_params(self, ctx):
        return _bare_flags(super().get_params(ctx))


def use_mmtok_classes(app: typer.Typer) -> None:
    """Every command and sub-group registered on `app` (recursively) that kept Typer's own class uses Command /
    Group instead. (-h needs nothing per command: the root's HELP_OPTIONS are inherited by every sub-context.)"""
    for info in app.registered_commands:
        if info.cls in (None, TyperCommand):
            info.cls = Command
    for group in app.registered_groups:
        sub = group.typer_instance
        # a class nobody chose is Typer's DefaultPlaceholder, on add_typer's info and on the sub-app's own
        if not _chosen(group.cls) and (sub is None or not _chosen(sub.info.cls)):
            group.cls = Group
        if sub is not None:
            use_mmtok_classes(sub)


def _chosen(cls) -> bool:
    return isinstance(cls, type) and cls is not TyperGroup


WIDE = 200  # columns for tables written to a file or a pipe (rich would assume 80 and fold every cell)


def table_console():
    """A rich Console on stdout for tables: the terminal's width on a terminal (or $COLUMNS when set), WIDE columns
    otherwise (`> log`, SLURM, a pipe), so rows stay one line each instead of folding into narrow columns."""
    import os

    from rich.console import Console

    console = Console()
    return console if console.is_terminal or os.environ.get("COLUMNS") else Console(width=WIDE)
