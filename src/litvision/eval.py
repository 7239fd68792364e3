"""The evaluation task: test a checkpoint with the model and data configuration saved inside it."""

from __future__ import annotations

import logging

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar
from omegaconf import DictConfig

from litvision.checkpoint import DATA_CONFIG_KEY, MODEL_CONFIG_KEY, read_checkpoint
from litvision.instantiate import build, build_each, plain

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Return the test metrics of ``cfg.ckpt_path``; non-null ``cfg.data`` keys override the saved data config."""
    checkpoint = read_checkpoint(cfg.ckpt_path)
    saved = checkpoint["hyper_parameters"]
    del checkpoint  # the trainer reads the weights itself; don't hold two copies
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    data_config = {**saved[DATA_CONFIG_KEY], **{k: v for k, v in plain(cfg.data).items() if v is not None}}
    datamodule = build(data_config, "data")
    model = build(saved[MODEL_CONFIG_KEY], "model")
    loggers = build_each(cfg.get("logger"), "logger")
    trainer = build(cfg.trainer, "trainer", callbacks=[RichProgressBar()], logger=loggers or False)
    trainer.test(model, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    metrics = {name: float(value) for name, value in trainer.callback_metrics.items()}
    log.info("test/acc=%.4f  (%s)", metrics.get("test/acc", float("nan")), cfg.ckpt_path)
    return metrics
