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


def find_stop(error: BaseException | None) -> Stopped | None:
    """The :class:`Stopped` record :class:`Interruption` attached to ``error`` or to an error it came from."""
    found = (getattr(link, "litvision_stopped", None) for link in error_chain(error))
    return next((stopped for stopped in found if isinstance(stopped, Stopped)), None)
