"""Confusion matrix after validation and after test: a TensorBoard figure, per-class accuracy, a PNG file."""

from __future__ import annotations

import re

import numpy as np
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only
from torchmetrics.classification import MulticlassConfusionMatrix

from litvision.callbacks.render import confusion_picture, save_png
from litvision.callbacks.support import (
    add_picture,
    class_names,
    due_this_epoch,
    output_dir,
    step_logits,
    tensorboard_writer,
)


class ConfusionMatrix(Callback):
    """A torchmetrics ``MulticlassConfusionMatrix`` over each validation and test epoch.

    - ``val/confusion_matrix`` every ``every_n_epochs`` validation epochs (and the last) and
      ``test/confusion_matrix`` after test, as images in TensorBoard (class names on the axes);
    - ``val_class_acc/<class>`` and ``test_class_acc/<class>`` scalars, logged with ``self.log`` so
      every logger (CSV too) and ``callback_metrics`` get them;
    - ``<dirpath>/confusion_matrix.png`` when fit ends and again when test ends (test wins when both run),
      with or without any logger.

    The logits are what ``validation_step``/``test_step`` return. The matrix is synced across ranks
    by torchmetrics; only rank 0 draws and writes.
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        per_class_accuracy: bool = True,
        dirpath: str | None = None,
        filename: str = "confusion_matrix.png",
    ):
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1 (got {every_n_epochs})")
        self.every_n_epochs, self.per_class_accuracy = every_n_epochs, per_class_accuracy
        self.dirpath, self.filename = dirpath, filename
        self._metric: MulticlassConfusionMatrix | None = None
        self._latest: tuple[np.ndarray, str, list[str]] | None = None  # (matrix, title, class names) for the PNG
        self._seen = False
        self._counting = False  # between an epoch's start and end; not in the sanity check

    # -- hooks ---------------------------------------------------------------------------------
    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self._start(pl_module)

    def on_test_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start(pl_module)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._update(outputs, batch, dataloader_idx)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._update(outputs, batch, dataloader_idx)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or not self._counting:
            return
        self._finish(
            trainer,
            pl_module,
            "val",
            f"validation confusion matrix, epoch {trainer.current_epoch}",
            draw=due_this_epoch(trainer, self.every_n_epochs),
        )

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._counting:
            self._finish(trainer, pl_module, "test", "test confusion matrix", draw=True)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._write_png(trainer)

    def on_test_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._write_png(trainer)

    # -- work ----------------------------------------------------------------------------------
    def _start(self, pl_module: LightningModule) -> None:
        self._counting = True
        if self._metric is not None:
            self._metric.reset()
        self._seen = False

    def _update(self, outputs, batch, dataloader_idx: int) -> None:
        if not self._counting or dataloader_idx != 0:
            return
        labels = batch[1]
        logits = step_logits(outputs, labels)
        if logits is None:
            return
        if self._metric is None or self._metric.num_classes != logits.shape[1]:
            self._metric = MulticlassConfusionMatrix(num_classes=logits.shape[1]).to(logits.device)
        self._metric.update(logits.argmax(dim=1), labels)
        self._seen = True

    def _finish(self, trainer: Trainer, pl_module: LightningModule, stage: str, title: str, draw: bool) -> None:
        self._counting = False
        if not self._seen or self._metric is None:
            return
        matrix = self._metric.compute().cpu().numpy()  # a collective under DDP: every rank computes
        names = class_names(trainer, len(matrix))
        if self.per_class_accuracy:
            totals = matrix.sum(axis=1)
            for index, name in enumerate(names):
                if totals[index]:
                    # A slash would nest the tag; "T-shirt/top" becomes "T-shirt_top".
                    tag = f"{stage}_class_acc/{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}"
                    pl_module.log(
                        tag, float(matrix[index, index] / totals[index]), on_step=False, on_epoch=True, sync_dist=True
                    )  # equal on every rank already; this only quiets the DDP hint
        accuracy = np.trace(matrix) / max(matrix.sum(), 1)
        self._latest = (matrix, f"{title} (accuracy {accuracy:.2%})", names)
        writer = tensorboard_writer(trainer)
        if draw and writer is not None:
            add_picture(
                writer,
                f"{stage}/confusion_matrix",
                confusion_picture(matrix, names, self._latest[1]),
                trainer.global_step,
            )

    @rank_zero_only
    def _write_png(self, trainer: Trainer) -> None:
        if self._latest is not None:
            matrix, title, names = self._latest
            save_png(confusion_picture(matrix, names, title), output_dir(self.dirpath, trainer) / self.filename)
