"""The Trainer's option checks that fail before the data loads, in one line. (The data modules check their
own options, litvision.data.options; ImageClassifier its own, litvision.model_options.)

Lightning checks most Trainer arguments when the Trainer is built (precision, accelerator, devices,
max_epochs, limit_*_batches: litvision.support.instantiate.build turns its errors into one line); these are the
common ones it accepts and then fails on mid-run (check_val_every_n_epoch=0 divides by zero at the
first validation) or quietly misreads (min_epochs=-3).
"""

from __future__ import annotations

from collections.abc import Mapping

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
_TRAINER_CHOICES = {
    "deterministic": (True, False, "warn", None),
    "benchmark": (True, False, None),
    "gradient_clip_algorithm": ("norm", "value", None),
}


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
