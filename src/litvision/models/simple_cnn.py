"""The CNN of the CIFAR-10 tutorial: two padded conv 3x3 + max-pool stages and a 512-wide hidden layer.

conv 16@3x3 pad 1 -> ReLU -> max-pool 2 -> conv 32@3x3 pad 1 -> ReLU -> max-pool 2 -> fc 512 -> ReLU
-> fc classes (the ReLU keeps the two fully-connected layers from collapsing into one linear map;
``dropout`` adds the tutorial's optional dropout before each of them). Built for 3x32x32 (32x8x8
features); on 1x28x28 the flattened size (32x7x7) comes from a dry forward.
"""

from __future__ import annotations

from torch import nn

from litvision.models.common import feature_shape


class SimpleCNN(nn.Module):
    def __init__(
        self,
        in_channels: int = 3,
        image_size: int = 32,
        num_classes: int = 10,
        widths: tuple[int, int] = (16, 32),
        hidden: int = 512,
        dropout: float = 0.0,
    ):
        super().__init__()
        first, second = widths
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, first, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(first, second, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        flat = feature_shape(self.features, in_channels, image_size, "simple_cnn")[0]
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(flat, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))
