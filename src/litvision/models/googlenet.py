"""GoogLeNet (Szegedy et al., 2015, "Going deeper with convolutions"): Inception v1 blocks, for small images.

The nine Inception blocks (3a-3b, 4a-4e, 5a-5b) with the paper's branch widths, reusing torchvision's
``Inception`` block and its conv + BatchNorm + ReLU unit (BatchNorm, as in torchvision and d2l's
training, is not in the 2015 paper). torchvision's block has a 3x3 where the paper has the 5x5
branch (pytorch/vision#906, kept there for its pretrained weights); it is put back to 5x5 here.
For 28-32 pixel images the 7x7 stride-2 stem and its max-pool become one 3x3 stride-1 convolution,
as in pytorch-cifar; the remaining three stride-2 max-pools take 32 pixels to 16, 8 and 4 for the
three groups of blocks, then global average pooling, dropout 0.4 and the classifier (the auxiliary
classifiers are left out, as torchvision does after training). ``width`` multiplies every channel
count (0.25 gives a CPU-sized GoogLeNet).
"""

from __future__ import annotations

from torch import nn
from torchvision.models.googlenet import BasicConv2d
from torchvision.models.googlenet import Inception as TorchvisionInception

from litvision.models.common import ModelConfigError, feature_shape, scaled_width

# Branch widths per block: 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool projection (Table 1 of the paper).
_INCEPTION_GROUPS = (
    ((64, 96, 128, 16, 32, 32), (128, 128, 192, 32, 96, 64)),
    (
        (192, 96, 208, 16, 48, 64),
        (160, 112, 224, 24, 64, 64),
        (128, 128, 256, 24, 64, 64),
        (112, 144, 288, 32, 64, 64),
        (256, 160, 320, 32, 128, 128),
    ),
    ((256, 160, 320, 32, 128, 128), (384, 192, 384, 48, 128, 128)),
)


class Inception(TorchvisionInception):
    """torchvision's Inception block with the paper's 5x5 convolution in the third branch."""

    def __init__(
        self, in_channels: int, ch1x1: int, ch3x3red: int, ch3x3: int, ch5x5red: int, ch5x5: int, pool_proj: int
    ):
        super().__init__(in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj)
        self.branch3[1] = BasicConv2d(ch5x5red, ch5x5, kernel_size=5, padding=2)
        self.out_channels = ch1x1 + ch3x3 + ch5x5 + pool_proj


class GoogLeNet(nn.Module):
    def __init__(
        self,
        in_channels: int = 3,
        image_size: int = 32,
        num_classes: int = 10,
        dropout: float = 0.4,
        width: float = 1.0,
    ):
        super().__init__()
        if width <= 0:
            raise ModelConfigError(f"googlenet: width must be positive, got {width}")
        stem, channels = scaled_width(64, width), scaled_width(192, width)
        # Stem: the paper's 1x1 (64) and 3x3 (192) convolutions follow a 3x3 stride-1 one, not the 7x7 stride-2.
        layers: list[nn.Module] = [
            BasicConv2d(in_channels, stem, kernel_size=3, padding=1),
            BasicConv2d(stem, stem, kernel_size=1),
            BasicConv2d(stem, channels, kernel_size=3, padding=1),
        ]
        for group in _INCEPTION_GROUPS:
            layers.append(nn.MaxPool2d(3, stride=2, padding=1))
            for widths in group:
                block = Inception(channels, *(scaled_width(w, width) for w in widths))
                layers.append(block)
                channels = block.out_channels
        self.features = nn.Sequential(*layers)
        feature_shape(self.features, in_channels, image_size, "googlenet")
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels, num_classes)
        )

    def forward(self, x):
        return self.classifier(self.features(x))
