"""The one normalization: uint8 images (N, C, H, W) to the floats the networks see, and back.

``(x / 255 - mean) / std`` per channel, computed as ``(x - shift) * scale`` with ``shift = 255 * mean``
and ``scale = 1 / (255 * std)``: one subtraction and one multiplication, which the training batches
do in place. The data module's batches, prediction and the exported model all run this module, so
they turn the same pixels into the same floats, bit for bit.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def per_channel(values: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """float32 ``(1, C, 1, 1)``: broadcasts over a batch of images."""
    return torch.as_tensor(values, dtype=torch.float32).flatten().view(1, -1, 1, 1)


class Normalization(nn.Module):
    """Per-channel ``(x / 255 - mean) / std`` for images holding 0..255 (uint8 or float), and its inverse.

    An ``nn.Module`` so its buffers follow ``.to(device)`` and are traced into an exported model.
    ``mean`` and ``std`` are per channel, as the data config gives them (``std`` > 0).
    """

    def __init__(self, mean: Sequence[float] | torch.Tensor, std: Sequence[float] | torch.Tensor):
        super().__init__()
        mean, std = per_channel(mean), per_channel(std)
        if mean.shape != std.shape:
            raise ValueError(f"mean and std need one value per channel each (got {mean.numel()} and {std.numel()})")
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.register_buffer("shift", mean * 255.0)
        self.register_buffer("scale", 1.0 / (std * 255.0))

    def stats(self) -> dict[str, list[float]]:
        """``{"mean": [...], "std": [...]}`` as plain floats: what configs, checkpoints and JSON files hold."""
        return {"mean": self.mean.flatten().tolist(), "std": self.std.flatten().tolist()}

    def on(self, device: torch.device) -> Normalization:
        """This module with its buffers on ``device``, moved once rather than copied for every batch."""
        return self if self.shift.device == device else self.to(device)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """A new float32 tensor; ``images`` is left as it was."""
        return (images.to(torch.float32) - self.shift) * self.scale

    def normalize_(self, images: torch.Tensor) -> torch.Tensor:
        """The same in place, for a float32 tensor the caller owns (no new tensor per batch)."""
        return images.sub_(self.shift).mul_(self.scale)

    def denormalize(self, images: torch.Tensor) -> torch.Tensor:
        """Normalized floats back to pixel values in [0, 1] (``x / 255``), e.g. for drawing them."""
        return images * self.std + self.mean
