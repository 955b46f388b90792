"""Errors that reach the user as one sentence and an exit code, never as a traceback."""

from __future__ import annotations

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2


class AbmInputError(Exception):
    """A user's input is wrong: a spec, a file, a column, a row, a request field.

    The message must name the file and the field (or row) so the user can fix it without
    reading code. The CLI prints it on one line and exits with :data:`EXIT_BAD_INPUT`.
    """

    def __init__(self, message: str, *, source: str | None = None, field: str | None = None):
        self.source = source
        self.field = field
        parts = [p for p in (source, field) if p]
        prefix = ": ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)


class ModelNotPromotableError(AbmInputError):
    """Promotion refused (the challenger does not beat the champion, or it is no better than chance)."""
