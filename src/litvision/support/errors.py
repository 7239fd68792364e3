"""Errors that mean "the user's input is wrong": the scripts print them in one line, no traceback."""

from collections.abc import Iterator

from hydra.errors import CompactHydraException


class LitvisionError(Exception):
    """Bad input a user can fix (missing data, a bad checkpoint, an invalid option)."""


class DataError(LitvisionError):
    """Dataset files are missing, truncated or corrupt."""


class CheckpointError(LitvisionError):
    """A checkpoint file is missing, unreadable, or not from litvision."""


class SweepFailed(CompactHydraException):
    """Some runs of a sweep failed: Hydra prints the message alone, without a traceback, and exits with 1."""


def first_line(error: BaseException, limit: int | None = 200, typed: bool = False) -> str:
    """The first non-blank line of ``error``'s message, for a one-line report; its type name when it has none.

    ``limit`` cuts a long line (``None``: kept whole); ``typed`` puts the type in front (``"OSError: ..."``).
    """
    line = next((text.strip() for text in str(error).splitlines() if text.strip()), "")[:limit]
    name = type(error).__name__
    if not line:
        return name
    return f"{name}: {line}" if typed else line


def printable(text: str) -> str:
    """``text`` from a file (a file or folder name, a saved value) with its control characters (newlines,
    terminal escapes) written as escapes: shown to a person, never obeyed by their terminal."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def error_chain(error: BaseException | None) -> Iterator[BaseException]:
    """``error`` and the errors it came from (``__cause__``, else ``__context__``), each once."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__
