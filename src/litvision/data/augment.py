"""Batch augmentation as tensor ops on the training device: random per sample, vectorized over the batch."""

from __future__ import annotations

import torch
import torch.nn.functional as F

AUGMENT_KEYS = ("crop_padding", "flip", "cutout_size")  # augment_batch's options, the keys of data.augment


def random_crop(images: torch.Tensor, padding: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Pad by ``padding`` (reflect) and cut a randomly placed crop of the original size from each sample."""
    if padding <= 0:
        return images
    batch, _, height, width = images.shape
    padded = F.pad(images, (padding,) * 4, mode="reflect")
    offsets = torch.randint(0, 2 * padding + 1, (2, batch, 1), device=images.device, generator=generator)
    rows = (offsets[0] + torch.arange(height, device=images.device)).view(batch, 1, height, 1)
    cols = (offsets[1] + torch.arange(width, device=images.device)).view(batch, 1, 1, width)
    batch_index = torch.arange(batch, device=images.device).view(batch, 1, 1, 1)
    channel_index = torch.arange(images.shape[1], device=images.device).view(1, -1, 1, 1)
    return padded[batch_index, channel_index, rows, cols]


def random_flip(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror a random half of the samples left-right."""
    flip = torch.rand(images.shape[0], device=images.device, generator=generator) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(3), images)


def cutout(images: torch.Tensor, size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Zero a ``size``x``size`` square at a random centre of each sample (DeVries & Taylor, 2017)."""
    if size <= 0:
        return images
    batch, _, height, width = images.shape
    centre = torch.rand(2, batch, 1, device=images.device, generator=generator)
    top = (centre[0] * height).long() - size // 2
    left = (centre[1] * width).long() - size // 2
    rows = torch.arange(height, device=images.device).view(1, height)
    cols = torch.arange(width, device=images.device).view(1, width)
    inside_rows = (rows >= top) & (rows < top + size)  # (B, H)
    inside_cols = (cols >= left) & (cols < left + size)  # (B, W)
    hole = inside_rows.view(batch, 1, height, 1) & inside_cols.view(batch, 1, 1, width)
    return images.masked_fill(hole, 0.0)


def augment_batch(images: torch.Tensor, crop_padding: int = 0, flip: bool = False, cutout_size: int = 0):
    """Apply the configured augmentations to a normalized float batch."""
    images = random_crop(images, crop_padding)
    if flip:
        images = random_flip(images)
    return cutout(images, cutout_size)
