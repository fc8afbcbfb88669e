"""Exceptions raised by etaflow.

::

    EtaflowError
     +-- FormatError (ValueError)      a time-tag file or buffer cannot be read as claimed
     +-- RecipeError (ValueError)      a recipe cannot be parsed or compiled (VI, line, column)
     +-- RunError (RuntimeError)       an analysis cannot continue (full queue, bad source ...)

Warnings about recoverable oddities in files are :class:`FormatWarning`.
"""

from __future__ import annotations

__all__ = ["EtaflowError", "FormatError", "FormatWarning", "RecipeError", "RunError"]


class EtaflowError(Exception):
    """Base class of every error etaflow raises on purpose."""


class FormatError(EtaflowError, ValueError):
    """A time-tag file is corrupt, truncated, of an unknown type or inconsistent with its header.

    Attributes
    ----------
    filename : str or None
        The file (or ``"<buffer>"``) that failed.
    offset : int or None
        Absolute byte offset of the offending bytes in that file.
    problem : str
        What is wrong and, where possible, what to do about it.
    """

    def __init__(self, problem: str, filename=None, offset=None):
        self.problem = problem
        self.filename = None if filename is None else str(filename)
        self.offset = offset
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.filename if self.filename is not None else "<unknown source>"
        if self.offset is not None:
            where += f" at byte {self.offset}"
        return f"{where}: {self.problem}"


class FormatWarning(UserWarning):
    """A recoverable oddity in a time-tag file (nothing was mis-decoded)."""


class RecipeError(EtaflowError, ValueError):
    """A recipe cannot be parsed or compiled; names the VI, line and column."""

    def __init__(self, message: str, vi=None, line=None, column=None, source_line=None):
        self.message = message
        self.vi = vi
        self.line = line
        self.column = column
        self.source_line = source_line
        super().__init__(str(self))

    def __str__(self) -> str:
        loc = []
        if self.vi is not None:
            loc.append(f'VI "{self.vi}"')
        if self.line is not None:
            loc.append(f"line {self.line}")
        if self.column is not None:
            loc.append(f"column {self.column}")
        text = (", ".join(loc) + ": " if loc else "") + self.message
        if self.source_line is not None:
            text += "\n    " + self.source_line
            if self.column is not None:
                text += "\n    " + " " * max(self.column - 1, 0) + "^"
        return text


class RunError(EtaflowError, RuntimeError):
    """An analysis cannot continue."""
