"""A run stopped by a signal: what it left (the signal, the checkpoint, the resume command), for the exit code."""

from __future__ import annotations

import signal
from dataclasses import dataclass

from litvision.support.errors import error_chain


@dataclass(frozen=True)
class Stopped:
    """What an interrupted run left: the signal, the checkpoint to resume from and the command that does it."""

    signum: int
    ckpt_path: str | None
    command: str | None

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM


class RunInterrupted(Exception):
    """Raised at the end of a training batch after SIGINT or SIGTERM arrived."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


def signal_of(error: BaseException) -> int | None:
    """The signal ``error`` stands for: our RunInterrupted, Lightning's SIGTERMException, Ctrl-C's KeyboardInterrupt."""
    # Imported here: the scripts import this module, and --cfg/--help answer without loading Lightning.
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    if isinstance(error, RunInterrupted):
        return error.signum
    if isinstance(error, SIGTERMException):
        return signal.SIGTERM
    if isinstance(error, KeyboardInterrupt):
        return signal.SIGINT
    return None


# The stop the interruption callback recorded, handed to the exit code by value (the callback sees the
# exception inside Lightning; the scripts' run_task sees what Lightning raises after its teardown).
_recorded: Stopped | None = None


def record_stop(stopped: Stopped | None) -> None:
    global _recorded
    _recorded = stopped


def take_stop(error: BaseException | None) -> Stopped | None:
    """The recorded stop, once, if ``error`` (or an error it came from) is the signal's; else None."""
    global _recorded
    stopped, _recorded = _recorded, None
    signalled = any(signal_of(link) is not None for link in error_chain(error))
    return stopped if signalled else None
