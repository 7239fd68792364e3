"""ImageClassifier: the one LightningModule that wraps any image-classification ``nn.Module``."""

from __future__ import annotations

from functools import partial
from typing import Callable, Sequence

import torch
from lightning import LightningModule
from torch import nn
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from litvision.callbacks.progress import redraws_after
from litvision.errors import LitvisionError

STAGES = ("train", "val", "test")


class ImageClassifier(LightningModule):
    """Cross-entropy training of ``net`` with torchmetrics accuracy per stage.

    ``optimizer`` and ``scheduler`` are partials (Hydra ``_partial_: true``) completed here with the
    parameters and the optimizer. A OneCycleLR partial gets ``total_steps`` from the trainer.
    Hyperparameters are stored as plain containers only, so checkpoints load with ``weights_only``.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable | None = None,
        num_classes: int = 10,
        input_shape: Sequence[int] = (1, 28, 28),
        label_smoothing: float = 0.0,
        scheduler_interval: str = "epoch",
        channels_last: bool = False,
        compile: bool = False,
    ):
        super().__init__()
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])
        self.net = net
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self._check_options(net, optimizer, scheduler)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.example_input_array = torch.zeros(1, *input_shape)
        # No per-step input checks: validate_args and the NaN check each cost a device-to-host sync per
        # step on a GPU (and Python time on a CPU); the inputs come from this module, and a NaN loss
        # still shows as a NaN epoch loss.
        accuracy = partial(MulticlassAccuracy, num_classes=num_classes, average="micro", validate_args=False)
        for stage in STAGES:  # attributes, not a ModuleDict: a "train" key would shadow nn.Module.train
            setattr(self, f"{stage}_acc", accuracy())
            setattr(self, f"{stage}_loss", MeanMetric(nan_strategy="disable"))
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)  # kept in checkpoints, so a resumed run keeps its best
        if channels_last:  # NHWC: faster convolutions with cuDNN/oneDNN, especially in mixed precision
            self.net.to(memory_format=torch.channels_last)
        self._compiled_net = None

    @staticmethod
    def _check_options(net: nn.Module, optimizer: Callable, scheduler: Callable | None) -> None:
        """Build a throwaway optimizer and scheduler: bad options fail now, in one line, not after the data loads."""
        try:
            throwaway = optimizer(params=net.parameters())
        except (TypeError, ValueError) as err:
            raise LitvisionError(f"invalid model.optimizer options: {err}") from None
        if scheduler is None:
            return
        needs_steps = getattr(scheduler, "func", None) is torch.optim.lr_scheduler.OneCycleLR
        try:
            scheduler(optimizer=throwaway, **({"total_steps": 100} if needs_steps else {}))
        except (TypeError, ValueError, KeyError) as err:
            raise LitvisionError(f"invalid model.scheduler options: {err}") from None

    def configure_model(self) -> None:
        if self.hparams.compile and self._compiled_net is None:
            # Kept outside the module tree (object.__setattr__): registering it would add "_orig_mod."
            # copies of every weight to the state dict and break checkpoints for uncompiled runs.
            object.__setattr__(self, "_compiled_net", torch.compile(self.net))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.hparams.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        net = self.net if self._compiled_net is None else self._compiled_net
        return net(images)

    def _shared_step(self, batch, stage: str) -> torch.Tensor:
        images, labels = batch
        logits = self(images)
        loss = self.criterion(logits, labels)
        # update(), not __call__: the per-batch value that __call__ also computes is never used. The
        # metrics are logged once per epoch (_log_epoch_metrics): a self.log call costs about 0.3 ms
        # of Python, several per step add up to ~5% of a small CPU model's step.
        getattr(self, f"{stage}_loss").update(loss.detach())
        getattr(self, f"{stage}_acc").update(logits.detach(), labels)
        return loss

    def _log_epoch_metrics(self, stage: str) -> None:
        # Metric objects: Lightning computes them (synced across ranks) and resets them after the epoch.
        self.log(f"{stage}/loss", getattr(self, f"{stage}_loss"), on_step=False, on_epoch=True,
                 prog_bar=stage != "train")
        self.log(f"{stage}/acc", getattr(self, f"{stage}_acc"), on_step=False, on_epoch=True, prog_bar=True)

    def training_step(self, batch, batch_idx):
        loss = self._shared_step(batch, "train")
        if self._bar_redraws_at(batch_idx):  # a self.log call costs ~0.3-1 ms: only for the bar, when it redraws
            self.log("loss", loss, on_step=True, on_epoch=False, prog_bar=True, logger=False)
        return loss

    def _bar_redraws_at(self, batch_idx: int) -> bool:
        """The batches after which the progress bar redraws, so the logged loss is the one shown."""
        bar = self._trainer.progress_bar_callback if self._trainer is not None else None
        return bar is not None and redraws_after(bar, batch_idx)

    def validation_step(self, batch, batch_idx):
        self._shared_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._shared_step(batch, "test")

    def predict_step(self, batch, batch_idx):
        return self(batch[0]).softmax(dim=1)

    def on_train_epoch_end(self) -> None:
        self._log_epoch_metrics("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch_metrics("val")
        if self.trainer.sanity_checking:
            return
        self.val_acc_best(self.val_acc.compute())
        self.log("val/acc_best", self.val_acc_best.compute(), sync_dist=True, prog_bar=True)

    def on_test_epoch_end(self) -> None:
        self._log_epoch_metrics("test")

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        factory = self.scheduler_factory
        if getattr(factory, "func", None) is torch.optim.lr_scheduler.OneCycleLR:
            # torch divides by (pct_start * total_steps - 1): very short runs (debug, tests) need a floor.
            shortest = int(2 / factory.keywords.get("pct_start", 0.3)) + 1
            factory = partial(factory, total_steps=max(int(self.trainer.estimated_stepping_batches), shortest))
        scheduler = factory(optimizer=optimizer)
        interval = "step" if isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR) else self.hparams.scheduler_interval
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": interval}}
