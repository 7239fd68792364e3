"""AlexNet (Krizhevsky, Sutskever & Hinton, 2012, "ImageNet classification with deep convolutional
neural networks"), in d2l's single-tower form, for 28-32 pixel images.

Five convolutions (96, 256, 384, 384, 256 channels) with ReLU, three overlapping max-pools (3x3,
stride 2), then two dropout + fully-connected layers and the classifier. d2l upsamples Fashion-MNIST
to 224 pixels; here the 11x11 stride-4 first convolution, which would shrink a 28-pixel image to 5x5
at once, becomes a 3x3 stride-1 one instead, the rest is unchanged, and the flattened size comes from
a dry forward (256x3x3 at 32 pixels). ``hidden`` (4096 in the paper) sets the fully-connected width;
local response normalisation is left out, as in d2l. The ImageNet layout (a 6x6 final map), upsampled:
``data.image_size=224 model.net.first_kernel=11 model.net.first_stride=4``.
"""

from __future__ import annotations

from torch import nn

from litvision.models.common import feature_shape


class AlexNet(nn.Module):
    def __init__(
        self,
        in_channels: int = 3,
        image_size: int = 32,
        num_classes: int = 10,
        hidden: int = 4096,
        dropout: float = 0.5,
        first_kernel: int = 3,
        first_stride: int = 1,
    ):
        super().__init__()

        def conv(cin: int, cout: int, kernel: int, stride: int = 1) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *conv(in_channels, 96, first_kernel, first_stride),
            nn.MaxPool2d(3, stride=2),
            *conv(96, 256, 5),
            nn.MaxPool2d(3, stride=2),
            *conv(256, 384, 3),
            *conv(384, 384, 3),
            *conv(384, 256, 3),
            nn.MaxPool2d(3, stride=2),
            nn.Flatten(),
        )
        flat = feature_shape(self.features, in_channels, image_size, "alexnet")[0]
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(flat, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))
