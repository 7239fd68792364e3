"""Network in Network (Lin, Chen & Yan, 2014), the paper's CIFAR-10 model.

Three "mlpconv" blocks, each a spatial convolution followed by two 1x1 convolutions (the per-pixel
MLP): 192@5x5-160-96, 192@5x5-192-192, 192@3x3-192-classes, with 3x3 stride-2 pooling (max, then
average) and dropout between blocks, and global average pooling of the last block's class maps
instead of fully-connected layers. Changes: BatchNorm after every convolution (``batch_norm=false``
gives the original, which needs a careful learning rate), the class maps are left linear (no final
ReLU) so logits can be negative, and pools are padded so 28 and 32 pixels go to 14/16 and 7/8.
``width`` multiplies the hidden channel counts.
"""

from __future__ import annotations

from torch import nn
from torchvision.ops import Conv2dNormActivation

from litvision.models.common import feature_shape, scaled_width

# (spatial kernel, channels of the three convolutions); None stands for the number of classes.
_BLOCKS = ((5, (192, 160, 96)), (5, (192, 192, 192)), (3, (192, 192, None)))


class NiN(nn.Module):
    def __init__(
        self,
        in_channels: int = 3,
        image_size: int = 32,
        num_classes: int = 10,
        width: float = 1.0,
        dropout: float = 0.5,
        batch_norm: bool = True,
    ):
        super().__init__()
        norm_layer = nn.BatchNorm2d if batch_norm else None
        pools = (nn.MaxPool2d(3, stride=2, padding=1), nn.AvgPool2d(3, stride=2, padding=1), None)
        layers: list[nn.Module] = []
        channels = in_channels
        for (kernel, widths), pool in zip(_BLOCKS, pools):
            for index, block_width in enumerate(widths):
                if block_width is None:  # the class maps: no normalisation or ReLU
                    layers.append(nn.Conv2d(channels, num_classes, 1))
                    break
                out_channels = scaled_width(block_width, width)
                layers.append(
                    Conv2dNormActivation(
                        channels, out_channels, kernel_size=kernel if index == 0 else 1, norm_layer=norm_layer
                    )
                )
                channels = out_channels
            if pool is not None:
                layers += [pool, nn.Dropout(dropout)]
        self.features = nn.Sequential(*layers)
        feature_shape(self.features, in_channels, image_size, "nin")
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x):
        return self.classifier(self.features(x))
