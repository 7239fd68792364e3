"""A small BatchNorm CNN, the default model: fast on a CPU, above the Fashion-MNIST tutorial's accuracy.

Each stage is ``(conv 3x3 -> BatchNorm -> ReLU) x convs_per_stage -> max-pool 2``, widths per
stage from config, then global average pooling, dropout and a linear classifier (Network-in-Network
style global pooling keeps the parameter count independent of the image size).
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from litvision.models.common import feature_shape


class SmallCNN(nn.Module):
    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        num_classes: int = 10,
        widths: Sequence[int] = (32, 64, 128),
        convs_per_stage: int = 1,
        dropout: float = 0.1,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for width in widths:
            for _ in range(convs_per_stage):
                layers += [
                    nn.Conv2d(channels, width, 3, padding=1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                ]
                channels = width
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        feature_shape(self.features, in_channels, image_size, "small_cnn", min_size=2 ** len(widths))
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels, num_classes)
        )

    def forward(self, x):
        return self.classifier(self.features(x))
