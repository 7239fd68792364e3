"""Learning-rate schedules: which ones are planned over the run's length, a warm-up cosine in closed form,
and re-planning a saved schedule when a resumed run is longer or shorter than the first (:class:`ReplanOnResume`)."""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable, Mapping
from functools import partial

import torch
from lightning import Callback, Trainer

from litvision.support.errors import LitvisionError

log = logging.getLogger(__name__)

# The keys of the scheduler state dicts that hold the run's length (OneCycleLR's; WarmupCosine's, under
# LambdaLR's lr_lambdas): a resumed run that is longer (or shorter) than planned takes them from the new
# plan and keeps the rest (the step count, the base lrs).
PLAN_KEYS = ("total_steps", "_schedule_phases")


def scheduler_parameters(factory) -> Mapping[str, inspect.Parameter]:
    func = getattr(factory, "func", factory)
    try:
        return inspect.signature(func).parameters
    except (TypeError, ValueError):
        return {}


def is_one_cycle(factory) -> bool:
    return getattr(factory, "func", None) is torch.optim.lr_scheduler.OneCycleLR


def is_plateau(factory) -> bool:
    return getattr(factory, "func", None) is torch.optim.lr_scheduler.ReduceLROnPlateau


def takes_length(factory) -> bool:
    """Schedules planned over the whole run (one-cycle, warmup_cosine): scheduler_for_run gives them total_steps."""
    return "total_steps" in scheduler_parameters(factory)


def scheduler_for_run(factory: Callable, optimizer: torch.optim.Optimizer, trainer: Trainer, interval: str):
    """(the scheduler ``factory`` builds for ``optimizer``, the interval it steps at) for this trainer's run.

    One-cycle always steps per batch; schedules planned over the whole run (:func:`takes_length`) get
    its length in scheduler steps (``total_steps``) and, where they take it, ``steps_per_epoch``.
    """
    one_cycle, planned = is_one_cycle(factory), takes_length(factory)
    interval = "step" if one_cycle else interval
    extra = {}
    scales = [group.get("lr_scale", 1.0) for group in optimizer.param_groups]
    if one_cycle and any(scale != 1.0 for scale in scales):
        # One peak per group (model.backbone_lr_scale): OneCycleLR would set every group to the one max_lr.
        extra["max_lr"] = [factory.keywords["max_lr"] * scale for scale in scales]
    if planned:
        total, per_epoch = run_length(trainer, interval)
        if one_cycle:
            # torch divides by (pct_start * total_steps - 1): very short runs (debug, tests) need a floor.
            total = max(total, int(2 / factory.keywords.get("pct_start", 0.3)) + 1)
        extra["total_steps"] = total
        if "steps_per_epoch" in scheduler_parameters(factory) and not one_cycle:
            extra["steps_per_epoch"] = per_epoch
    factory = partial(factory, **extra) if extra else factory
    return factory(optimizer=optimizer), interval


def run_length(trainer: Trainer, interval: str) -> tuple[int, int]:
    """(the run's length in scheduler steps, scheduler steps per epoch) for ``trainer``."""
    steps = trainer.estimated_stepping_batches  # also sets num_training_batches
    if not math.isfinite(steps):
        raise LitvisionError(
            "this schedule needs a finite run: set trainer.max_epochs (or trainer.max_steps) to a positive value"
        )
    batches = trainer.num_training_batches
    per_epoch = max(1, math.ceil(batches / trainer.accumulate_grad_batches)) if math.isfinite(batches) else 1
    if interval == "step":
        return max(int(steps), 1), per_epoch
    return max(math.ceil(steps / per_epoch), 1), 1


class ReplanOnResume(Callback):
    """Train longer (or shorter) from a checkpoint: the saved schedule goes on over the new length.

    Lightning loads the checkpoint's scheduler state after ``configure_optimizers``, and that state holds
    the length planned by the first run: a one-cycle schedule would step past its end and raise. Between
    the two (``on_fit_start``) the saved state dicts, still to be loaded, take the length keys of this
    run's plan and keep their step counts, so a resume with the same ``trainer.max_epochs`` continues
    exactly as the uninterrupted run. :class:`~litvision.classifier.ImageClassifier` adds this callback
    for the schedules planned over the run.
    """

    def __init__(self) -> None:
        self._saved: list[dict] | None = None
        self._replanned = False

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict) -> None:
        # The same dict Lightning restores the schedulers from later in the fit: changed here in place.
        self._saved = checkpoint.get("lr_schedulers")

    def on_fit_start(self, trainer, pl_module) -> None:
        saved, self._saved = self._saved, None
        planned = [config.scheduler.state_dict() for config in trainer.lr_scheduler_configs]
        if not saved or not planned:
            return
        before, after = planned_length(saved[0]), planned_length(planned[0])
        self._replanned = any([take_plan(old, new) for old, new in zip(saved, planned)])
        if self._replanned:
            was = f"{before} steps" if before is not None else "another length"
            log.info(
                "resumed with trainer.max_epochs=%s: the learning-rate schedule is re-planned over %s steps (was %s)",
                trainer.max_epochs,
                after,
                was,
            )

    def on_train_start(self, trainer, pl_module) -> None:
        if not self._replanned:
            return
        self._replanned = False
        # The restored optimizer holds the lr the old plan set last (the end of its anneal): set the new
        # plan's lr for this step by stepping onto it again (last_epoch is the step count step() advances).
        for config in trainer.lr_scheduler_configs:
            config.scheduler.last_epoch -= 1
            config.scheduler.step()


def take_plan(saved: dict, planned: dict) -> bool:
    """Copy the length keys of ``planned`` into ``saved`` (also LambdaLR's multipliers); True if one differed."""
    changed = False
    for key in PLAN_KEYS:
        if key in saved and key in planned and saved[key] != planned[key]:
            saved[key] = planned[key]
            changed = True
    for old, new in zip(saved.get("lr_lambdas") or [], planned.get("lr_lambdas") or []):
        if isinstance(old, dict) and isinstance(new, dict):  # a multiplier object's attributes (WarmupCosine)
            changed = take_plan(old, new) or changed
    return changed


def planned_length(state: dict) -> int | None:
    """The length a scheduler state dict was planned for, in scheduler steps, where it says so."""
    if "total_steps" in state:
        return int(state["total_steps"])
    multipliers = state.get("lr_lambdas") or [None]
    if isinstance(multipliers[0], dict) and "total_steps" in multipliers[0]:
        return int(multipliers[0]["total_steps"])
    return None


class WarmupCosine:
    """The lr multiplier at scheduler step ``step``: linear warm-up, then a half cosine to ``final``.

    From ``start`` to 1 over ``warmup_steps``, then from 1 to ``final`` over the rest of ``total_steps``,
    and ``final`` after that. A closed form of the step, so LambdaLR saves it as its attributes and a
    resumed run can be re-planned by changing ``total_steps``.
    """

    def __init__(self, total_steps: int, warmup_steps: int, start: float, final: float):
        self.total_steps, self.warmup_steps, self.start, self.final = total_steps, warmup_steps, start, final

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.start + (1.0 - self.start) * step / self.warmup_steps
        progress = min((step - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1), 1.0)
        return self.final + (1.0 - self.final) * 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_cosine(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    steps_per_epoch: int = 1,
    warmup_epochs: float = 0,
    warmup_start_factor: float = 0.1,
    eta_min: float = 0.0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup_epochs``, then cosine annealing to ``eta_min`` at ``total_steps``.

    The same learning rates as torch's LinearLR then CosineAnnealingLR chained by SequentialLR, as one
    LambdaLR in closed form (:class:`WarmupCosine`): CosineAnnealingLR computes each lr from the last
    one, so a schedule that reached eta_min could not be re-planned over a longer run. ImageClassifier
    gives ``total_steps`` (the run's length in scheduler steps) and ``steps_per_epoch`` (1 when the
    schedule steps once an epoch).
    """
    if warmup_epochs < 0:
        raise ValueError(f"warmup_epochs must be >= 0 (got {warmup_epochs})")
    if not 0 < warmup_start_factor <= 1:
        raise ValueError(f"warmup_start_factor must be in (0, 1] (got {warmup_start_factor})")
    if eta_min < 0:
        raise ValueError(f"eta_min must be >= 0 (got {eta_min})")
    # At least one cosine step, so a run shorter than the warm-up still ends annealed.
    warmup = max(min(round(warmup_epochs * steps_per_epoch), total_steps - 1), 0)
    multipliers = [
        WarmupCosine(total_steps, warmup, warmup_start_factor, eta_min / group["lr"] if group["lr"] else 0.0)
        for group in optimizer.param_groups
    ]
    return torch.optim.lr_scheduler.LambdaLR(optimizer, multipliers)
