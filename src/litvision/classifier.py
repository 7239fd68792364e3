"""ImageClassifier: the one LightningModule that wraps any image-classification ``nn.Module``."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence

import torch
from lightning import LightningModule
from lightning.pytorch.utilities.parsing import AttributeDict
from torch import nn
from torchmetrics import MaxMetric, MeanMetric

from litvision.metrics import REQUIRED, accuracy_only, build_metrics
from litvision.model_options import LIGHTNING_SCHEDULER_KEYS, check_finetuning, check_model_options
from litvision.models.heads import backbone_parameters
from litvision.models.pretrained import checkpoint_weights_follow
from litvision.schedules import ReplanOnResume, is_plateau, scheduler_for_run, takes_length
from litvision.support.errors import LitvisionError
from litvision.support.file_config import escape_interpolation
from litvision.support.instantiate import build, plain

STAGES = ("train", "val", "test")


def mirror_mean(forward: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    """The mean of ``forward``'s logits for the images and for their mirror images (flip test-time augmentation)."""
    return (forward(images) + forward(images.flip(-1))) / 2


def from_saved_config(model_config: Mapping) -> ImageClassifier:
    """The ImageClassifier a checkpoint's saved model config describes, for evaluation and prediction.

    Unknown keys are one error; ``init_from``, ``freeze_epochs`` and ``backbone_lr_scale`` are dropped (the
    checkpoint's own weights follow, and a saved path to other weights is never opened).
    """
    accepted = set(inspect.signature(ImageClassifier.__init__).parameters) - {"self"}
    unknown = sorted(set(model_config) - accepted)
    if unknown:
        raise LitvisionError(f"the checkpoint's model config has keys ImageClassifier does not take: {unknown[:5]}")
    with checkpoint_weights_follow():  # a pretrained backbone's file is not needed: the checkpoint's weights follow
        # The fine-tuning options are training's: the saved weights already hold their outcome.
        return ImageClassifier(**{**model_config, "init_from": None, "freeze_epochs": 0, "backbone_lr_scale": 1.0})


class ImageClassifier(LightningModule):
    """Cross-entropy training of ``net``; per stage, the epoch's mean loss and the metrics of ``metrics``.

    ``net``, ``optimizer``, ``scheduler`` and ``metrics`` are Hydra configs (what ``conf/model`` gives:
    the optimizer and scheduler with ``_partial_: true``, the metrics a ``{name: torchmetrics config}``
    mapping). They are built here and saved with the other constructor arguments by
    ``save_hyperparameters``, as plain containers, so a checkpoint rebuilds the same model
    (``ImageClassifier(**hparams)``) and loads with ``weights_only``. ``data_config`` is the data config
    the model was trained with: it travels in the checkpoint for evaluation and prediction; ``seed`` is
    the run's seed (drawn when the config's was null), kept so the run can be repeated.

    Each stage logs ``<stage>/loss`` and ``<stage>/<metric>``, reduced over the epoch (and the DDP ranks)
    by torchmetrics; the training metrics are saved in checkpoints, so an epoch resumed mid-way counts
    every batch. ``val/acc_best`` is the best ``val/acc`` so far. ``validation_step`` and ``test_step``
    return the batch's logits, which the dashboard callbacks read in their ``on_*_batch_end`` hooks.

    The scheduler config may hold ``monitor`` (the metric ReduceLROnPlateau follows), which goes to
    Lightning's lr_scheduler dict instead of the constructor; an empty scheduler config means none.
    ``init_from``, ``freeze_epochs`` and ``freeze_batchnorm`` are checked here and carried out by the
    ``finetuning`` callback (:class:`~litvision.callbacks.finetuning.FineTuning`, conf/callbacks/finetuning.yaml,
    which reads them from the model config); re-planning a schedule on a longer resume by
    :class:`~litvision.schedules.ReplanOnResume`, which :meth:`configure_callbacks` adds.
    ``backbone_lr_scale`` gives every parameter outside the net's head that share of the learning rate
    (discriminative learning rates: a second optimizer group, scheduled alike). ``tta_flip`` makes
    validation, test and prediction average the logits of each image and its mirror image.
    """

    def __init__(
        self,
        net: Mapping,
        optimizer: Mapping,
        scheduler: Mapping | None = None,
        metrics: Mapping | None = None,
        num_classes: int = 10,
        input_shape: Sequence[int] = (1, 28, 28),
        label_smoothing: float = 0.0,
        scheduler_interval: str = "epoch",
        channels_last: bool = False,
        compile: bool = False,
        tta_flip: bool = False,
        data_config: Mapping | None = None,
        seed: int | None = None,
        init_from: str | None = None,
        freeze_epochs: int = 0,
        freeze_batchnorm: bool = True,
        backbone_lr_scale: float = 1.0,
    ):
        super().__init__()
        for name, value in (("net", net), ("optimizer", optimizer)):
            if not isinstance(value, Mapping):
                raise LitvisionError(
                    f"model.{name} must be a config (a mapping with _target_), got {type(value).__name__}"
                )
        metrics = metrics if metrics is not None else accuracy_only(num_classes)
        net, optimizer, scheduler, metrics, data_config = (
            plain(value) if isinstance(value, Mapping) else value
            for value in (net, optimizer, scheduler, metrics, data_config)
        )
        # Reads the constructor's arguments from this frame, now plain containers: what weights-only loading accepts.
        self.save_hyperparameters()
        scheduler = dict(scheduler or {})  # model/scheduler=none: an empty config
        self.scheduler_monitor = scheduler.get("monitor")
        scheduler = {k: v for k, v in scheduler.items() if k not in LIGHTNING_SCHEDULER_KEYS}
        self.net = build(net, "model.net")
        if not isinstance(self.net, nn.Module):
            raise LitvisionError(f"model.net builds a {type(self.net).__name__}, not a torch nn.Module")
        self.optimizer_factory = build(optimizer, "model.optimizer")
        self.scheduler_factory = build(scheduler, "model.scheduler") if scheduler else None
        if is_plateau(self.scheduler_factory) and self.scheduler_monitor is None:
            self.scheduler_monitor = f"val/{REQUIRED}"
        check_model_options(
            self.net,
            self.optimizer_factory,
            self.scheduler_factory,
            label_smoothing=label_smoothing,
            scheduler_interval=scheduler_interval,
            monitor=self.scheduler_monitor,
            flags={
                "channels_last": channels_last,
                "compile": compile,
                "tta_flip": tta_flip,
                "freeze_batchnorm": freeze_batchnorm,
            },
            metric_names=[name for name, config in metrics.items() if config],
        )
        check_finetuning(
            init_from, freeze_epochs, backbone_lr_scale, pretrained=bool(getattr(self.net, "pretrained", 0))
        )
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.example_input_array = torch.zeros(1, *input_shape)
        collection = build_metrics(metrics, num_classes)
        # Attributes, not a ModuleDict keyed by stage: a "train" key would shadow nn.Module.train.
        for stage in STAGES:
            setattr(self, f"{stage}_metrics", collection.clone(prefix=f"{stage}/"))
            setattr(self, f"{stage}_loss", MeanMetric(nan_strategy="disable"))  # no NaN check: a host sync per step
        self.train_metrics.persistent(True)  # in checkpoints: a mid-epoch resume goes on counting the epoch
        self.train_loss.persistent(True)
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)  # kept in checkpoints, so a resumed run keeps its best
        if channels_last:  # NHWC: faster convolutions with cuDNN/oneDNN, especially in mixed precision
            self.net.to(memory_format=torch.channels_last)
        self._compiled_forward = None

    @property
    def hparams_initial(self) -> AttributeDict:
        """What Lightning hands the loggers: the hyperparameters with every ``${`` escaped. The CSV and
        TensorBoard loggers write hparams.yaml through OmegaConf, which would take a class named ``x${y``
        for an interpolation (and fail); the checkpoint keeps the literal names (``self.hparams``)."""
        return AttributeDict(escape_interpolation(dict(super().hparams_initial)))

    def configure_model(self) -> None:
        if self.hparams.compile and self._compiled_forward is None:
            # The net's forward compiled, a function rather than a module: a compiled module assigned
            # here would be registered and add "_orig_mod." copies of every weight to the state dict.
            self._compiled_forward = torch.compile(self.net.forward)

    def configure_callbacks(self) -> list:
        # The module's own scheduler, planned over the run's length, must be re-planned when a resume changes
        # it: part of the schedule, not an option (fine-tuning is a callback of conf/callbacks: finetuning).
        callbacks = [ReplanOnResume()] if takes_length(self.scheduler_factory) else []
        # Called again by trainer.test after trainer.fit: the ones the fit attached stay (no "override" notice).
        attached = {type(callback) for callback in self.trainer.callbacks}
        return [callback for callback in callbacks if type(callback) not in attached]

    def on_fit_start(self) -> None:
        hparams = self.hparams
        carried = any(
            getattr(callback, "init_from", None) == hparams.init_from
            and getattr(callback, "freeze_epochs", None) == hparams.freeze_epochs
            for callback in self.trainer.callbacks
        )
        if (hparams.init_from or hparams.freeze_epochs) and not carried:  # never a silently ignored option
            raise LitvisionError(
                "model.init_from and model.freeze_epochs are carried out by the finetuning callback, which this "
                "run does not have: leave callbacks.finetuning in (conf/callbacks/finetuning.yaml)"
            )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.hparams.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return (self._compiled_forward or self.net)(images)

    def eval_logits(self, images: torch.Tensor) -> torch.Tensor:
        """The logits validation, test and prediction use: with ``tta_flip``, the mean of the logits of
        each image and of its mirror image (test-time augmentation: for a net trained on mirror images,
        ``data.augment.flip``, of data whose mirror images keep their class, like photos or clothes)."""
        return mirror_mean(self, images) if self.hparams.tta_flip else self(images)

    def _step(self, batch, stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = batch
        logits = self(images) if stage == "train" else self.eval_logits(images)
        # Soft targets (N, C) from MixUp/CutMix: cross-entropy on the probabilities (label smoothing still
        # applies), the metrics against each image's dominant label.
        loss = self.criterion(logits, labels)
        labels = labels.argmax(dim=1) if labels.ndim == 2 else labels
        logits = logits.detach()
        getattr(self, f"{stage}_metrics").update(logits, labels)
        # The batch's mean loss once per example (a view, no copy): the epoch's loss is the mean over its examples.
        # (MeanMetric's weight= would do it, but nan_strategy="disable" replaces the weights with ones.)
        getattr(self, f"{stage}_loss").update(loss.detach().expand(labels.shape[0]))
        return loss, logits

    def training_step(self, batch, batch_idx):
        loss, _ = self._step(batch, "train")
        # The step loss for the progress bar, at the trainer's logging cadence (trainer.log_every_n_steps),
        # like any step metric: a self.log call costs more Python than a small model's whole step.
        every = self.trainer.log_every_n_steps  # 0: no step logging
        if every and batch_idx % every == 0:
            self.log("loss", loss, on_step=True, on_epoch=False, prog_bar=True, logger=False)
        return loss

    def validation_step(self, batch, batch_idx):
        return self._step(batch, "val")[1]

    def test_step(self, batch, batch_idx):
        return self._step(batch, "test")[1]

    def predict_step(self, batch, batch_idx):
        return self.eval_logits(batch[0]).softmax(dim=1)

    # Each epoch counts from zero, also after one that was cut short (an interrupted fit, a failed batch).
    # An epoch resumed mid-way gets no epoch-start hook: it goes on with the metric states of its checkpoint.
    def on_train_epoch_start(self) -> None:
        self._reset("train")

    def on_validation_epoch_start(self) -> None:
        self._reset("val")

    def on_test_epoch_start(self) -> None:
        self._reset("test")

    def on_train_epoch_end(self) -> None:
        self._log_epoch("train")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch("val")
        if self.trainer.sanity_checking:
            return
        self.val_acc_best(self.val_metrics[REQUIRED].compute())
        self.log(f"val/{REQUIRED}_best", self.val_acc_best.compute(), sync_dist=True, prog_bar=True)

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def _reset(self, stage: str) -> None:
        getattr(self, f"{stage}_metrics").reset()
        getattr(self, f"{stage}_loss").reset()

    def _log_epoch(self, stage: str) -> None:
        self.log(f"{stage}/loss", getattr(self, f"{stage}_loss"), prog_bar=stage != "train")
        self.log_dict(getattr(self, f"{stage}_metrics"), prog_bar=True)

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=self._parameter_groups())
        if self.scheduler_factory is None:
            return optimizer
        scheduler, interval = scheduler_for_run(
            self.scheduler_factory, optimizer, self.trainer, self.hparams.scheduler_interval
        )
        config = {"scheduler": scheduler, "interval": interval}
        if self.scheduler_monitor is not None:
            # Not strict: with check_val_every_n_epoch > 1 an epoch without validation has no val/ metric
            # (the name itself was checked against the logged metrics when the module was built).
            config.update(monitor=self.scheduler_monitor, strict=False)
        return {"optimizer": optimizer, "lr_scheduler": config}

    def _parameter_groups(self):
        scale = self.hparams.backbone_lr_scale
        if scale == 1:
            return self.parameters()
        backbone, head = backbone_parameters(self.net)
        lr = self.optimizer_factory.keywords["lr"]
        # lr_scale travels with the group (and its checkpoint): one-cycle scales its peak by it (schedules.py).
        return [{"params": head, "lr_scale": 1.0}, {"params": backbone, "lr": lr * scale, "lr_scale": scale}]
