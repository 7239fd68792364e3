"""Several search processes (workers) on one Optuna study: who runs which trial, and the study's trial budget.

Each worker writes its identity into every trial it asks for (the user attribute ``worker``: host, pid
namespace, pid and the process's start time). A RUNNING trial belongs to its worker: another worker
marks it failed only when that worker ran on this host and its process is gone (a search killed
without clean-up), or when the user names it in ``hydra.sweeper.reclaim`` (a worker on another machine
that died); a trial whose worker is alive is never taken. The budget ``n_trials`` belongs to the study:
the ``n_trials`` lowest-numbered trials are the study's, whichever worker asked for them; a trial asked
beyond them (two workers on a database server asking at the same moment; on a SQLite file they ask in
turn) is told failed and marked ``surplus``, never run, and counts toward nothing.
"""

from __future__ import annotations

import contextlib
import functools
import os
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from litvision.sweeps.search_space import SearchSpaceError

WORKER_ATTR = "worker"
SURPLUS_ATTR = "surplus"
SQLITE_TIMEOUT_S = 60  # workers sharing one SQLite file wait for each other's writes this long


@functools.cache
def this_worker() -> dict[str, Any]:
    """This process as it is recorded in the trials it asks for (JSON: Optuna stores user attributes so)."""
    return {
        "host": socket.gethostname(),
        "pid_namespace": _pid_namespace(),
        "pid": os.getpid(),
        "started": _process_start(os.getpid()),
    }


def worker_name(worker: Any) -> str:
    if not isinstance(worker, dict):
        return "an unknown worker"
    return f"{worker.get('host')}:{worker.get('pid')}"


def worker_gone(worker: Any) -> bool | None:
    """True when ``worker``'s process is gone, False while it runs, None when this host cannot tell
    (no worker recorded, or a worker on another host or in another container)."""
    me = this_worker()
    if not isinstance(worker, dict) or (worker.get("host"), worker.get("pid_namespace")) != (
        me["host"],
        me["pid_namespace"],
    ):
        return None
    pid = worker.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return None
    if not _running(pid):
        return True
    started = worker.get("started")
    return started is not None and _process_start(pid) not in (None, started)  # the pid now names another process


def parse_reclaim(value: Any) -> frozenset[int] | str:
    """``hydra.sweeper.reclaim``: null or [] (none), a list of trial numbers, or "all"."""
    if value is None:
        return frozenset()
    if value == "all":
        return "all"
    if isinstance(value, Sequence) and not isinstance(value, str):
        numbers = list(value)
        if all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers):
            return frozenset(numbers)
    raise SearchSpaceError(f"hydra.sweeper.reclaim takes a list of trial numbers or all (got {value!r})")


def stale_trials(running: Sequence[Any], reclaim: frozenset[int] | str) -> tuple[list[Any], list[tuple[Any, str]]]:
    """(the RUNNING trials to mark failed, [(trial, why it is left running)...]) from ``running``."""
    taken, left = [], []
    for trial in running:
        worker = trial.user_attrs.get(WORKER_ATTR)
        gone = worker_gone(worker)
        if gone is False:
            left.append((trial, f"runs in worker {worker_name(worker)}"))
        elif gone or reclaim == "all" or trial.number in reclaim:
            taken.append(trial)
        else:
            where = "no worker recorded" if worker is None else f"worker {worker_name(worker)}, not on this host"
            left.append((trial, f"{where}; if it is gone: hydra.sweeper.reclaim=[{trial.number}]"))
    return taken, left


def budget_trials(study) -> list[Any]:
    """The trials ``n_trials`` counts: finished or running ones, the surplus aside (enqueued ones wait)."""
    from optuna.trial import TrialState

    states = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)
    return [t for t in study.get_trials(deepcopy=False, states=states) if not t.user_attrs.get(SURPLUS_ATTR)]


def within_budget(study, number: int, n_trials: int) -> bool:
    """Whether trial ``number`` is one of the study's first ``n_trials`` (trial numbers are given out in order)."""
    return sum(trial.number < number for trial in budget_trials(study)) < n_trials


def storage_url(storage: str | None) -> str | None:
    """A database URL as is; a file path becomes a SQLite URL (its folder is created)."""
    if storage is None or "://" in storage:
        return storage
    path = Path(storage).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def open_storage(url: str | None):
    """The study's storage: a SQLite file waits for other workers' writes instead of failing at once."""
    if url is None or not url.startswith("sqlite:"):
        return url
    import optuna

    return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": SQLITE_TIMEOUT_S}})


@contextlib.contextmanager
def storage_lock(url: str | None) -> Iterator[None]:
    """Workers on one SQLite file take turns: Optuna creating a new file's tables twice at once fails, and
    counting the trials then asking for one must not interleave with another worker's (no surplus trial).

    The lock is the file's folder (``flock``): nothing is left behind, and it is released when the process dies.
    """
    prefix = "sqlite:///"
    if url is None or not url.startswith(prefix) or url == f"{prefix}:memory:":
        yield
        return
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    folder = os.open(Path(url[len(prefix) :]).parent, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        yield
    finally:
        os.close(folder)  # releases the lock


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    stat = _stat_fields(pid)
    return stat is None or stat[0] != "Z"  # a zombie has exited; only its parent has not reaped it


def _process_start(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), which tells a reused pid apart."""
    stat = _stat_fields(pid)
    return int(stat[19]) if stat is not None and len(stat) > 19 and stat[19].isdigit() else None


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat from its third field (state) on; None without /proc or that process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stream:
            text = stream.read()
    except OSError:
        return None
    return text.rpartition(")")[2].split()  # the command name (field 2) may hold spaces and parentheses


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None
