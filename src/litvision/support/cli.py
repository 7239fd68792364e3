"""What the scripts share: run a task and turn user errors into one line on stderr."""

from __future__ import annotations

import contextlib
import difflib
import inspect
import os
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.errors import HydraException, MissingConfigException
from hydra.experimental.callback import Callback
from hydra.utils import get_object
from omegaconf import DictConfig
from omegaconf.errors import (
    ConfigAttributeError,
    ConfigKeyError,
    InterpolationResolutionError,
    MissingMandatoryValue,
    OmegaConfBaseException,
)

from litvision.support.errors import LitvisionError, SweepFailed, first_line
from litvision.support.runtime import in_multirun
from litvision.support.stops import take_stop


def run_task(task: Callable[[DictConfig], dict], cfg: DictConfig) -> float | None:
    """Run ``task``; return the metric an optimizing sweeper reads (``cfg.optimized_metric``), if any.

    A :class:`LitvisionError` or a config error (a required key left at ``???``) in a single run exits
    with status 2 and a one-line message; in a multirun it is raised so Hydra records that job as
    failed. A run stopped by SIGINT or SIGTERM
    (see :mod:`litvision.callbacks.interruption`, which saved the checkpoint and printed how to
    resume) exits with 130 or 143, without a traceback, also in a multirun: the sweep stops there.
    """
    try:
        metrics = task(cfg)
    except (LitvisionError, OmegaConfBaseException) as err:  # the latter: a required key left at ???, say
        if in_multirun():
            raise  # Hydra records the job as failed
        print(f"error: {err if isinstance(err, LitvisionError) else config_error_line(err)}", file=sys.stderr)
        sys.exit(2)
    except (KeyboardInterrupt, SystemExit, Exception) as err:
        # Imported here, where the task has loaded Lightning: the scripts' config errors answer without it.
        stopped = take_stop(err)
        if stopped is not None:
            sys.exit(stopped.exit_code)
        # Outside training (a folder still decoding, a conversion): nothing was saved, nothing to resume.
        # Lightning's SIGTERMException is what the decode cache raises for SIGTERM.
        for kind, signum in ((KeyboardInterrupt, signal.SIGINT), (SystemExit, signal.SIGTERM)):
            if isinstance(err, kind) and (kind is KeyboardInterrupt or type(err).__name__ == "SIGTERMException"):
                name = signal.Signals(signum).name
                print(
                    f"interrupted ({name}) before training started or after it ended; nothing to resume",
                    file=sys.stderr,
                )
                sys.exit(128 + signum)
        from lightning.fabric.utilities.exceptions import MisconfigurationException

        from litvision.support.ddp import collective_failure

        failure = collective_failure(err)  # a DDP run that would have waited forever: its timeout, in one line
        if failure is None and isinstance(err, MisconfigurationException):
            # Lightning's word for a Trainer setting that cannot work (limit_train_batches=0.05 of 2 batches, say).
            failure = first_line(err, limit=None)
        if failure is not None and not in_multirun():
            print(f"error: {failure}", file=sys.stderr)
            sys.exit(2)
        raise
    metric_name = cfg.get("optimized_metric")
    return metrics.get(metric_name) if metric_name else None


def run_script(main: Callable[[], Any], *conf_dirs: Path) -> None:
    """Call a script's ``@hydra.main`` function; a config error is one ``error:`` line and exit status 2.

    Hydra reports an unknown key, a missing option or a bad override in several lines with exit status 1
    before the task runs. Here it raises instead (``HYDRA_FULL_ERROR=1`` for the call, Hydra's public
    switch) and :func:`config_error_line` says what was wrong in one line. A sweep with failed runs
    keeps its exit status 1 and its report (one line per failed run), without Hydra's footer. A user
    who set ``HYDRA_FULL_ERROR=1`` gets Hydra's full traceback as before.
    """
    for conf_dir in conf_dirs:  # the config folders whose groups the script composes
        check_group_overrides(conf_dir)
    wants_traceback = os.environ.get("HYDRA_FULL_ERROR") == "1"
    previous = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        main()
    except (HydraException, OmegaConfBaseException) as err:
        if wants_traceback:
            raise
        if isinstance(err, SweepFailed):  # its runs said what failed, one line each
            print(f"error: {err}", file=sys.stderr)
            sys.exit(1)
        print(f"error: {config_error_line(err)}", file=sys.stderr)
        sys.exit(2)
    finally:
        if previous is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = previous


def config_error_line(err: BaseException) -> str:
    """One line for a Hydra or OmegaConf error: the key or option, what is known instead, how to add it."""
    cause = err.__cause__ if isinstance(err.__cause__, OmegaConfBaseException) else err
    if isinstance(err, MissingConfigException) and err.options is not None and err.missing_cfg_file:
        group, _, name = str(err.missing_cfg_file).rpartition("/")
        close = difflib.get_close_matches(name, err.options, n=3)
        hint = f" (closest: {', '.join(close)})" if close else ""
        return f"{group}={name}: no such option{hint}; {group} takes one of: {', '.join(err.options)}"
    if isinstance(cause, (ConfigAttributeError, ConfigKeyError)) and cause.full_key:
        return _unknown_key_line(str(cause.full_key), cause.parent_node, _added_form(str(err)))
    if isinstance(cause, MissingMandatoryValue) and cause.full_key:
        return f"{cause.full_key} is required: pass {cause.full_key}=<value>"
    if isinstance(cause, InterpolationResolutionError) and cause.full_key:
        return f"{cause.full_key}: {first_line(cause, limit=None)}"
    # Hydra gives these two no type or field of their own (a ConfigCompositionException's message is all there
    # is): "An item is already at ..." here, and the "+key=value" it proposes (_added_form).
    already = re.search(r"An item is already at '([^']+)'.*remove \+ prefix: '([^']+)'", str(err), flags=re.S)
    if already:  # +key=value for a key the config has
        return f"{already.group(1)} is already in the config: set it without the +, {already.group(2)}"
    line = " ".join(text.strip() for text in str(err).splitlines() if text.strip()) or type(err).__name__
    if cause is not err and isinstance(cause, OmegaConfBaseException):
        line = f"{line}: {first_line(cause, limit=None)}"
    return line


def _unknown_key_line(key: str, parent: Any, added: str | None) -> str:
    parent_key, _, name = key.rpartition(".")
    known = [str(k) for k in parent.keys()] if isinstance(parent, DictConfig) else []
    where = f"the {parent_key} config" if parent_key else "the config"
    close = [f"{parent_key}.{k}" if parent_key else k for k in difflib.get_close_matches(name, known, n=3, cutoff=0.7)]
    add = added or f"+{key}=<value>"
    target = parent.get("_target_") if isinstance(parent, DictConfig) else None
    takes = _takes_argument(target, name)
    if takes:  # an argument of the class the config builds, one the config does not list
        return f"{key} is not in {where}, but {target} takes it: add it with {add}"
    line = f"{key} is not a key of {where}" + (f" nor an argument of {target}" if takes is False else "")
    if close:
        return f"{line}; did you mean {' or '.join(close)}?"
    if takes is False:
        script = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "train.py"
        return f"{line}; its keys: python scripts/{script} --cfg job --package {parent_key or '_global_'}"
    return f"{line}; to add it as a new key: {add}"


def _takes_argument(target: Any, name: str) -> bool | None:
    """Whether ``target`` (a config's ``_target_``) takes an argument ``name``; None: no target or not inspectable."""
    if not target:
        return None
    try:
        parameters = inspect.signature(get_object(str(target))).parameters
    except Exception:  # not importable or not inspectable: no claim either way
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return True
    return name in parameters


def _added_form(message: str) -> str | None:
    """The ``+key=value`` spelling Hydra's message proposes ("To append to your config use +a.b=1")."""
    match = re.search(r"use (\+\S+=.*)$", message, flags=re.MULTILINE)
    return match.group(1).strip() if match else None


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
