"""Experiment trackers as extras: MLflow and Weights & Biases loggers (``logger=mlflow``, ``logger=wandb``).

Both are Lightning's loggers; these builders add what the configs need around them: one line naming
the extra when its package is missing (or, in ``logger=many``, leaving the tracker out), MLflow's SQLite
store at a path rather than a URI, and one W&B run per training run within one process. mlflow and
wandb are imported only here, when picked: each costs seconds of start-up.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from litvision.support.errors import LitvisionError

log = logging.getLogger(__name__)

EXTRA = 'pip install -e ".[tracking]"'


def _installed(package: str, logger: str, optional: bool) -> bool:
    if importlib.util.find_spec(package) is not None:
        return True
    if not optional:
        raise LitvisionError(f"logger={logger} needs {package}: {EXTRA}")
    log.info("logger.%s left out: %s is not installed (%s)", logger, package, EXTRA)
    return False


def mlflow_logger(
    database: str | None = None,
    artifacts: str | None = None,
    tracking_uri: str | None = None,
    optional: bool = False,
    **kwargs,
):
    """Lightning's MLFlowLogger on the SQLite file ``database`` (created with its folder), artifacts in the
    folder ``artifacts``; ``tracking_uri`` (a server, say) replaces the file. None where mlflow is missing
    and ``optional``."""
    if not _installed("mlflow", "mlflow", optional):
        return None
    from lightning.pytorch.loggers import MLFlowLogger

    if tracking_uri is None and database is not None:
        path = Path(database).expanduser().resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        tracking_uri = f"sqlite:///{path}"
    if artifacts is not None:
        kwargs["artifact_location"] = Path(artifacts).expanduser().resolve().as_uri()
    return MLFlowLogger(tracking_uri=tracking_uri, **kwargs)


def wandb_logger(optional: bool = False, **kwargs):
    """Lightning's WandbLogger; None where wandb is missing and ``optional``.

    A W&B run stays open until ``wandb.finish`` or the process ends, and a new WandbLogger would join
    it: the run a previous training run of this process left open (the jobs of a sweep) is finished first.
    """
    if not _installed("wandb", "wandb", optional):
        return None
    import wandb
    from lightning.pytorch.loggers import WandbLogger

    if wandb.run is not None:
        wandb.finish()
    Path(kwargs.get("save_dir", ".")).mkdir(parents=True, exist_ok=True)
    return WandbLogger(**kwargs)
