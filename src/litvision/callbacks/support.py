"""What the dashboard callbacks share: the TensorBoard writer, class names, images for display, logits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning import LightningModule, Trainer
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


def displayable(trainer: Trainer, images: torch.Tensor) -> np.ndarray:
    """Normalized (N, C, H, W) batch -> (N, H, W, C) floats in [0, 1] on the CPU, via the datamodule's denormalize."""
    denormalize = getattr(trainer.datamodule, "denormalize", None)
    images = images.detach().float()
    if denormalize is not None:
        images = denormalize(images)
    return images.clamp(0.0, 1.0).permute(0, 2, 3, 1).cpu().numpy()


def add_picture(writer, tag: str, picture: np.ndarray, step: int) -> None:
    """Log an (H, W, 3) uint8 picture (litvision.callbacks.render) as a TensorBoard image."""
    writer.add_image(tag, picture, global_step=step, dataformats="HWC")


class LogitsCapture:
    """The logits of each evaluation batch, read with a forward hook on the LightningModule.

    The model's step code stays as it is and no second forward pass is spent: the hook keeps what
    ``self(images)`` returned inside ``validation_step``/``test_step``. Under DDP the module is also
    called by the wrapper's redirection and then returns the step's output (None), which is ignored.
    """

    def __init__(self) -> None:
        self._handle = None
        self._last: torch.Tensor | None = None

    @property
    def attached(self) -> bool:
        return self._handle is not None

    def attach(self, module: LightningModule) -> None:
        self.detach()
        self._handle = module.register_forward_hook(self._keep)

    def detach(self) -> None:
        if self._handle is not None:
            self._handle.remove()
        self._handle, self._last = None, None

    def _keep(self, module: Any, args: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor) and output.ndim == 2:
            self._last = output.detach()

    def take(self, labels: torch.Tensor) -> torch.Tensor | None:
        """This batch's logits, if the last forward call was on it."""
        logits, self._last = self._last, None
        if logits is None or logits.shape[0] != labels.shape[0]:
            return None
        return logits
