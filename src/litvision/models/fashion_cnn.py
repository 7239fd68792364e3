"""The CNN of the Fashion-MNIST tutorial: input BatchNorm, two conv 3x3 + max-pool stages, fc 128.

BatchNorm on the input (it learns the normalisation) -> conv 8@3x3 -> ReLU -> max-pool 2 -> conv 16@3x3
-> ReLU -> max-pool 2 -> fc 128 -> ReLU -> output layer without bias. The tutorial ends in log-softmax
with an NLL loss; the ImageClassifier's cross-entropy on the logits is the same loss, so the net returns
logits. Convolutions are unpadded as in the tutorial (28 -> 26 -> 13 -> 11 -> 5); nothing else needed
adapting for 3x32x32, since the flattened size comes from a dry forward.
"""

from __future__ import annotations

from torch import nn

from litvision.models.common import feature_shape


class FashionCNN(nn.Module):
    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        num_classes: int = 10,
        widths: tuple[int, int] = (8, 16),
        hidden: int = 128,
        padding: int = 0,
    ):
        super().__init__()
        first, second = widths
        self.features = nn.Sequential(
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, first, 3, padding=padding),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(first, second, 3, padding=padding),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        flat = feature_shape(self.features, in_channels, image_size, "fashion_cnn")[0]
        self.classifier = nn.Sequential(
            nn.Linear(flat, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_classes, bias=False)
        )

    def forward(self, x):
        return self.classifier(self.features(x))
