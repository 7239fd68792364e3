"""The Keras CNN of the MNIST tutorial: two conv 64@3x3 + max-pool stages and a dense 128 layer.

A Keras ``Sequential`` of conv 64@3x3 ReLU -> max-pool 2 -> conv 64@3x3 ReLU -> max-pool 2 -> dense
128 ReLU -> dense classes, with Keras' defaults: unpadded ("valid") convolutions, biases everywhere.
At 1x28x28 that is exactly the tutorial's 243,786 parameters (``python scripts/model_summary.py
model=keras_cnn`` prints the per-layer counts of its ``model.summary()``). Keras' softmax output
layer becomes logits, since the loss applies it. On 3x32x32 only the flattened size changes
(64x6x6), found by a dry forward.
"""

from __future__ import annotations

from torch import nn

from litvision.models.common import feature_shape


class KerasCNN(nn.Module):
    def __init__(
        self, in_channels: int = 1, image_size: int = 28, num_classes: int = 10, filters: int = 64, hidden: int = 128
    ):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, filters, 3),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(filters, filters, 3),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Flatten(),
        )
        flat = feature_shape(self.features, in_channels, image_size, "keras_cnn")[0]
        self.classifier = nn.Sequential(nn.Linear(flat, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))
