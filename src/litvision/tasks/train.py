"""The training task: compose data, model, callbacks, loggers and trainer from config, fit, test."""

from __future__ import annotations

import logging
import secrets

import lightning as L
from omegaconf import DictConfig, open_dict

from litvision.models.pretrained import apply_weights_preprocessing
from litvision.support import provenance
from litvision.support.checkpoint import check_resumable, check_same_data, check_training_left, read_checkpoint
from litvision.support.errors import LitvisionError
from litvision.support.instantiate import build, build_trainer, plain
from litvision.support.precision import resolve_trainer_precision
from litvision.support.records import scalars, write_metrics
from litvision.support.runtime import is_rank_zero

log = logging.getLogger(__name__)


def resolve_run_config(cfg: DictConfig) -> int:
    """What the run decides about its own config, in one step before anything is built; returns the seed.

    ``seed=null`` draws a seed (logged and saved, to repeat the run); a pretrained backbone's preprocessing
    (mean, std, image size) goes into ``cfg.data``, so it is saved with the run; ``trainer.precision=auto``
    becomes bf16-mixed or 32-true for this machine.
    """
    seed = cfg.get("seed")
    if seed is None:
        seed = secrets.randbelow(2**31)
        log.info("seed=%d (drawn)", seed)
    with open_dict(cfg):
        cfg.seed = seed  # what ${seed} (data.shuffle_seed) resolves to from here on
    apply_weights_preprocessing(cfg)
    resolve_trainer_precision(cfg.trainer)
    return seed


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit ``cfg.model`` on ``cfg.data`` and test the best checkpoint; return the logged metrics."""
    seed = resolve_run_config(cfg)
    L.seed_everything(seed, workers=True)
    checkpoint = read_checkpoint(cfg.ckpt_path) if cfg.get("ckpt_path") else None
    if checkpoint is not None:  # a resume that cannot do what was asked stops before anything is built or written
        check_same_data(checkpoint, cfg.ckpt_path, plain(cfg.data))  # first: other data also means other net sizes
        if not cfg.trainer.get("fast_dev_run"):
            check_training_left(checkpoint, cfg.ckpt_path, cfg.trainer.get("max_epochs"), cfg.trainer.get("max_steps"))
    if is_rank_zero():  # <run dir>/provenance.json: commit (+ code.patch), command, versions, machine, times
        provenance.start(cfg.paths.output_dir, cfg)
    datamodule = build(cfg.data, "data")
    # The data config travels in the checkpoint, so eval.py rebuilds the same data without repeating options.
    model = build(cfg.model, "model", data_config=plain(cfg.data), seed=seed)
    if checkpoint is not None:
        check_resumable(checkpoint, cfg.ckpt_path, model.hparams["net"])

    trainer = build_trainer(cfg)

    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    if trainer.num_training_batches == 0 or trainer.limit_train_batches == 0:
        # A data module whose epoch has no batch (a split smaller than one batch with drop_last, say): the run
        # would test an untrained net and report it as a result. (A DDP launcher's parent process sees inf.)
        why = (
            "trainer.limit_train_batches=0"
            if trainer.limit_train_batches == 0
            else "the training split gives no batch: check data.batch_size and the split's size"
        )
        raise LitvisionError(f"training took no step ({why}); an untrained net is no result")
    metrics = scalars(trainer.callback_metrics)

    if cfg.get("test"):
        best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
        if not best:
            log.warning("no best checkpoint was saved; testing the weights at the end of training")
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None)
        metrics.update(scalars(trainer.callback_metrics))
        log.info("test/acc=%.4f  (best checkpoint: %s)", metrics.get("test/acc", float("nan")), best or "none")
    log.info("run dir: %s", cfg.paths.output_dir)
    if trainer.is_global_zero:  # <run dir>/metrics.json: what scripts/summarize.py tabulates across a sweep
        write_metrics(cfg.paths.output_dir, metrics, epochs=trainer.current_epoch, seed=seed)
        provenance.finish(cfg.paths.output_dir)
        for callback in trainer.callbacks:  # features that read the finished run's files (the report): on_run_end
            on_run_end = getattr(callback, "on_run_end", None)
            if callable(on_run_end):
                on_run_end(trainer)
    return metrics
