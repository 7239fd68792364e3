"""The evaluation task: test a checkpoint with the model and data configuration saved inside it."""

from __future__ import annotations

import logging

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar
from omegaconf import DictConfig

from litvision.classifier import ImageClassifier
from litvision.models.pretrained import checkpoint_weights_follow
from litvision.support.checkpoint import read_checkpoint, saved_configs
from litvision.support.instantiate import build, build_each, plain
from litvision.support.precision import resolve_trainer_precision
from litvision.sweeps.records import scalars

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Return the test metrics of ``cfg.ckpt_path``; non-null ``cfg.data`` keys override the saved data config."""
    model_config, data_config = saved_configs(read_checkpoint(cfg.ckpt_path))
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    data_config = {**data_config, **{k: v for k, v in plain(cfg.data).items() if v is not None}}
    datamodule = build(data_config, "data")
    with checkpoint_weights_follow():  # a pretrained backbone's file is not needed: the checkpoint's weights follow
        model = ImageClassifier(**model_config)
    loggers = build_each(cfg.get("logger"), "logger")
    resolve_trainer_precision(cfg.trainer)
    trainer = build(cfg.trainer, "trainer", callbacks=[RichProgressBar()], logger=loggers or False)
    trainer.test(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    metrics = scalars(trainer.callback_metrics)
    log.info("test/acc=%.4f  (%s)", metrics.get("test/acc", float("nan")), cfg.ckpt_path)
    return metrics
