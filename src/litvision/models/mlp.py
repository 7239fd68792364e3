"""Fully-connected ReLU network, as in the MNIST MLP tutorial (784-512-256-128-64-classes)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


class MLP(nn.Sequential):
    """Flatten, then ``Linear -> ReLU (-> Dropout)`` per hidden width, then a linear classifier.

    The input width is ``in_channels * image_size**2``, so the same config runs on 1x28x28 and 3x32x32.
    """

    def __init__(
        self,
        in_channels: int,
        image_size: int,
        num_classes: int,
        hidden: Sequence[int] = (512, 256, 128, 64),
        dropout: float = 0.0,
    ):
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_channels * image_size * image_size
        for next_width in hidden:
            layers += [nn.Linear(width, next_width), nn.ReLU(inplace=True)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = next_width
        layers.append(nn.Linear(width, num_classes))
        super().__init__(*layers)
