"""Lightning's rich progress bar, redrawn every ``refresh_rate`` training batches instead of every batch."""

from __future__ import annotations

from lightning import LightningModule, Trainer
from lightning.pytorch.callbacks import RichProgressBar as _RichProgressBar


def redraws_after(bar, batch_idx: int) -> bool:
    """Whether a progress bar redraws after training batch ``batch_idx``: every ``refresh_rate`` batches
    and after the last one. That is Lightning's TQDM bar's rule, and this module's rich bar follows it."""
    done = batch_idx + 1
    rate = max(int(getattr(bar, "refresh_rate", 1) or 1), 1)  # a custom ProgressBar may have no rate
    return bar.is_enabled and (done % rate == 0 or done == bar.total_train_batches)


class RichProgressBar(_RichProgressBar):
    """Lightning's ``RichProgressBar`` with its ``refresh_rate`` honoured during training.

    Lightning's version (2.6) ignores the rate on training batches: after every batch it updates the
    task, rebuilds the metrics dict from ``trainer.progress_bar_metrics`` and refreshes, about 0.1-0.2 ms
    of Python per batch on a 2-core CPU, which a small model's step feels. This one does that work
    on the batches where the bar redraws (:func:`redraws_after`): every ``refresh_rate`` and the last.
    Validation, test and predict bars are unchanged: they run a few large batches.
    """

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int) -> None:
        if redraws_after(self, batch_idx):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
