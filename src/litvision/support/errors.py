"""Errors that mean "the user's input is wrong": the scripts print them in one line, no traceback."""


class LitvisionError(Exception):
    """Bad input a user can fix (missing data, a bad checkpoint, an invalid option)."""


class DataError(LitvisionError):
    """Dataset files are missing, truncated or corrupt."""


class CheckpointError(LitvisionError):
    """A checkpoint file is missing, unreadable, or not from litvision."""
