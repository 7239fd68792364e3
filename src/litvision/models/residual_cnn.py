"""The small residual network of the CIFAR-10 tutorial (after He et al., 2016).

conv 32@3x3 + BN + ReLU -> max-pool 3 stride 1 pad 1 (smooths without shrinking) -> residual block
32->64 stride 2 with a 1x1 conv + BN shortcut -> residual block 64->64 -> global average pool -> linear.
The residual blocks are torchvision's ResNet ``BasicBlock``. Global pooling makes it size-agnostic:
the parameter count does not depend on the image size.
"""

from __future__ import annotations

from torch import nn
from torchvision.models.resnet import BasicBlock, conv1x1

from litvision.models.common import feature_shape


class ResidualCNN(nn.Module):
    def __init__(
        self, in_channels: int = 3, image_size: int = 32, num_classes: int = 10, widths: tuple[int, int] = (32, 64)
    ):
        super().__init__()
        stem, wide = widths
        shortcut = nn.Sequential(conv1x1(stem, wide, stride=2), nn.BatchNorm2d(wide))
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, stem, 3, padding=1, bias=False),
            nn.BatchNorm2d(stem),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=1, padding=1),
            BasicBlock(stem, wide, stride=2, downsample=shortcut),
            BasicBlock(wide, wide),
        )
        channels = feature_shape(self.features, in_channels, image_size, "residual_cnn")[0]
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))
