"""What a run leaves for ``scripts/summarize.py``: ``metrics.json`` (the task's numbers) and ``status.json``.

Both are small JSON files written atomically (:mod:`litvision.support.atomic`), so a sweep killed mid-write
never leaves a half file that breaks the summary.
"""

from __future__ import annotations

import json
import math
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from litvision.support import atomic
from litvision.support.errors import error_chain, first_line

METRICS_FILE = "metrics.json"
STATUS_FILE = "status.json"
OK, FAILED, PRUNED, INCOMPLETE = "ok", "failed", "pruned", "incomplete"


def read_json(path: Path) -> dict[str, Any]:
    """The file's object, or {} when it is missing or unreadable (a run killed before writing it)."""
    try:
        loaded = json.loads(Path(path).read_text())
    except (OSError, ValueError, RecursionError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


# A run folder can come from anyone: its files are read as data, at most this big, and checked.
RUN_FILE_LIMIT = 64 * 2**20


class UnreadableFile(ValueError):
    """A run folder's file that cannot be read or is not what litvision writes there: ``<path>: <why>``."""


def read_run_file(path: Path) -> str | None:
    """The text of ``path``, None when it does not exist; :class:`UnreadableFile` when it cannot be read."""
    try:
        # Non-blocking: a FIFO planted under a result file's name must not hang the reader.
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        return None
    except OSError as err:
        raise UnreadableFile(f"{path}: {err.strerror or first_line(err)}") from None
    with os.fdopen(descriptor, "rb") as stream:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise UnreadableFile(f"{path}: not a regular file")
        try:
            data = stream.read(RUN_FILE_LIMIT + 1)
        except OSError as err:
            raise UnreadableFile(f"{path}: {err.strerror or first_line(err)}") from None
    if len(data) > RUN_FILE_LIMIT:
        raise UnreadableFile(f"{path}: larger than {RUN_FILE_LIMIT // 2**20} MiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UnreadableFile(f"{path}: not UTF-8 text") from None


def load_json_object(path: Path) -> dict[str, Any] | None:
    """``path``'s JSON object, None when the file does not exist; :class:`UnreadableFile` for anything else."""
    text = read_run_file(path)
    if text is None:
        return None
    try:
        loaded = json.loads(text)
    except (ValueError, RecursionError):
        raise UnreadableFile(f"{path}: not valid JSON") from None
    if not isinstance(loaded, dict):
        raise UnreadableFile(f"{path}: not a JSON object")
    return loaded


def is_number(value: Any) -> bool:
    """An int or float read from a file (a JSON true/false is not a number here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def write_metrics(run_dir: str | Path, metrics: Mapping[str, float], epochs: int, **extra: Any) -> None:
    """``<run dir>/metrics.json``: every scalar the task logged, the number of epochs trained, and ``extra``
    (train.py adds the run's seed, so a run whose seed was drawn can be repeated)."""
    finite = {name: float(value) for name, value in metrics.items() if math.isfinite(float(value))}
    atomic.write_json(Path(run_dir) / METRICS_FILE, {"metrics": finite, "epochs": int(epochs), **extra})


def scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Lightning's ``callback_metrics`` (one-element tensors) as plain floats."""
    return {name: float(value) for name, value in metrics.items()}


def write_status(run_dir: str | Path, status: str, **details: Any) -> None:
    atomic.write_json(Path(run_dir) / STATUS_FILE, {"status": status, **details})


def is_pruned(error: BaseException | None) -> bool:
    """True for optuna's TrialPruned, also when a DDP worker raised it and torch re-raised it as text."""
    # torch.multiprocessing's ProcessRaisedException carries the worker's traceback only as a string.
    return any(
        type(link).__name__ == "TrialPruned"
        or (type(link).__name__ == "ProcessRaisedException" and "TrialPruned" in str(link))
        for link in error_chain(error)
    )


def one_line(error: BaseException) -> str:
    """The error as a user reads it: type and the first line of the message."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    if type(error).__name__ == "ProcessRaisedException" and lines:
        return lines[-1].strip()  # the worker's own "Type: message", after its traceback
    return first_line(error, limit=None, typed=True)


# The override by which the Optuna sweeper hands a trial's identity to its job (see sweeps/pruning.py);
# summaries leave it out, as it is bookkeeping rather than a setting.
PRUNING_OVERRIDE = "+callbacks.optuna_pruning"
