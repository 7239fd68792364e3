"""What a run leaves for ``scripts/summarize.py``: ``metrics.json`` (the task's numbers) and ``status.json``.

Both are small JSON files written atomically (temporary file + rename), so a sweep killed mid-write
never leaves a half file that breaks the summary.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from litvision.support.errors import first_line

METRICS_FILE = "metrics.json"
STATUS_FILE = "status.json"
OK, FAILED, PRUNED, INCOMPLETE = "ok", "failed", "pruned", "incomplete"

# Environment variables that name a process's rank under Lightning's DDP children, torchrun and SLURM.
_RANK_VARIABLES = ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK")


def is_rank_zero() -> bool:
    """True in the process that owns the run dir: every rank variable present is 0."""
    return all(os.environ.get(name, "0") == "0" for name in _RANK_VARIABLES)


def write_json(path: Path, payload: Mapping[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n")
    os.replace(partial, path)


def read_json(path: Path) -> dict[str, Any]:
    """The file's object, or {} when it is missing or unreadable (a run killed before writing it)."""
    try:
        loaded = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def write_metrics(run_dir: str | Path, metrics: Mapping[str, float], epochs: int, **extra: Any) -> None:
    """``<run dir>/metrics.json``: every scalar the task logged, the number of epochs trained, and ``extra``
    (train.py adds the run's seed, so a run whose seed was drawn can be repeated)."""
    finite = {name: float(value) for name, value in metrics.items() if math.isfinite(float(value))}
    write_json(Path(run_dir) / METRICS_FILE, {"metrics": finite, "epochs": int(epochs), **extra})


def scalars(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Lightning's ``callback_metrics`` (one-element tensors) as plain floats."""
    return {name: float(value) for name, value in metrics.items()}


def write_status(run_dir: str | Path, status: str, **details: Any) -> None:
    write_json(Path(run_dir) / STATUS_FILE, {"status": status, **details})


def is_pruned(error: BaseException | None) -> bool:
    """True for optuna's TrialPruned, also when a DDP worker raised it and torch re-raised it as text."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if type(error).__name__ == "TrialPruned":
            return True
        # torch.multiprocessing's ProcessRaisedException carries the worker's traceback only as a string.
        if type(error).__name__ == "ProcessRaisedException" and "TrialPruned" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def one_line(error: BaseException) -> str:
    """The error as a user reads it: type and the first line of the message."""
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    if type(error).__name__ == "ProcessRaisedException" and lines:
        return lines[-1].strip()  # the worker's own "Type: message", after its traceback
    return first_line(error, limit=None, typed=True)


# The override by which the Optuna sweeper hands a trial's identity to its job (see sweeps/pruning.py);
# summaries leave it out, as it is bookkeeping rather than a setting.
PRUNING_OVERRIDE = "+callbacks.optuna_pruning"
