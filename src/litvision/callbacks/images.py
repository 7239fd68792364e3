"""Image grids in TensorBoard: training samples as the net sees them, validation predictions, worst cases.

Both callbacks need a TensorBoard logger and step aside (one info line) without one. Only rank 0
draws; the other ranks take part in the one gather the highest-loss grid needs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lightning import Callback, LightningModule, Trainer

from litvision.callbacks.dashboard import (
    add_picture,
    announce_off,
    class_names,
    displayable,
    due_this_epoch,
    has_tensorboard,
    step_logits,
    tensorboard_writer,
)
from litvision.support.render import image_grid


class TrainSamples(Callback):
    """At the start of fit: the first training batch after augmentation, de-normalized, captioned with class names.

    The batch is taken in ``on_train_batch_start``, after the datamodule has normalized and augmented
    it on the device, so the grid shows exactly what the net is trained on.
    """

    def __init__(self, num_images: int = 32, columns: int = 8):
        self.num_images, self.columns = num_images, columns
        self._pending = False

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        announce_off("train_samples", trainer)
        self._pending = True

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int) -> None:
        if not self._pending:
            return
        self._pending = False
        writer = tensorboard_writer(trainer)
        if writer is None:
            return
        images, labels = batch[0][: self.num_images], batch[1][: self.num_images]
        if labels.ndim == 2:  # MixUp/CutMix soft targets: captioned with the dominant class
            labels = labels.argmax(dim=1)
        names = class_names(trainer, _num_classes(trainer, pl_module) or int(labels.max()) + 1)
        captions = [names[int(label)] for label in labels]
        figure = image_grid(
            displayable(trainer, images),
            captions,
            columns=self.columns,
            title=f"training samples after augmentation (epoch {trainer.current_epoch})",
        )
        add_picture(writer, "train/samples", figure, trainer.global_step)


class ValPredictions(Callback):
    """Every ``every_n_epochs`` validation epochs (and the last): predictions and the highest-loss examples.

    ``val/predictions``: the first ``num_images`` validation images (the same ones each time) with the
    predicted class and its probability; mistakes are framed in red and name the true class.
    ``val/highest_loss``: the ``num_highest_loss`` validation examples the net got most wrong.
    The logits are what ``validation_step`` returns: no second forward pass.
    """

    def __init__(self, every_n_epochs: int = 1, num_images: int = 32, num_highest_loss: int = 16, columns: int = 8):
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be >= 1 (got {every_n_epochs})")
        self.every_n_epochs, self.num_images, self.columns = every_n_epochs, num_images, columns
        self.num_highest_loss = num_highest_loss
        self._drawing = False  # this validation epoch is drawn
        self._first: dict[str, torch.Tensor] | None = None
        self._highest: dict[str, torch.Tensor] | None = None
        self._num_classes = 0

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        announce_off("val_predictions", trainer)

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._first = self._highest = None
        self._drawing = (
            not trainer.sanity_checking and has_tensorboard(trainer) and due_this_epoch(trainer, self.every_n_epochs)
        )

    def on_validation_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs, batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        if not self._drawing or dataloader_idx != 0:
            return
        images, labels = batch[0], batch[1]
        logits = step_logits(outputs, labels)
        if logits is None:
            return
        self._num_classes = logits.shape[1]
        probs, preds = logits.float().softmax(dim=1).max(dim=1)
        found = {
            "images": images,
            "labels": labels,
            "preds": preds,
            "probs": probs,
            "loss": F.cross_entropy(logits.float(), labels, reduction="none"),
        }
        if self._first is None:
            self._first = {name: value[: self.num_images].clone() for name, value in found.items()}
        self._keep_highest(found)

    def _keep_highest(self, found: dict[str, torch.Tensor]) -> None:
        """Merge this batch's worst examples into the running top-k; padded with -inf losses so that every
        rank holds exactly k entries (a gather needs equal shapes)."""
        k = self.num_highest_loss
        if self._highest is None:
            self._highest = {name: value.new_zeros((k, *value.shape[1:])) for name, value in found.items()}
            self._highest["loss"].fill_(float("-inf"))
        worst = found["loss"].topk(min(k, len(found["loss"]))).indices
        merged = {name: torch.cat([self._highest[name], found[name][worst]]) for name in found}
        keep = merged["loss"].topk(k).indices
        self._highest = {name: value[keep] for name, value in merged.items()}

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self._drawing:
            return
        self._drawing = False
        highest = self._highest
        if highest is not None and trainer.world_size > 1:
            gathered = pl_module.all_gather(highest)  # every rank calls it: it is a collective
            gathered = {name: value.flatten(0, 1) for name, value in gathered.items()}
            keep = gathered["loss"].topk(self.num_highest_loss).indices
            highest = {name: value[keep] for name, value in gathered.items()}
        writer = tensorboard_writer(trainer)
        if writer is None or self._first is None:
            return
        step, epoch = trainer.global_step, trainer.current_epoch
        first = self._first
        names = class_names(trainer, self._num_classes)
        right = (first["preds"] == first["labels"]).tolist()
        captions = [
            _caption(names, pred, prob, label)
            for pred, prob, label in zip(first["preds"].tolist(), first["probs"].tolist(), first["labels"].tolist())
        ]
        accuracy = sum(right) / len(right)
        figure = image_grid(
            displayable(trainer, first["images"]),
            captions,
            [not ok for ok in right],
            self.columns,
            title=f"validation predictions, epoch {epoch} ({accuracy:.0%} of these right)",
        )
        add_picture(writer, "val/predictions", figure, step)
        if highest is not None:
            valid = highest["loss"] > float("-inf")
            highest = {name: value[valid] for name, value in highest.items()}
            captions = [
                f"{_caption(names, pred, prob, label)}\nloss {loss:.2f}"
                for pred, prob, label, loss in zip(
                    *(highest[key].tolist() for key in ("preds", "probs", "labels", "loss"))
                )
            ]
            figure = image_grid(
                displayable(trainer, highest["images"]),
                captions,
                (highest["preds"] != highest["labels"]).tolist(),
                self.columns,
                title=f"highest-loss validation examples, epoch {epoch}",
            )
            add_picture(writer, "val/highest_loss", figure, step)
        self._first = self._highest = None


def _num_classes(trainer: Trainer, pl_module: LightningModule) -> int:
    return int(getattr(trainer.datamodule, "num_classes", 0) or pl_module.hparams.get("num_classes", 0))


def _caption(names: list[str], pred: int, prob: float, label: int) -> str:
    text = f"{names[pred]} {prob:.0%}"
    return text if pred == label else f"{text}\ntrue: {names[label]}"
