"""A Hydra callback that leaves ``status.json`` in every job's dir: ok, failed (with the error) or pruned.

Hydra keeps a failed job's exception in memory only (the sweep raises it at the very end, or never,
on a remote launcher); the file makes the outcome of each run visible on disk, where
``scripts/summarize.py`` and a person looking at the sweep dir find it. Configured in
``conf/hydra/default.yaml`` under ``hydra.callbacks``; it runs wherever the job runs (SLURM included).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from litvision.support.records import FAILED, OK, PRUNED, is_pruned, one_line, write_status
from litvision.support.runtime import is_rank_zero

log = logging.getLogger(__name__)


def classify(job: JobReturn) -> tuple[str, str | None]:
    """(ok, None), (failed, the error in one line) or (pruned, the pruning message) for a finished job."""
    if job.status == JobStatus.COMPLETED:
        return OK, None
    # The exception itself: JobReturn's public .return_value re-raises it instead of returning it.
    error = job._return_value
    message = one_line(error) if isinstance(error, BaseException) else str(error)
    return (PRUNED if is_pruned(error) else FAILED), message


class JobStatusFile(Callback):
    def __init__(self) -> None:
        self._started: float | None = None

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._started = time.time()

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if not is_rank_zero():  # DDP children share the run dir with rank 0
            return
        if config.hydra.output_subdir is None:  # a tool that asked for no run files (scripts/model_summary.py)
            return
        details: dict[str, Any] = {"job": config.hydra.job.get("num"), "wall_s": self._wall_time()}
        status, error = classify(job_return)
        if error is not None:
            details["error"] = error
            if status == FAILED:
                log.error("run failed: %s", error)
            else:
                log.info("trial pruned")
        write_status(config.hydra.runtime.output_dir, status, **details)

    def _wall_time(self) -> float | None:
        return None if self._started is None else round(time.time() - self._started, 3)
