"""Building objects from configs, with user-facing errors: a bad option becomes one line, not a traceback."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from litvision.support.file_config import build_literal
from litvision.support.options import check_trainer_options


def build(config: DictConfig | Mapping, what: str, **kwargs: Any) -> Any:
    """Build ``config`` as Hydra's ``instantiate`` would; nested containers arrive as plain lists/dicts.

    A DictConfig (the user's config) has its interpolations resolved once, into a plain copy; the copy is
    then built with its strings kept literally (:func:`~litvision.support.file_config.build_literal`), so a
    value that holds ``${...}`` after resolving (a class folder's name) is never interpolated again, as
    Hydra's ``instantiate`` would. Bad values are one :class:`LitvisionError` line.
    """
    return build_literal(plain(config), what, **kwargs)


def build_each(group: DictConfig | None, what: str) -> list[Any]:
    """Instantiate every entry of a group like ``callbacks`` or ``logger`` (entries set to null are off, and so
    are those that build to None: a tracker of ``logger=many`` that is not installed)."""
    if not group:
        return []
    built = (build(entry, f"{what}.{name}") for name, entry in group.items() if entry and "_target_" in entry)
    return [item for item in built if item is not None]


def build_callbacks(cfg: DictConfig) -> list[Any]:
    """The ``callbacks`` group of a task's config; ``trainer.enable_progress_bar=false`` also drops its progress bar.

    Lightning refuses a progress-bar callback beside ``enable_progress_bar=False``, and adds a bar of its
    own where none is configured: pass ``enable_progress_bar=shows_progress_bar(callbacks)`` to the
    Trainer, so that either ``trainer.enable_progress_bar=false`` or ``callbacks.progress_bar=null``
    turns the bar off.
    """
    callbacks = build_each(cfg.get("callbacks"), "callbacks")
    if cfg.get("trainer") is not None and cfg.trainer.get("enable_progress_bar") is False:
        callbacks = [callback for callback in callbacks if not shows_progress_bar([callback])]
    return callbacks


def shows_progress_bar(callbacks: list[Any]) -> bool:
    """Whether one of ``callbacks`` is a progress bar (Lightning's ``ProgressBar`` base class)."""
    from lightning.pytorch.callbacks import ProgressBar

    return any(isinstance(callback, ProgressBar) for callback in callbacks)


def plain(config: DictConfig | Mapping) -> dict:
    """A resolved plain-dict copy: what checkpoints and hyperparameter logs can hold."""
    return OmegaConf.to_container(config, resolve=True) if isinstance(config, DictConfig) else dict(config)


def build_trainer(cfg: DictConfig, **kwargs: Any) -> Any:
    """A task's Trainer from ``cfg.trainer`` (its precision already resolved), with the task's callbacks and
    loggers; the Trainer options Lightning accepts and then misreads are checked first (one line)."""
    check_trainer_options(cfg.trainer)
    callbacks = build_callbacks(cfg)
    loggers = build_each(cfg.get("logger"), "logger")
    bar = shows_progress_bar(callbacks)  # callbacks.progress_bar=null: no bar, rather than Lightning's own
    return build(
        cfg.trainer, "trainer", callbacks=callbacks, logger=loggers or False, enable_progress_bar=bar, **kwargs
    )
