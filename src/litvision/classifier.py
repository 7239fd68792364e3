"""ImageClassifier: the one LightningModule that wraps any image-classification ``nn.Module``."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from functools import partial

import torch
from hydra.utils import get_class, instantiate
from lightning import LightningModule
from omegaconf import DictConfig, OmegaConf
from torch import nn
from torchmetrics import MaxMetric, MeanMetric

from litvision.schedules import is_one_cycle, is_plateau, planned_length, scheduler_parameters, take_plan, takes_length
from litvision.support.checkpoint import read_checkpoint
from litvision.support.errors import CheckpointError, LitvisionError
from litvision.support.options import LIGHTNING_SCHEDULER_KEYS, check_finetuning, check_model_options

log = logging.getLogger(__name__)

STAGES = ("train", "val", "test")
BUILT_FROM_CONFIG = ("net", "optimizer", "scheduler")  # given as configs, they are built here and saved as such
TRAIN_TOTALS_KEY = "litvision_train_epoch_totals"  # checkpoint key of the running epoch's train totals
# Checkpoint key of the net tensors a fine-tuned run took from ``init_from``: a resumed run freezes the same.
INIT_LOADED_KEY = "litvision_init_from_loaded"


def mirror_mean(forward: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    """The mean of ``forward``'s logits for the images and for their mirror images (flip test-time augmentation)."""
    return (forward(images) + forward(images.flip(-1))) / 2


class EpochTotals:
    """One stage's loss sum and right answers over an epoch, added up on the device: no host sync per step."""

    def __init__(self, device: torch.device):
        self.loss_sum = torch.zeros((), device=device)
        self.right = torch.zeros((), dtype=torch.long, device=device)
        self.batches = self.examples = 0

    def state_dict(self) -> dict:
        return {
            "loss_sum": float(self.loss_sum),
            "right": int(self.right),
            "batches": self.batches,
            "examples": self.examples,
        }

    @classmethod
    def from_state(cls, state: dict, device: torch.device) -> EpochTotals:
        totals = cls(device)
        totals.loss_sum.fill_(state["loss_sum"])
        totals.right.fill_(state["right"])
        totals.batches, totals.examples = state["batches"], state["examples"]
        return totals

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
    config the model was trained with: it travels in the checkpoint for evaluation and prediction;
    ``seed`` is the run's seed (drawn when the config's was null), kept so the run can be repeated.

    Fine-tuning: ``init_from`` (a checkpoint of another run) gives the net its weights when a fit starts
    afresh (not when it resumes): every tensor whose name and shape match; the rest, say an output layer
    for another number of classes, stay freshly initialised (:meth:`load_init_weights`). ``freeze_epochs``
    keeps the loaded parameters fixed for that many epochs (``requires_grad`` off; they stay in the
    optimizer, so they train from then on).

    The scheduler config may hold ``monitor`` (the metric ReduceLROnPlateau follows), which goes to
    Lightning's lr_scheduler dict instead of the constructor; an empty scheduler config means none.
    One-cycle and :func:`warmup_cosine` get the run's length here (``total_steps``); a fit resumed with
    another ``trainer.max_epochs`` re-plans it (:meth:`_replan_resumed_schedule`).

    ``tta_flip`` makes validation, test and prediction average the logits of each image and its mirror
    image (:meth:`eval_logits`). ``validation_step`` and ``test_step`` return the batch's logits, which
    the dashboard callbacks read in their ``on_*_batch_end`` hooks.
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
        tta_flip: bool = False,
        data_config: Mapping | None = None,
        seed: int | None = None,
        init_from: str | None = None,
        freeze_epochs: int = 0,
    ):
        super().__init__()
        if isinstance(scheduler, Mapping) and not scheduler:  # model/scheduler=none: an empty config
            scheduler = None
        net, optimizer, scheduler = (_plain(v) if isinstance(v, Mapping) else v for v in (net, optimizer, scheduler))
        data_config = _plain(data_config) if isinstance(data_config, Mapping) else data_config
        given = {"net": net, "optimizer": optimizer, "scheduler": scheduler}
        configs = {name: value for name, value in given.items() if isinstance(value, dict)}
        # Reads the constructor's arguments from this frame, now plain containers; ready objects are not saved.
        self.save_hyperparameters(ignore=[name for name in BUILT_FROM_CONFIG if name not in configs])
        scheduler_config = configs.get("scheduler", {})
        self.scheduler_monitor = scheduler_config.get("monitor")
        if "scheduler" in configs:
            configs["scheduler"] = {k: v for k, v in scheduler_config.items() if k not in LIGHTNING_SCHEDULER_KEYS}
        built = {name: _build(value, name) for name, value in configs.items()}
        self.net = built.get("net", net)
        self.optimizer_factory = built.get("optimizer", optimizer)
        self.scheduler_factory = built.get("scheduler", scheduler)
        if is_plateau(self.scheduler_factory) and self.scheduler_monitor is None:
            self.scheduler_monitor = "val/acc"
        check_model_options(
            self.net,
            self.optimizer_factory,
            self.scheduler_factory,
            label_smoothing=label_smoothing,
            scheduler_interval=scheduler_interval,
            monitor=self.scheduler_monitor,
            flags={"channels_last": channels_last, "compile": compile, "tta_flip": tta_flip},
        )
        check_finetuning(init_from, freeze_epochs)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.example_input_array = torch.zeros(1, *input_shape)
        # Per stage and epoch: the mean batch loss and the micro accuracy (the share of examples right),
        # as torchmetrics means that Lightning logs as objects (synced across ranks, reset each epoch).
        # They are fed once an epoch from EpochTotals, so a step adds two tensors and updates no metric.
        for stage in STAGES:  # attributes, not a ModuleDict: a "train" key would shadow nn.Module.train
            setattr(self, f"{stage}_acc", MeanMetric(nan_strategy="disable"))
            setattr(self, f"{stage}_loss", MeanMetric(nan_strategy="disable"))
        self._totals: dict[str, EpochTotals] = {}
        self._resumed_train_totals: dict | None = None
        self.val_acc_best = MaxMetric()
        self.val_acc_best.persistent(True)  # kept in checkpoints, so a resumed run keeps its best
        if channels_last:  # NHWC: faster convolutions with cuDNN/oneDNN, especially in mixed precision
            self.net.to(memory_format=torch.channels_last)
        self._compiled_forward = None
        # A resumed fit: the schedule state in the checkpoint and the one planned for this run, compared
        # once both are known (on_load_checkpoint and configure_optimizers, in either order).
        self._saved_schedules: list[dict] | None = None
        self._planned_schedules: list[dict] | None = None
        self._planned_length: tuple[int, str] | None = None
        self._replanned = False
        self._init_loaded: list[str] = []  # the net's tensors taken from init_from (what freeze_epochs freezes)

    def configure_model(self) -> None:
        if self.hparams.compile and self._compiled_forward is None:
            # The net's forward compiled, a function rather than a module: a compiled module assigned
            # here would be registered and add "_orig_mod." copies of every weight to the state dict.
            self._compiled_forward = torch.compile(self.net.forward)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.hparams.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return (self._compiled_forward or self.net)(images)

    def eval_logits(self, images: torch.Tensor) -> torch.Tensor:
        """The logits validation, test and prediction use: with ``tta_flip``, the mean of the logits of
        each image and of its mirror image (test-time augmentation: for a net trained on mirror images,
        ``data.augment.flip``, of data whose mirror images keep their class, like photos or clothes)."""
        return mirror_mean(self, images) if self.hparams.tta_flip else self(images)

    def _shared_step(self, batch, stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = batch
        logits = self(images) if stage == "train" else self.eval_logits(images)
        loss = self.criterion(logits, labels)
        totals = self._totals.get(stage)
        if totals is None:
            totals = self._totals[stage] = self._epoch_start_totals(stage, loss.device)
        logits = logits.detach()
        totals.add(loss.detach(), logits.argmax(1) == labels)
        return loss, logits

    def _epoch_start_totals(self, stage: str, device: torch.device) -> EpochTotals:
        if stage == "train" and self._resumed_train_totals is not None:
            saved, self._resumed_train_totals = self._resumed_train_totals, None
            return EpochTotals.from_state(saved, device)
        return EpochTotals(device)

    def training_step(self, batch, batch_idx):
        loss, _ = self._shared_step(batch, "train")
        # The step loss for the progress bar, at the trainer's logging cadence (trainer.log_every_n_steps),
        # like any step metric: a self.log call costs more Python than a small model's whole step.
        every = self.trainer.log_every_n_steps  # 0: no step logging
        if every and batch_idx % every == 0:
            self.log("loss", loss, on_step=True, on_epoch=False, prog_bar=True, logger=False)
        return loss

    def validation_step(self, batch, batch_idx):
        return self._shared_step(batch, "val")[1]

    def test_step(self, batch, batch_idx):
        return self._shared_step(batch, "test")[1]

    def predict_step(self, batch, batch_idx):
        return self.eval_logits(batch[0]).softmax(dim=1)

    # Each epoch counts from zero, also after one that was cut short (an interrupted fit, a failed batch).
    # An epoch resumed mid-way from a checkpoint gets no epoch-start hook: its first step takes up the
    # totals saved with the checkpoint instead (see _shared_step).
    def on_train_epoch_start(self) -> None:
        self._freeze_loaded(self.current_epoch < self.hparams.freeze_epochs)
        self._totals.pop("train", None)
        self._resumed_train_totals = None

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

    # -- fine-tuning -----------------------------------------------------------------------------
    def on_fit_start(self) -> None:
        if self.hparams.freeze_epochs and self.trainer.world_size > 1:
            # DDP registers its gradient hooks once, for the parameters that need gradients when it wraps the net.
            raise LitvisionError("model.freeze_epochs runs in one process only (not under DDP); set it to 0 there")
        # After the trainer restored a resumed fit (trainer.ckpt_path): its weights win, init_from is not read.
        if self.hparams.init_from and not self.trainer.ckpt_path:
            self.load_init_weights()

    def load_init_weights(self) -> list[str]:
        """Copy every tensor of ``init_from``'s net whose name and shape match into this net; return their names.

        Raises :class:`CheckpointError` for a checkpoint of another network class, or one that has no
        matching tensor at all. The tensors left out are logged.
        """
        path = self.hparams.init_from
        checkpoint = read_checkpoint(path)
        saved_target = checkpoint["hyper_parameters"]["net"].get("_target_")
        if not _same_class(saved_target, type(self.net)):
            raise CheckpointError(
                f"model.init_from={path} holds a {saved_target} network; this run builds "
                f"{type(self.net).__module__}.{type(self.net).__qualname__}: fine-tune with the same model=..."
            )
        saved = {k.removeprefix("net."): v for k, v in checkpoint["state_dict"].items() if k.startswith("net.")}
        own = self.net.state_dict()
        kept = {name: saved[name] for name, t in own.items() if name in saved and saved[name].shape == t.shape}
        if not any(name in kept for name, _ in self.net.named_parameters()):
            raise CheckpointError(f"model.init_from={path}: no weight of its network fits this one (names or shapes)")
        self.net.load_state_dict(kept, strict=False)
        fresh = [f"{n} ({_shape(saved.get(n))} -> {_shape(t)})" for n, t in own.items() if n not in kept]
        log.info("model.init_from=%s: %d of %d net tensors loaded", path, len(kept), len(own))
        if fresh:
            log.info("freshly initialised (no tensor of that name and shape in the checkpoint): %s", ", ".join(fresh))
        self._init_loaded = list(kept)
        return self._init_loaded

    def _freeze_loaded(self, frozen: bool) -> None:
        """requires_grad off (``frozen``) or on for the parameters taken from ``init_from``."""
        if not self._init_loaded or not self.hparams.freeze_epochs:
            return
        loaded = set(self._init_loaded)
        params = [p for name, p in self.net.named_parameters() if name in loaded]
        if all(p.requires_grad != frozen for p in params):
            return  # already so
        for param in params:
            param.requires_grad_(not frozen)
        trainable = sum(p.numel() for p in self.net.parameters() if p.requires_grad)
        if frozen:
            log.info(
                "epochs 0-%d: %d loaded parameter tensors frozen, %d parameters train",
                self.hparams.freeze_epochs - 1,
                len(params),
                trainable,
            )
        else:
            log.info(
                "epoch %d: the loaded parameters are unfrozen (%d parameters train)", self.current_epoch, trainable
            )

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        factory = self.scheduler_factory
        interval = "step" if is_one_cycle(factory) else self.hparams.scheduler_interval
        if takes_length(factory):
            total, per_epoch = self._run_length(interval)
            if is_one_cycle(factory):
                # torch divides by (pct_start * total_steps - 1): very short runs (debug, tests) need a floor.
                total = max(total, int(2 / factory.keywords.get("pct_start", 0.3)) + 1)
            lengths = {"total_steps": total}
            if "steps_per_epoch" in scheduler_parameters(factory) and not is_one_cycle(factory):
                lengths["steps_per_epoch"] = per_epoch
            factory = partial(factory, **lengths)
            self._planned_length = (total, interval)
        scheduler = factory(optimizer=optimizer)
        self._planned_schedules = [scheduler.state_dict()]
        self._replan_resumed_schedule()
        config = {"scheduler": scheduler, "interval": interval}
        if self.scheduler_monitor is not None:
            # Not strict: with check_val_every_n_epoch > 1 an epoch without validation has no val/ metric
            # (the name itself was checked against the logged metrics when the module was built).
            config.update(monitor=self.scheduler_monitor, strict=False)
        return {"optimizer": optimizer, "lr_scheduler": config}

    def _run_length(self, interval: str) -> tuple[int, int]:
        """(the run's length in scheduler steps, scheduler steps per epoch) for this trainer."""
        steps = self.trainer.estimated_stepping_batches  # also sets num_training_batches
        if not math.isfinite(steps):
            raise LitvisionError(
                "this schedule needs a finite run: set trainer.max_epochs (or trainer.max_steps) to a positive value"
            )
        batches = self.trainer.num_training_batches
        per_epoch = max(1, math.ceil(batches / self.trainer.accumulate_grad_batches)) if math.isfinite(batches) else 1
        if interval == "step":
            return max(int(steps), 1), per_epoch
        return max(math.ceil(steps / per_epoch), 1), 1

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self._init_loaded:
            checkpoint[INIT_LOADED_KEY] = list(self._init_loaded)
        # A checkpoint taken mid-epoch (Ctrl-C, SIGTERM) carries the epoch's running totals, so that the
        # resumed epoch's train/loss and train/acc count every batch, as an uninterrupted run's do.
        totals = self._totals.get("train")
        if totals is not None:
            checkpoint[TRAIN_TOTALS_KEY] = totals.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._init_loaded = list(checkpoint.get(INIT_LOADED_KEY) or self._init_loaded)
        self._resumed_train_totals = checkpoint.get(TRAIN_TOTALS_KEY)
        self._saved_schedules = checkpoint.get("lr_schedulers")
        self._replan_resumed_schedule()

    def on_train_start(self) -> None:
        # The checkpoint's schedule was restored by now; later loads (the test's best checkpoint) leave it alone.
        self._saved_schedules = self._planned_schedules = None
        if self._replanned:
            self._replanned = False
            # The restored optimizer holds the lr the old plan set last (the end of its anneal): set the new
            # plan's lr for this step by stepping onto it again (last_epoch is the step count step() advances).
            for config in self.trainer.lr_scheduler_configs:
                config.scheduler.last_epoch -= 1
                config.scheduler.step()

    def _replan_resumed_schedule(self) -> None:
        """Train longer (or shorter) from a checkpoint: the saved schedule goes on over the new length.

        Lightning loads the checkpoint's scheduler state after configure_optimizers, and that state holds
        the length planned by the first run: a one-cycle schedule would step past its end and raise. The
        saved state dict (still to be loaded) takes the length keys of this run's plan and keeps its step
        count, so a resume with the same trainer.max_epochs continues exactly as the uninterrupted run.
        """
        saved, planned = self._saved_schedules, self._planned_schedules
        if not saved or not planned:
            return
        self._saved_schedules = self._planned_schedules = None
        before = [planned_length(state) for state in saved]
        self._replanned = any([take_plan(old, new) for old, new in zip(saved, planned)])
        if self._replanned and self._planned_length:
            total, unit = self._planned_length
            was = f"{before[0]} {unit}s" if before[0] is not None else "another length"
            log.info(
                "resumed with trainer.max_epochs=%s: the learning-rate schedule is re-planned over %d %ss (was %s)",
                self.trainer.max_epochs,
                total,
                unit,
                was,
            )


def _same_class(target: str | None, cls: type) -> bool:
    """Whether the ``_target_`` of a saved net config names ``cls`` (also through a re-export)."""
    try:
        return get_class(target) is cls
    except Exception:  # an unknown or moved class: not this one
        return False


def _shape(tensor: torch.Tensor | None) -> str:
    return "none" if tensor is None else "x".join(map(str, tensor.shape)) or "scalar"


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
