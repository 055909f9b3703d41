"""The only exceptions a user should ever see. The CLI prints them as one line (plus a hint) and exits 2."""
from __future__ import annotations


class MmtokError(Exception):
    """A user-facing error: one clear line saying what is wrong, and a hint saying what to do."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} (hint: {self.hint})"


class RecipeError(MmtokError):
    """A recipe or an override is invalid; `problems` lists every problem found, one line each."""

    def __init__(self, message: str, problems: list[str] | None = None, hint: str | None = None):
        super().__init__(message, hint)
        self.problems = problems or []

    def __str__(self) -> str:
        lines = [self.message] + [f"  - {p}" for p in self.problems]
        if self.hint:
            lines.append(f"hint: {self.hint}")
        return "\n".join(lines)


class DataError(MmtokError):
    """Training or evaluation data cannot be found or yields nothing usable."""


class AssetError(MmtokError):
    """A pretrained asset (weights file) is missing or unreadable."""


class CheckpointError(MmtokError):
    """A checkpoint, run directory or bundle is missing, corrupt or incompatible."""
