"""Confusion matrix after validation and after test: a TensorBoard figure, per-class accuracy, a PNG file."""

from __future__ import annotations

import numpy as np
from lightning import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_only
from torchmetrics.classification import MulticlassConfusionMatrix

from litvision.callbacks.dashboard import (
    add_picture,
    class_keys,
    class_names,
    due_this_epoch,
    output_dir,
    step_logits,
    tensorboard_writer,
)
from litvision.support.atomic import write_json
from litvision.support.render import confusion_picture, save_png

KEYS_FILE = "class_keys.json"


class ConfusionMatrix(Callback):
    """A torchmetrics ``MulticlassConfusionMatrix`` over each validation and test epoch.

    - ``val/confusion_matrix`` every ``every_n_epochs`` validation epochs (and the last) and
      ``test/confusion_matrix`` after test, as images in TensorBoard (class names on the axes);
    - ``val_class_acc/<key>`` and ``test_class_acc/<key>`` scalars, logged with ``self.log_dict`` so
      every logger (CSV too) and ``callback_metrics`` get them. The key is the class name, any script,
      with ``/`` and whitespace made ``_`` and an index added where two names would meet
      (:func:`~litvision.callbacks.dashboard.class_keys`); when a key differs from its class name,
      ``<dirpath>/class_keys.json`` lists each class's index, name and key;
    - ``<dirpath>/confusion_matrix.png`` when fit ends and again when test ends (test wins when both run),
      with or without any logger. Beyond 50 classes the picture shows the 50 most confused.

    The logits are what ``validation_step``/``test_step`` return. The matrix is synced across ranks
    by torchmetrics (one all-reduce of the C x C counts); the per-class values come from it, equal on
    every rank, so they need no all-reduce of their own. Only rank 0 draws and writes.
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
        self._keys: tuple[list[str], list[str]] | None = None  # (class names, their keys)

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
            self._log_per_class(trainer, pl_module, stage, matrix, names)
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

    def _log_per_class(self, trainer, pl_module, stage: str, matrix: np.ndarray, names: list[str]) -> None:
        totals = matrix.sum(axis=1)
        accuracies = np.diagonal(matrix) / np.maximum(totals, 1)
        keys = self._class_keys(trainer, names)
        values = {f"{stage}_class_acc/{keys[i]}": float(accuracies[i]) for i in np.flatnonzero(totals)}
        # Equal on every rank (the matrix was synced): rank_zero_only makes Lightning's per-value sync a
        # no-op, so no all-reduce per class; sync_dist=True only quiets its DDP hint.
        pl_module.log_dict(values, on_step=False, on_epoch=True, sync_dist=True, rank_zero_only=True)

    def _class_keys(self, trainer: Trainer, names: list[str]) -> list[str]:
        if self._keys is None or self._keys[0] != names:
            self._keys = (names, class_keys(names))
            if trainer.is_global_zero and self._keys[1] != [str(name) for name in names]:
                table = [{"index": i, "name": name, "key": key} for i, (name, key) in enumerate(zip(*self._keys))]
                write_json(output_dir(self.dirpath, trainer) / KEYS_FILE, {"classes": table}, ensure_ascii=False)
        return self._keys[1]

    @rank_zero_only
    def _write_png(self, trainer: Trainer) -> None:
        if self._latest is not None:
            matrix, title, names = self._latest
            save_png(confusion_picture(matrix, names, title), output_dir(self.dirpath, trainer) / self.filename)
