"""The evaluation task: test a checkpoint with the model and data configuration saved inside it."""

from __future__ import annotations

import logging

import lightning as L
from omegaconf import DictConfig

from litvision.classifier import from_saved_config
from litvision.support.checkpoint import read_checkpoint, saved_configs
from litvision.support.instantiate import build, build_trainer, plain
from litvision.support.precision import resolve_trainer_precision
from litvision.support.records import scalars

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Return the test metrics of ``cfg.ckpt_path``; non-null ``cfg.data`` keys override the saved data config."""
    model_config, data_config = saved_configs(read_checkpoint(cfg.ckpt_path))
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    data_config = {**data_config, **test_data_overrides(cfg.data)}
    datamodule = build(data_config, "data")
    model = from_saved_config(model_config)
    resolve_trainer_precision(cfg.trainer)
    trainer = build_trainer(cfg)
    trainer.test(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    metrics = scalars(trainer.callback_metrics)
    log.info("test/acc=%.4f  (%s)", metrics.get("test/acc", float("nan")), cfg.ckpt_path)
    return metrics


def test_data_overrides(data: DictConfig) -> dict:
    """The ``data`` keys given on the command line; ``batch_size`` is the test batch size, as eval runs no training."""
    given = {key: value for key, value in plain(data).items() if value is not None}
    if "batch_size" in given:
        given.setdefault("eval_batch_size", given["batch_size"])
    return given
