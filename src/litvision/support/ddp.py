"""The DDP strategy of ``trainer=ddp`` and ``trainer=ddp_cpu``: script relaunch in a single run, workers in a sweep.

Lightning's default DDP launcher starts ranks 1..N-1 by running ``sys.argv`` again. Under Hydra
multirun that command line is the whole sweep (``-m model=a,b ...``), so every child would rerun every
job. Inside a sweep job the ranks are therefore started with ``torch.multiprocessing`` (``spawn``, or
``fork`` on the CPU where it is safe and saves re-importing torch in every worker): the workers get the
job's trainer, model and data module directly and never see the command line, and the sweep process
joins no process group, so the next job starts clean. Outside sweeps the relaunch is kept: one start
per rank for fit and test together, and no pickling.

Where a cluster has already started one process per rank (``torchrun``, ``srun`` or SLURM through
hydra/launcher=slurm), Lightning launches nothing and the choice does not matter.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any, Literal

from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment
from lightning.pytorch.strategies import DDPStrategy

# Private module: Lightning has no public way to change what its spawn launcher brings back from the workers.
from lightning.pytorch.strategies.launchers.multiprocessing import _MultiProcessingLauncher

from litvision.support.errors import LitvisionError, first_line
from litvision.support.runtime import in_multirun

_EPOCHS_KEY = "litvision_fit_epoch_progress"


def ddp_strategy(
    process_group_backend: str | None = None,
    start_method_in_sweeps: Literal["spawn", "fork"] = "spawn",
    timeout_s: float = 1800,
    **kwargs: Any,
) -> DDPStrategy:
    """A DDPStrategy whose ranks are safe to start from where this process runs (see the module doc).

    ``timeout_s``: the process group's timeout. A rank that waits that long in a collective (another
    rank died, or hangs) stops with one error line instead of waiting forever (gloo raises it; NCCL's
    watchdog ends the process).
    """
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or timeout_s <= 0:
        raise LitvisionError(f"trainer.strategy.timeout_s must be a number of seconds > 0 (got {timeout_s!r})")
    in_sweep = in_multirun() and not ranks_started_externally()
    start_method = start_method_in_sweeps if in_sweep else "popen"
    return _SweepSafeDDPStrategy(
        process_group_backend=process_group_backend,
        start_method=start_method,
        timeout=timedelta(seconds=timeout_s),
        **kwargs,
    )


def collective_failure(error: BaseException) -> str | None:
    """One line for a collective that timed out or lost its peer (a rank stopped, hangs, or took other steps).

    gloo and NCCL raise these as RuntimeErrors (``DistBackendError``) from wherever the rank waited:
    DDP's forward or backward, a metric's sync, a barrier. None for any other error.
    """
    if not isinstance(error, RuntimeError):
        return None
    text = str(error).lower()
    if not any(sign in text for sign in ("timed out", "timeout", "connection closed", "connection reset")):
        return None
    rank = os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))
    return (
        f"DDP rank {rank}: no answer from the other DDP processes within trainer.strategy.timeout_s "
        f"(another process stopped or hangs): {first_line(error, limit=120)}"
    )


def ranks_started_externally() -> bool:
    return SLURMEnvironment.detect() or TorchElasticEnvironment.detect()


class _SweepSafeDDPStrategy(DDPStrategy):
    # Lightning internal: choosing the launcher has no public hook; Lightning's own strategies override this one.
    def _configure_launcher(self) -> None:
        super()._configure_launcher()
        if isinstance(self._launcher, _MultiProcessingLauncher):
            self._launcher = _EpochKeepingLauncher(self, start_method=self._start_method)


class _EpochKeepingLauncher(_MultiProcessingLauncher):
    """Also brings the fit loop's epoch count back from the workers (Lightning returns only metrics and
    weights), so ``trainer.current_epoch`` after ``fit`` is right in the sweep process too."""

    def get_extra_results(self, trainer) -> dict[str, Any]:
        extra = super().get_extra_results(trainer)
        # Lightning internal: trainer.current_epoch is read-only; the fit loop's epoch progress is what it reads.
        extra[_EPOCHS_KEY] = trainer.fit_loop.epoch_progress.state_dict()
        return extra

    def update_main_process_results(self, trainer, extra: dict[str, Any]) -> None:
        progress = extra.pop(_EPOCHS_KEY, None)
        super().update_main_process_results(trainer, extra)
        if progress is not None and trainer.state.fn == "fit":
            trainer.fit_loop.epoch_progress.load_state_dict(progress)  # the internal read above, written back
