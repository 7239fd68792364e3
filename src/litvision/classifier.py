"""ImageClassifier: the one LightningModule that wraps any image-classification ``nn.Module``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial

import torch
from hydra.utils import instantiate
from lightning import LightningModule
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torchmetrics import MaxMetric, MeanMetric

from litvision.errors import LitvisionError

STAGES = ("train", "val", "test")
BUILT_FROM_CONFIG = ("net", "optimizer", "scheduler")  # given as configs, they are built here and saved as such


class EpochTotals:
    """One stage's loss sum and right answers over an epoch, added up on the device: no host sync per step."""

    def __init__(self, device: torch.device):
        self.loss_sum = torch.zeros((), device=device)
        self.right = torch.zeros((), dtype=torch.long, device=device)
        self.batches = self.examples = 0

    def add(self, loss: torch.Tensor, correct: torch.Tensor) -> None:
        self.loss_sum.add_(loss.float())
        self.right.add_(correct.sum())
        self.batches += 1
        self.examples += correct.numel()


class ImageClassifier(LightningModule):
    """Cross-entropy training of ``net``; per stage, the epoch's mean loss and accuracy as torchmetrics means.

    ``net``, ``optimizer`` and ``scheduler`` come as Hydra configs (what ``conf/model`` gives: the
    optimizer and scheduler with ``_partial_: true``) or as ready objects (a module and two partials,
    from Python). Configs are built here and saved with the other constructor arguments by
    ``save_hyperparameters``, as plain containers, so a checkpoint rebuilds the same model
    (``ImageClassifier(**hparams)``) and loads with ``weights_only``. ``data_config`` is the data
    config the model was trained with: it travels in the checkpoint for evaluation and prediction.

    ``validation_step`` and ``test_step`` return the batch's logits, which the dashboard callbacks
    read in their ``on_*_batch_end`` hooks.
    """

    def __init__(
        self,
        net: nn.Module | Mapping,
        optimizer: Callable[..., torch.optim.Optimizer] | Mapping,
        scheduler: Callable | Mapping | None = None,
        num_classes: int = 10,
        input_shape: Sequence[int] = (1, 28, 28),
        label_smoothing: float = 0.0,
        scheduler_interval: str = "epoch",
        channels_last: bool = False,
        compile: bool = False,
        data_config: Mapping | None = None,
    ):
        super().__init__()
        given = {"net": net, "optimizer": optimizer, "scheduler": scheduler}
        configs = {name: _plain(value) for name, value in given.items() if isinstance(value, Mapping)}
        objects = [name for name in BUILT_FROM_CONFIG if name not in configs]
        self.save_hyperparameters(ignore=objects + ["data_config"])
        self.hparams.update(configs)
        if data_config is not None:
            self.hparams["data_config"] = _plain(data_config)
        built = {name: _build(value, name) for name, value in configs.items()}
        self.net = built.get("net", net)
        self.optimizer_factory = built.get("optimizer", optimizer)
        self.scheduler_factory = built.get("scheduler", scheduler)
        _check_options(self.net, self.optimizer_factory, self.scheduler_factory, label_smoothing, scheduler_interval)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.example_input_array = torch.zeros(1, *input_shape)
        # Per stage and epoch: the mean batch loss and the micro accuracy (the share of examples right),
        # as torchmetrics means that Lightning logs as objects (synced across ranks, reset each epoch).
        # They are fed once an epoch from EpochTotals, so a step adds two tensors and updates no metric.
        for stage in STAGES:  # attributes, not a ModuleDict: a "train" key would shadow nn.Module.train
            setattr(self, f"{stage}_acc", MeanMetric(nan_strategy="disable"))
            setattr(self, f"{stage}_loss", MeanMetric(nan_strategy="disable"))
        self._totals: dict[str, EpochTotals] = {}
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)  # kept in checkpoints, so a resumed run keeps its best
        if channels_last:  # NHWC: faster convolutions with cuDNN/oneDNN, especially in mixed precision
            self.net.to(memory_format=torch.channels_last)
        self._compiled_net = None

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

    def _shared_step(self, batch, stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = batch
        logits = self(images)
        loss = self.criterion(logits, labels)
        totals = self._totals.get(stage)
        if totals is None:
            totals = self._totals[stage] = EpochTotals(loss.device)
        logits = logits.detach()
        totals.add(loss.detach(), logits.argmax(1) == labels)
        return loss, logits

    def training_step(self, batch, batch_idx):
        loss, _ = self._shared_step(batch, "train")
        self.log("loss", loss, on_step=True, on_epoch=False, prog_bar=True, logger=False)
        return loss

    def validation_step(self, batch, batch_idx):
        return self._shared_step(batch, "val")[1]

    def test_step(self, batch, batch_idx):
        return self._shared_step(batch, "test")[1]

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

    def _log_epoch_metrics(self, stage: str) -> None:
        loss, acc = getattr(self, f"{stage}_loss"), getattr(self, f"{stage}_acc")
        totals = self._totals.get(stage)
        if totals is not None and totals.examples:
            loss.update(totals.loss_sum / totals.batches, weight=totals.batches)
            acc.update(totals.right.float() / totals.examples, weight=totals.examples)
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=stage != "train")
        self.log(f"{stage}/acc", acc, on_step=False, on_epoch=True, prog_bar=True)

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        factory = self.scheduler_factory
        one_cycle = _is_one_cycle(factory)
        if one_cycle:
            # torch divides by (pct_start * total_steps - 1): very short runs (debug, tests) need a floor.
            shortest = int(2 / factory.keywords.get("pct_start", 0.3)) + 1
            factory = partial(factory, total_steps=max(int(self.trainer.estimated_stepping_batches), shortest))
        scheduler = factory(optimizer=optimizer)
        interval = "step" if one_cycle else self.hparams.scheduler_interval
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": interval}}


def _plain(config: Mapping) -> dict:
    """A resolved plain-dict copy of a config: what a weights-only checkpoint can hold."""
    return OmegaConf.to_container(config, resolve=True) if isinstance(config, DictConfig) else dict(config)


def _build(config: dict, name: str):
    try:
        return instantiate(config, _convert_="all")
    except Exception as err:  # Hydra wraps the constructor's error; the cause is what the user can fix
        cause = err.__cause__ or err
        if isinstance(cause, LitvisionError):
            raise cause from None
        raise LitvisionError(
            f"invalid model.{name} config: {type(cause).__name__}: {str(cause).splitlines()[0]}"
        ) from None


def _is_one_cycle(factory) -> bool:
    return getattr(factory, "func", None) is torch.optim.lr_scheduler.OneCycleLR


def _check_options(
    net: nn.Module, optimizer: Callable, scheduler: Callable | None, label_smoothing: float, scheduler_interval: str
) -> None:
    """Bad options fail now, in one line, not after the data has loaded."""
    if not 0.0 <= label_smoothing <= 1.0:
        raise LitvisionError(f"model.label_smoothing must be in [0, 1] (got {label_smoothing})")
    if scheduler_interval not in ("epoch", "step"):
        raise LitvisionError(f"model.scheduler_interval must be 'epoch' or 'step' (got {scheduler_interval!r})")
    try:
        throwaway = optimizer(params=net.parameters())
    except (TypeError, ValueError) as err:
        hint = " (this optimizer has no fused kernel: add ~model.optimizer.fused)" if "fused" in str(err) else ""
        raise LitvisionError(f"invalid model.optimizer options: {err}{hint}") from None
    if scheduler is None:
        return
    try:
        scheduler(optimizer=throwaway, **({"total_steps": 100} if _is_one_cycle(scheduler) else {}))
    except (TypeError, ValueError, KeyError) as err:
        raise LitvisionError(f"invalid model.scheduler options: {err}") from None
