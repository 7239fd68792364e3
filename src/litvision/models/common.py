"""Helpers the model families share."""

from __future__ import annotations

import torch
from torch import nn

from litvision.errors import LitvisionError


class ModelConfigError(LitvisionError):
    """A model cannot be built for the data it was given (image too small, bad option)."""


def feature_shape(features: nn.Module, in_channels: int, image_size: int, model: str, min_size: int) -> torch.Size:
    """Shape of ``features`` applied to one image, found by a dry forward at construction.

    Nets derive their flattened size from this instead of hard-coding ``16*5*5``, and an image too
    small for the net fails here, with the sizes it accepts, rather than deep inside ``forward``.
    """
    if image_size < min_size:
        raise ModelConfigError(f"{model} needs images of at least {min_size}x{min_size} pixels; got {image_size}")
    was_training = features.training
    features.eval()  # BatchNorm in train mode refuses a batch of one
    try:
        with torch.no_grad():
            out = features(torch.zeros(1, in_channels, image_size, image_size))
    except RuntimeError as err:
        raise ModelConfigError(
            f"{model} cannot take {in_channels}x{image_size}x{image_size} images ({str(err).splitlines()[0]}); "
            f"it needs images of at least {min_size}x{min_size}"
        ) from None
    finally:
        features.train(was_training)
    return out.shape[1:]


def make_activation(name: str) -> nn.Module:
    choices = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "gelu": nn.GELU}
    if name not in choices:
        raise ModelConfigError(f"unknown activation {name!r}; choose one of {sorted(choices)}")
    return choices[name]()
