"""ImageClassifier's option checks, run when it is built: bad options fail in one line, before the data loads
(a throwaway optimizer and scheduler are made from the configs, so torch's own checks run too)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from torch import nn

from litvision.schedules import is_one_cycle, is_plateau, scheduler_parameters, takes_length
from litvision.support.errors import LitvisionError

# Scheduler config keys for Lightning's lr_scheduler dict rather than the scheduler's constructor.
LIGHTNING_SCHEDULER_KEYS = ("monitor",)


def epoch_metrics(metric_names: Sequence[str] = ("acc",)) -> tuple[str, ...]:
    """The metrics logged once an epoch that ReduceLROnPlateau can follow (``monitor``): each stage's loss and
    every configured metric (``model.metrics``), and ``val/acc_best``."""
    names = ("loss", *metric_names)
    return tuple(f"{stage}/{name}" for stage in ("train", "val") for name in names) + ("val/acc_best",)


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
    metric_names: Sequence[str] = ("acc",),
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
        followed = epoch_metrics(metric_names)
        if monitor not in followed:
            raise LitvisionError(f"model.scheduler.monitor must be one of {', '.join(followed)} (got {monitor!r})")
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


def check_finetuning(init_from, freeze_epochs, backbone_lr_scale, pretrained: bool) -> None:
    """``pretrained``: the net loaded pretrained weights itself (a backbone's ``model.net.weights``)."""
    if init_from is not None and not isinstance(init_from, str):
        raise LitvisionError(f"model.init_from must be a checkpoint path or null (got {init_from!r})")
    if isinstance(freeze_epochs, bool) or not isinstance(freeze_epochs, int) or freeze_epochs < 0:
        raise LitvisionError(f"model.freeze_epochs must be an integer >= 0 (got {freeze_epochs!r})")
    number = isinstance(backbone_lr_scale, (int, float)) and not isinstance(backbone_lr_scale, bool)
    if not number or not 0 < backbone_lr_scale <= 1:
        raise LitvisionError(f"model.backbone_lr_scale must be a number in (0, 1] (got {backbone_lr_scale!r})")
    if (freeze_epochs or backbone_lr_scale != 1) and not (init_from or pretrained):
        what = "model.freeze_epochs freezes" if freeze_epochs else "model.backbone_lr_scale scales"
        raise LitvisionError(
            f"{what} pretrained weights: set model.init_from=<ckpt>, or pretrained model.net.weights for a backbone"
        )
