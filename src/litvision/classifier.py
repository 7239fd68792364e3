"""ImageClassifier: the one LightningModule that wraps any image-classification ``nn.Module``."""

from __future__ import annotations

from functools import partial
from typing import Callable, Sequence

import torch
from lightning import LightningModule
from torch import nn
from torchmetrics import MaxMetric, MeanMetric

from litvision.callbacks.progress import redraws_after
from litvision.errors import LitvisionError

STAGES = ("train", "val", "test")


class EpochTotals:
    """One stage's loss sum and right answers over an epoch, added up on the device: no host sync per step."""

    def __init__(self, device: torch.device):
        self.loss_sum = torch.zeros((), device=device)
        self.right = torch.zeros((), dtype=torch.long, device=device)
        self.batches = self.examples = 0

    def add(self, loss: torch.Tensor, correct: torch.Tensor) -> None:
        self.loss_sum.add_(loss.float())  # in place: no new tensor per step
        self.right.add_(correct.sum())
        self.batches += 1
        self.examples += correct.numel()


class ImageClassifier(LightningModule):
    """Cross-entropy training of ``net``; per stage, the epoch's mean loss and accuracy as torchmetrics means.

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
        # Per stage and epoch: the mean batch loss and the micro accuracy (the share of examples right),
        # as torchmetrics means, which Lightning logs as objects (synced across ranks, reset each epoch).
        # They are fed once an epoch from EpochTotals: a torchmetrics update per step cost ~0.5 ms on a
        # 2-core CPU (module setattrs per state), ~2% of a fashion_cnn step. No NaN check: on a GPU each
        # is a device-to-host sync, and a NaN loss still shows as a NaN epoch loss.
        for stage in STAGES:  # attributes, not a ModuleDict: a "train" key would shadow nn.Module.train
            setattr(self, f"{stage}_acc", MeanMetric(nan_strategy="disable"))
            setattr(self, f"{stage}_loss", MeanMetric(nan_strategy="disable"))
        self._totals: dict[str, EpochTotals] = {}
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
            hint = " (this optimizer has no fused kernel: add ~model.optimizer.fused)" if "fused" in str(err) else ""
            raise LitvisionError(f"invalid model.optimizer options: {err}{hint}") from None
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

    def __setattr__(self, name: str, value) -> None:
        # Lightning sets _current_fx_name before and after every hook it calls, ~40 times a training
        # step; nn.Module.__setattr__'s parameter, module and buffer checks cost ~1.5 us each time on a
        # 2-core CPU. The name is never a parameter, module or buffer, so a plain attribute is the same.
        if name == "_current_fx_name":
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def _shared_step(self, batch, stage: str) -> torch.Tensor:
        images, labels = batch
        logits = self(images)
        loss = self.criterion(logits, labels)
        totals = self._totals.get(stage)
        if totals is None:
            totals = self._totals[stage] = EpochTotals(loss.device)
        totals.add(loss.detach(), logits.detach().argmax(1) == labels)
        return loss

    def _log_epoch_metrics(self, stage: str) -> None:
        # The epoch's totals go into the metric objects once; a self.log call costs about 0.3 ms of
        # Python, so nothing is logged per step. Lightning computes the objects and resets them.
        loss, acc = getattr(self, f"{stage}_loss"), getattr(self, f"{stage}_acc")
        totals = self._totals.get(stage)  # reset when the stage's next epoch starts
        if totals is not None and totals.examples:
            loss.update(totals.loss_sum / totals.batches, weight=totals.batches)
            acc.update(totals.right.float() / totals.examples, weight=totals.examples)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=stage != "train")
        self.log(f"{stage}/acc", acc, on_step=False, on_epoch=True, prog_bar=True)

    def training_step(self, batch, batch_idx):
        loss = self._shared_step(batch, "train")
        if self._bar_wants_loss_at(batch_idx):  # a self.log call costs ~1 ms of Python: only when a bar redraws
            self.log("loss", loss, on_step=True, on_epoch=False, prog_bar=True, logger=False)
        return loss

    def _bar_wants_loss_at(self, batch_idx: int) -> bool:
        """Whether a progress bar redraws after this batch and shows the loss only if it is logged.

        This project's rich bar reads the loss from the step's output itself (``shows_step_loss``).
        """
        bar = self._trainer.progress_bar_callback if self._trainer is not None else None
        return bar is not None and not getattr(bar, "shows_step_loss", False) and redraws_after(bar, batch_idx)

    def validation_step(self, batch, batch_idx):
        self._shared_step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._shared_step(batch, "test")

    def predict_step(self, batch, batch_idx):
        return self(batch[0]).softmax(dim=1)

    # Each epoch counts from zero, also after one that was cut short (an interrupted fit, a failed batch).
    def on_train_epoch_start(self) -> None:
        self._totals.pop("train", None)

    def on_validation_epoch_start(self) -> None:
        self._totals.pop("val", None)

    def on_test_epoch_start(self) -> None:
        self._totals.pop("test", None)

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
