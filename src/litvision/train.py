"""The training task: compose data, model, callbacks, loggers and trainer from config, fit, test."""

from __future__ import annotations

import logging

import lightning as L
from omegaconf import DictConfig

from litvision.checkpoint import DATA_CONFIG_KEY, MODEL_CONFIG_KEY, check_resumable, read_checkpoint
from litvision.instantiate import build, build_each, plain
from litvision.sweeps.records import write_metrics

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit ``cfg.model`` on ``cfg.data`` and test the best checkpoint; return the logged metrics."""
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    datamodule = build(cfg.data, "data")
    model = build(cfg.model, "model")
    # Kept in the checkpoint so eval.py rebuilds the same model and data without repeating options.
    model.hparams[MODEL_CONFIG_KEY] = plain(cfg.model)
    model.hparams[DATA_CONFIG_KEY] = plain(cfg.data)
    if cfg.get("ckpt_path"):
        check_resumable(read_checkpoint(cfg.ckpt_path), cfg.ckpt_path, model.hparams[MODEL_CONFIG_KEY])

    callbacks = build_each(cfg.get("callbacks"), "callbacks")
    loggers = build_each(cfg.get("logger"), "logger")
    trainer = build(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers or False)

    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics = _scalars(trainer.callback_metrics)

    if cfg.get("test"):
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if not best:
            log.warning("no best checkpoint was saved; testing the weights at the end of training")
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None)
        metrics.update(_scalars(trainer.callback_metrics))
        log.info("test/acc=%.4f  (best checkpoint: %s)", metrics.get("test/acc", float("nan")), best or "none")
    log.info("run dir: %s", cfg.paths.output_dir)
    if trainer.is_global_zero:  # <run dir>/metrics.json: what scripts/summarize.py tabulates across a sweep
        write_metrics(cfg.paths.output_dir, metrics, epochs=trainer.current_epoch)
    return metrics


def _scalars(callback_metrics) -> dict[str, float]:
    return {name: float(value) for name, value in callback_metrics.items()}
