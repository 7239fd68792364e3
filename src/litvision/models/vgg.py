"""VGG (Simonyan & Zisserman, 2015, "Very deep convolutional networks for large-scale image
recognition"), depths 11/13/16/19, as pytorch-cifar adapts it to 32-pixel images.

The paper's configurations A, B, D and E: stages of 3x3 convolutions (64, 128, 256, 512, 512 channels)
each ending in a 2x2 max-pool, here with BatchNorm after every convolution (torchvision's
``Conv2dNormActivation``). Five halvings leave a 1x1 map of a 32-pixel image, so the three 4096-wide
fully-connected layers become global average pooling and one linear layer (pytorch-cifar). The pools
round up (``ceil_mode``) so a 28-pixel image goes 28-14-7-4-2-1 instead of vanishing at the fifth.
``width`` multiplies every channel count (0.25 gives a CPU-sized VGG).
"""

from __future__ import annotations

from torch import nn
from torchvision.ops import Conv2dNormActivation

from litvision.models.common import ModelConfigError, feature_shape, scaled_width

# Convolutions per stage for each depth (configurations A, B, D, E of the paper).
_CONVS_PER_STAGE = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}
_STAGE_CHANNELS = (64, 128, 256, 512, 512)


class VGG(nn.Module):
    def __init__(
        self,
        in_channels: int = 3,
        image_size: int = 32,
        num_classes: int = 10,
        depth: int = 16,
        width: float = 1.0,
        dropout: float = 0.0,
    ):
        super().__init__()
        if depth not in _CONVS_PER_STAGE:
            raise ModelConfigError(f"vgg: depth must be one of {sorted(_CONVS_PER_STAGE)}, got {depth}")
        if width <= 0:
            raise ModelConfigError(f"vgg: width must be positive, got {width}")
        layers: list[nn.Module] = []
        channels = in_channels
        for convs, stage_channels in zip(_CONVS_PER_STAGE[depth], _STAGE_CHANNELS):
            out_channels = scaled_width(stage_channels, width)
            for _ in range(convs):
                layers.append(Conv2dNormActivation(channels, out_channels, kernel_size=3))
                channels = out_channels
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
        self.features = nn.Sequential(*layers)
        feature_shape(self.features, in_channels, image_size, f"vgg{depth}")
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels, num_classes)
        )

    def forward(self, x):
        return self.classifier(self.features(x))
