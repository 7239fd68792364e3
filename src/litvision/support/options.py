"""Option checks that fail before the data loads, in one line: the model's options and the Trainer's.

Model options are checked when ImageClassifier is built (a throwaway optimizer and scheduler are made
from the configs, so torch's own checks run too).

Lightning checks most Trainer arguments when the Trainer is built (precision, accelerator, devices,
max_epochs, limit_*_batches: litvision.support.instantiate.build turns its errors into one line); these are the
common ones it accepts and then fails on mid-run (check_val_every_n_epoch=0 divides by zero at the
first validation) or quietly misreads (min_epochs=-3).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from torch import nn

from litvision.schedules import is_one_cycle, is_plateau, scheduler_parameters, takes_length
from litvision.support.errors import LitvisionError

# name: (lowest value, integer only, null allowed)
_TRAINER_RANGES = {
    "min_epochs": (0, True, True),
    "check_val_every_n_epoch": (1, True, True),
    "log_every_n_steps": (0, True, False),  # 0: no step logging
    "accumulate_grad_batches": (1, True, False),
    "num_sanity_val_steps": (-1, True, False),  # -1: the whole validation set
    "gradient_clip_val": (0, False, True),
}
_TRAINER_CHOICES = {"deterministic": (True, False, "warn", None), "benchmark": (True, False, None)}


def check_trainer_options(trainer: Mapping) -> None:
    """Raise a one-line LitvisionError for a Trainer option out of its range or set of values."""
    for name, (lowest, integer, nullable) in _TRAINER_RANGES.items():
        if name not in trainer:
            continue
        value = trainer[name]
        if value is None and nullable:
            continue
        number = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)
        if not number or value < lowest:
            kind = "an integer" if integer else "a number"
            null = " or null" if nullable else ""
            raise LitvisionError(f"trainer.{name} must be {kind} >= {lowest}{null} (got {value!r})")
    for name, choices in _TRAINER_CHOICES.items():
        if name in trainer and not any(trainer[name] is choice or trainer[name] == choice for choice in choices):
            allowed = ", ".join("null" if c is None else str(c).lower() for c in choices)
            raise LitvisionError(f"trainer.{name} must be one of {allowed} (got {trainer[name]!r})")


# Scheduler config keys for Lightning's lr_scheduler dict rather than the scheduler's constructor.
LIGHTNING_SCHEDULER_KEYS = ("monitor",)

# Metrics logged once an epoch that ReduceLROnPlateau can follow (`monitor`).
EPOCH_METRICS = tuple(f"{stage}/{name}" for stage in ("train", "val") for name in ("acc", "loss")) + ("val/acc_best",)

# Scheduler options with a range torch checks late (at a later step) or not at all: (lowest, integer).
_SCHEDULER_RANGES = {"step_size": (1, True), "patience": (0, True), "cooldown": (0, True), "gamma": (0, False)}


def check_model_options(
    net: nn.Module,
    optimizer: Callable,
    scheduler: Callable | None,
    label_smoothing: float,
    scheduler_interval: str,
    monitor: str | None = None,
    flags: Mapping[str, object] | None = None,
) -> None:
    """Bad options fail now, in one line, not after the data has loaded."""
    if not isinstance(label_smoothing, (int, float)) or not 0.0 <= label_smoothing <= 1.0:
        raise LitvisionError(f"model.label_smoothing must be in [0, 1] (got {label_smoothing})")
    if scheduler_interval not in ("epoch", "step"):
        raise LitvisionError(f"model.scheduler_interval must be 'epoch' or 'step' (got {scheduler_interval!r})")
    for name, value in (flags or {}).items():
        if not isinstance(value, bool):
            raise LitvisionError(f"model.{name} must be true or false (got {value!r})")
    try:
        throwaway = optimizer(params=net.parameters())
    except (TypeError, ValueError, RuntimeError) as err:
        hint = " (this optimizer has no fused kernel: add ~model.optimizer.fused)" if "fused" in str(err) else ""
        raise LitvisionError(f"invalid model.optimizer options: {err}{hint}") from None
    if scheduler is None:
        return
    keywords = getattr(scheduler, "keywords", {})
    for name, (lowest, integer) in _SCHEDULER_RANGES.items():
        value = keywords.get(name)
        if value is None:
            continue
        wrong_type = isinstance(value, bool) or not isinstance(value, int if integer else (int, float))
        if wrong_type or value < lowest or (name == "gamma" and value == 0):
            kind = f"an integer >= {lowest}" if integer else "a number > 0"
            raise LitvisionError(f"model.scheduler.{name} must be {kind} (got {value!r})")
    if is_plateau(scheduler):
        if monitor not in EPOCH_METRICS:
            raise LitvisionError(f"model.scheduler.monitor must be one of {', '.join(EPOCH_METRICS)} (got {monitor!r})")
        if scheduler_interval != "epoch":
            raise LitvisionError("model.scheduler_interval must be 'epoch' for ReduceLROnPlateau (it follows a metric)")
    elif monitor is not None:
        raise LitvisionError("model.scheduler.monitor is for ReduceLROnPlateau only (model/scheduler=plateau)")
    lengths = {"total_steps": 100} if takes_length(scheduler) else {}
    if "steps_per_epoch" in scheduler_parameters(scheduler) and not is_one_cycle(scheduler):
        lengths["steps_per_epoch"] = 10
    try:
        scheduler(optimizer=throwaway, **lengths)
    except (TypeError, ValueError, KeyError) as err:
        raise LitvisionError(f"invalid model.scheduler options: {err}") from None


def check_finetuning(init_from, freeze_epochs) -> None:
    if init_from is not None and not isinstance(init_from, str):
        raise LitvisionError(f"model.init_from must be a checkpoint path or null (got {init_from!r})")
    if isinstance(freeze_epochs, bool) or not isinstance(freeze_epochs, int) or freeze_epochs < 0:
        raise LitvisionError(f"model.freeze_epochs must be an integer >= 0 (got {freeze_epochs!r})")
    if freeze_epochs and not init_from:
        raise LitvisionError(
            "model.freeze_epochs freezes the weights loaded by model.init_from: set model.init_from too"
        )
