"""ResNet (He et al., 2016, "Deep residual learning for image recognition"), for small images.

torchvision's ResNet with its BasicBlock/Bottleneck is reused as is; only the stem changes. For
28-32 pixel images the ImageNet stem (7x7 stride-2 conv + max-pool) throws away 3/4 of the
resolution at once, so by default it becomes a 3x3 stride-1 conv without pooling, as in
pytorch-cifar and d2l. ``stem="imagenet"`` keeps the original.
"""

from __future__ import annotations

from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.models.resnet import ResNet as TorchvisionResNet

from litvision.models.common import ModelConfigError, feature_shape

_LAYOUTS = {18: (BasicBlock, [2, 2, 2, 2]), 34: (BasicBlock, [3, 4, 6, 3]), 50: (Bottleneck, [3, 4, 6, 3])}


class ResNet(TorchvisionResNet):
    def __init__(
        self, in_channels: int = 3, image_size: int = 32, num_classes: int = 10, depth: int = 18, stem: str = "small"
    ):
        if depth not in _LAYOUTS:
            raise ModelConfigError(f"resnet: depth must be one of {sorted(_LAYOUTS)}, got {depth}")
        if stem not in ("small", "imagenet"):
            raise ModelConfigError(f"resnet: stem must be 'small' or 'imagenet', got {stem!r}")
        block, layers = _LAYOUTS[depth]
        super().__init__(block, layers, num_classes=num_classes)
        if stem == "small":
            self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        # Stride-2 stages halve the side three times (five with the ImageNet stem). Padding keeps
        # smaller images from failing, but below 8 (32) pixels the last stages see 1x1 maps that are
        # mostly padding, so those sizes are refused as a choice.
        feature_shape(
            nn.Sequential(self.conv1, self.maxpool),
            in_channels,
            image_size,
            f"resnet{depth}",
            min_size=8 if stem == "small" else 32,
        )
