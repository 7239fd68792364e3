"""Helpers the model families share."""

from __future__ import annotations

import torch
from torch import nn

from litvision.support.errors import LitvisionError

_LARGEST_SIZE_TRIED = 1024  # the search for an accepted size gives up here


class ModelConfigError(LitvisionError):
    """A model cannot be built for the data it was given (image too small, bad option)."""


def feature_shape(features: nn.Module, in_channels: int, image_size: int, model: str, min_size: int = 1) -> torch.Size:
    """Shape of ``features`` applied to one image, found by a dry forward at construction.

    Nets derive their flattened size from this instead of hard-coding ``16*5*5``, and an image too
    small for the net fails here, with the sizes it accepts, rather than deep inside ``forward``.
    ``min_size`` is a floor the net sets by choice (say, where its last stage would see a 1x1 map);
    the size the layers themselves need is found by trying, so the message is never wrong.
    """
    if image_size < min_size:
        raise ModelConfigError(_too_small(model, image_size, min_size))
    shape = _dry_forward(features, in_channels, image_size)
    if shape is None:
        raise ModelConfigError(_too_small(model, image_size, _smallest_accepted(features, in_channels, image_size)))
    return shape


def _too_small(model: str, image_size: int, smallest: int | None) -> str:
    if smallest is None:
        return f"{model} cannot take {image_size}x{image_size} images, nor any size up to {_LARGEST_SIZE_TRIED}"
    return (
        f"{model} needs images of at least {smallest}x{smallest} pixels, got {image_size}x{image_size} "
        f"(data.image_size={smallest} or more resizes the batches)"
    )


def _dry_forward(features: nn.Module, in_channels: int, image_size: int) -> torch.Size | None:
    """Output shape for one image, or None when the layers refuse that size (or shrink it to nothing)."""
    was_training = features.training
    features.eval()  # BatchNorm in train mode refuses a batch of one
    try:
        with torch.no_grad():
            out = features(torch.zeros(1, in_channels, image_size, image_size))
    except RuntimeError:
        return None
    finally:
        features.train(was_training)
    return out.shape[1:] if out.numel() > 0 else None


def _smallest_accepted(features: nn.Module, in_channels: int, refused: int) -> int | None:
    """Smallest side above ``refused`` that ``features`` accepts: doubling, then bisection.

    Conv/pool stacks accept every size from some minimum on, so the accepted sizes form one interval.
    """
    accepted = max(refused, 1) * 2
    while _dry_forward(features, in_channels, accepted) is None:
        refused, accepted = accepted, accepted * 2
        if accepted > _LARGEST_SIZE_TRIED:
            return None
    while accepted - refused > 1:
        middle = (accepted + refused) // 2
        if _dry_forward(features, in_channels, middle) is None:
            refused = middle
        else:
            accepted = middle
    return accepted


def make_activation(name: str) -> nn.Module:
    choices = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "gelu": nn.GELU}
    if name not in choices:
        raise ModelConfigError(f"unknown activation {name!r}; choose one of {sorted(choices)}")
    return choices[name]()


def scaled_width(channels: int, width: float) -> int:
    """A channel count times a width multiplier, at least 1."""
    return max(1, round(channels * width))
