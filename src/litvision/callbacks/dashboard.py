"""What the dashboard callbacks share: the TensorBoard writer, class names, images for display, the step's logits."""

from __future__ import annotations

import itertools
import unicodedata
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning import Trainer
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_info


def has_tensorboard(trainer: Trainer) -> bool:
    """Same answer on every rank, so collective work (gathers) is decided alike everywhere."""
    return any(isinstance(logger, TensorBoardLogger) for logger in trainer.loggers)


def tensorboard_writer(trainer: Trainer):
    """The run's ``SummaryWriter`` on rank 0; None on other ranks and when no TensorBoard logger is set."""
    if not trainer.is_global_zero:
        return None
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            return logger.experiment
    return None


def announce_off(name: str, trainer: Trainer) -> None:
    """One line (rank 0) saying a TensorBoard-only callback steps aside, instead of failing or warning per epoch."""
    if not has_tensorboard(trainer):
        rank_zero_info(f"{name}: no TensorBoard logger in this run, so its images are not drawn")


def output_dir(dirpath: str | None, trainer: Trainer) -> Path:
    """Where PNG files go: the configured folder, else the trainer's root dir (the run dir in train.py)."""
    return Path(dirpath) if dirpath else Path(trainer.default_root_dir)


def class_names(trainer: Trainer, num_classes: int) -> list[str]:
    """The datamodule's class names, or the class numbers when it has none (or not as many as the logits)."""
    names = list(getattr(trainer.datamodule, "class_names", None) or [])
    return names if len(names) == num_classes else [str(index) for index in range(num_classes)]


def class_keys(names: Sequence[str]) -> list[str]:
    """A logging key per class (``val_class_acc/<key>``), readable and unique: the name as it is, any script.

    Only what would change the key's meaning is replaced by ``_``: ``/`` (it nests TensorBoard tags),
    ``\\``, whitespace and invisible characters (control, format, unassigned). Names that still meet on
    one key (``a b`` and ``a_b``) are told apart by the class index (``a_b#2``), except a name that is
    its key already: it keeps it. No two classes ever share a key, so no value is a mean of two classes.
    """
    bases = [_readable(str(name)) for name in names]
    counts = Counter(bases)
    keys: list[str | None] = [base if counts[base] == 1 else None for base in bases]
    taken = {key for key in keys if key is not None}
    for index, (name, base) in enumerate(zip(names, bases)):
        if keys[index] is None and str(name) == base and base not in taken:
            keys[index] = base  # the first class named exactly like the key keeps it
            taken.add(base)
    for index, base in enumerate(bases):
        if keys[index] is None:
            key = f"{base}#{index}"
            while key in taken:  # a class may be named "a_b#1" itself
                key = f"{key}#{index}"
            keys[index] = key
            taken.add(key)
    return keys  # type: ignore[return-value]


def _readable(name: str) -> str:
    """The name with each run of ``/``, ``\\``, whitespace or invisible characters turned into one ``_``."""
    kept = (
        "_" if replaced else "".join(run)
        for replaced, run in itertools.groupby(unicodedata.normalize("NFC", name), key=_replaced)
    )
    return "".join(kept) or "_"


def _replaced(character: str) -> bool:
    return character in "/\\" or character.isspace() or unicodedata.category(character)[0] in "CZ"


def displayable(trainer: Trainer, images: torch.Tensor) -> np.ndarray:
    """Normalized (N, C, H, W) batch -> (N, H, W, C) floats in [0, 1] on the CPU, via the datamodule's denormalize."""
    denormalize = getattr(trainer.datamodule, "denormalize", None)
    images = images.detach().float()
    if denormalize is not None:
        images = denormalize(images)
    return images.clamp(0.0, 1.0).permute(0, 2, 3, 1).cpu().numpy()


def add_picture(writer, tag: str, picture: np.ndarray, step: int) -> None:
    """Log an (H, W, 3) uint8 picture (litvision.support.render) as a TensorBoard image."""
    writer.add_image(tag, picture, global_step=step, dataformats="HWC")


def due_this_epoch(trainer: Trainer, every_n_epochs: int) -> bool:
    """The drawing rule of the image callbacks: every ``every_n_epochs`` epochs from the first, and the last."""
    epoch = trainer.current_epoch
    return epoch % every_n_epochs == 0 or epoch + 1 == trainer.max_epochs


def step_logits(outputs: Any, labels: torch.Tensor) -> torch.Tensor | None:
    """The logits a ``validation_step``/``test_step`` returned for this batch (None if it returned something else)."""
    if isinstance(outputs, torch.Tensor) and outputs.ndim == 2 and outputs.shape[0] == labels.shape[0]:
        return outputs
    return None
