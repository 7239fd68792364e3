"""Lightning's LearningRateMonitor, stepping aside when the run has no logger instead of stopping it."""

from __future__ import annotations

from lightning import Trainer
from lightning.pytorch.callbacks import LearningRateMonitor as _LearningRateMonitor


class LearningRateMonitor(_LearningRateMonitor):
    """Lightning's version raises in ``on_train_start`` without a logger, which made every
    logging-off run (``~logger``) fail; with nothing to write to, this one does nothing instead."""

    def on_train_start(self, trainer: Trainer, *args, **kwargs) -> None:
        self._off = not trainer.loggers
        if not self._off:
            super().on_train_start(trainer, *args, **kwargs)

    def on_train_batch_start(self, trainer: Trainer, *args, **kwargs) -> None:
        if not getattr(self, "_off", False):
            super().on_train_batch_start(trainer, *args, **kwargs)

    def on_train_epoch_start(self, trainer: Trainer, *args, **kwargs) -> None:
        if not getattr(self, "_off", False):
            super().on_train_epoch_start(trainer, *args, **kwargs)
