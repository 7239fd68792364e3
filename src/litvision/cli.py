"""What the scripts share: run a task and turn user errors into one line on stderr."""

from __future__ import annotations

import sys
from collections.abc import Callable

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from litvision.errors import LitvisionError
from litvision.runtime import apply_runtime


def run_task(task: Callable[[DictConfig], dict], cfg: DictConfig) -> float | None:
    """Run ``task``; return the metric an optimizing sweeper reads (``cfg.optimized_metric``), if any.

    A :class:`LitvisionError` in a single run exits with status 2 and a one-line message; in a
    multirun it is raised so Hydra records that job as failed.
    """
    try:
        apply_runtime(cfg.get("runtime"))
        metrics = task(cfg)
    except LitvisionError as err:
        if in_multirun():
            raise  # Hydra records the job as failed
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    metric_name = cfg.get("optimized_metric")
    return metrics.get(metric_name) if metric_name else None


def in_multirun() -> bool:
    """Whether this process runs a job of a Hydra multirun (``-m``) rather than a single run."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
