"""Training augmentation on the device: the batch ops (crop, flip, cutout), torchvision's per-image policies
and random erasing, and MixUp/CutMix, which turn the labels into soft targets.

The order of one training batch (:class:`Augmentation`): the uint8 images through the policy
(:meth:`~Augmentation.pixels`), then, normalized, crop, flip, cutout and erasing
(:meth:`~Augmentation.normalized`), then MixUp or CutMix (:meth:`~Augmentation.mix`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

# data.augment's keys: the batch ops, the per-image ones, and the mixing of pairs of images
BATCH_KEYS = ("crop_padding", "flip", "cutout_size")
MIX_KEYS = ("mixup_alpha", "cutmix_alpha", "mix_switch_prob", "mix_prob")
AUGMENT_KEYS = (*BATCH_KEYS, "policy", "erasing", *MIX_KEYS)
POLICIES = {  # data.augment.policy: torchvision's automatic augmentation policies, at their papers' settings
    "randaugment": v2.RandAugment,
    "trivialaugment": v2.TrivialAugmentWide,
    "autoaugment": v2.AutoAugment,
}


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
    """Apply the batch ops to a normalized float batch."""
    images = random_crop(images, crop_padding)
    if flip:
        images = random_flip(images)
    return cutout(images, cutout_size)


def each_image(transform, images: torch.Tensor) -> torch.Tensor:
    """``transform`` applied to each image of the batch on its own.

    By hand because a v2 transform given a batch tensor draws its parameters once for the whole batch
    (one RandAugment operation, one erased box for every image); per image, each draws its own.
    """
    return torch.stack([transform(image) for image in images])


class Augmentation:
    """What ``data.augment`` configures, applied to a training batch in three places (see the module docstring).

    ``policy`` (randaugment, trivialaugment, autoaugment) transforms each uint8 image with its own draw;
    ``erasing`` is the probability of a random erased box (torchvision's RandomErasing: 2-33% of the
    area, zeros after normalization, i.e. the mean pixel) per image. ``mixup_alpha`` and
    ``cutmix_alpha`` (> 0 turns each on) mix each batch, with probability ``mix_prob``, by MixUp or
    CutMix (CutMix with probability ``mix_switch_prob`` where both are on): the labels become soft
    targets ``(N, num_classes)`` that sum to one, also for an unmixed batch, so a training batch has
    one format.
    """

    def __init__(
        self,
        num_classes: int,
        crop_padding: int = 0,
        flip: bool = False,
        cutout_size: int = 0,
        policy: str | None = None,
        erasing: float = 0.0,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        mix_switch_prob: float = 0.5,
        mix_prob: float = 1.0,
    ):
        self.num_classes = num_classes
        self.batch_ops = {"crop_padding": crop_padding, "flip": flip, "cutout_size": cutout_size}
        self.policy = POLICIES[policy]() if policy else None
        self.erasing = v2.RandomErasing(p=erasing, value=0) if erasing else None
        mixers = [v2.MixUp(alpha=mixup_alpha, num_classes=num_classes)] if mixup_alpha else []
        if cutmix_alpha:
            mixers.append(v2.CutMix(alpha=cutmix_alpha, num_classes=num_classes))
        if len(mixers) == 2:
            self.mixer = v2.RandomChoice(mixers, p=[1 - mix_switch_prob, mix_switch_prob])
        else:
            self.mixer = mixers[0] if mixers else None
        self.mix_prob = mix_prob

    @property
    def mixes(self) -> bool:
        """Whether training batches carry soft targets."""
        return self.mixer is not None

    def pixels(self, images: torch.Tensor) -> torch.Tensor:
        """The per-image policy on the uint8 batch (the policies' operations are defined on pixel values)."""
        return each_image(self.policy, images) if self.policy is not None else images

    def normalized(self, images: torch.Tensor) -> torch.Tensor:
        """Crop, flip, cutout and erasing on the normalized float batch."""
        images = augment_batch(images, **self.batch_ops)
        return each_image(self.erasing, images) if self.erasing is not None else images

    def mix(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """MixUp or CutMix of the normalized batch: (images, soft targets), or the batch as it is without mixing."""
        if self.mixer is None:
            return images, labels
        if self.mix_prob < 1 and float(torch.rand(())) >= self.mix_prob:
            return images, F.one_hot(labels, self.num_classes).to(images.dtype)
        return self.mixer(images, labels)
