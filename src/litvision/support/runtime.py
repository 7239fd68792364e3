"""Where this process stands: rank zero or another rank, a single run or a job of a Hydra multirun."""

from __future__ import annotations

import os

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode

# Environment variables that name a process's rank under Lightning's DDP children, torchrun and SLURM.
_RANK_VARIABLES = ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK")


def is_rank_zero() -> bool:
    """True in the process that owns the run dir: every rank variable present is 0."""
    return all(os.environ.get(name, "0") == "0" for name in _RANK_VARIABLES)


def in_multirun() -> bool:
    """Whether this process runs a job of a Hydra multirun (``-m``) rather than a single run."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
