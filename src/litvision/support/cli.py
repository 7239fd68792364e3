"""What the scripts share: run a task and turn user errors into one line on stderr."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from litvision.support.errors import LitvisionError


def run_task(task: Callable[[DictConfig], dict], cfg: DictConfig) -> float | None:
    """Run ``task``; return the metric an optimizing sweeper reads (``cfg.optimized_metric``), if any.

    A :class:`LitvisionError` in a single run exits with status 2 and a one-line message; in a
    multirun it is raised so Hydra records that job as failed. A run stopped by SIGINT or SIGTERM
    (see :mod:`litvision.callbacks.interruption`, which saved the checkpoint and printed how to
    resume) exits with 130 or 143, without a traceback, also in a multirun: the sweep stops there.
    """
    try:
        metrics = task(cfg)
    except LitvisionError as err:
        if in_multirun():
            raise  # Hydra records the job as failed
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except (KeyboardInterrupt, SystemExit, Exception) as err:
        # Imported here, where the task has loaded Lightning: the scripts' config errors answer without it.
        from litvision.callbacks.interruption import find_stop

        stopped = find_stop(err)
        if stopped is not None:
            sys.exit(stopped.exit_code)
        if isinstance(err, KeyboardInterrupt):  # outside training: nothing was saved, nothing to resume
            print("interrupted (SIGINT) before training started or after it ended; nothing to resume", file=sys.stderr)
            sys.exit(128 + signal.SIGINT)
        raise
    metric_name = cfg.get("optimized_metric")
    return metrics.get(metric_name) if metric_name else None


def check_group_overrides(conf_dir: Path, argv: list[str] | None = None) -> None:
    """``logger=null`` and the like: exit with one line (status 2) naming the way to turn a group off.

    Hydra rejects a null config-group override with a ValueError and its traceback, before any of
    this package's code runs; the scripts call this first.
    """
    for arg in sys.argv[1:] if argv is None else argv:
        key, sep, value = arg.partition("=")
        group = key.lstrip("+~").split("@")[0]
        if not sep or arg.startswith("-") or value.strip().lower() not in ("null", "none") or value == "none":
            continue
        folder = conf_dir / group
        if not folder.is_dir():
            continue
        options = sorted(path.stem for path in folder.glob("*.yaml"))
        off = f"{group}=none" if "none" in options else f"~{group}"
        print(
            f"error: {arg}: config group {group} takes one of {', '.join(options)}; to turn it off: {off}",
            file=sys.stderr,
        )
        sys.exit(2)


def in_multirun() -> bool:
    """Whether this process runs a job of a Hydra multirun (``-m``) rather than a single run."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


class RunDirCheck(Callback):
    """Hydra callback: a run or sweep folder that cannot be created stops with one line and exit status 2.

    Hydra creates the folder itself (the launcher, for a sweep) and reports a failure with a traceback.
    This tries first: it creates the folder and a file in it, then removes what it created, so a run that
    stops for another reason (a missing extra, a bad option) leaves no empty folder behind. Configured in
    ``conf/hydra/default.yaml`` under ``hydra.callbacks``.
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check_creatable(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _check_creatable(config.hydra.sweep.dir, "hydra.sweep.dir")


def _check_creatable(folder: Any, key: str) -> None:
    if not folder:
        return
    path = Path(str(folder))
    created, parent = [], path  # the folders this check makes, deepest first
    while not parent.exists() and parent != parent.parent:
        created.append(parent)
        parent = parent.parent
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        print(
            f"error: cannot create the output folder {path} ({reason}); set {key}=<a writable folder>", file=sys.stderr
        )
        sys.exit(2)
    finally:
        for folder_made in created:
            with contextlib.suppress(OSError):
                folder_made.rmdir()
