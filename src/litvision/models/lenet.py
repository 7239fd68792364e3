"""LeNet-5 (LeCun et al., 1998, "Gradient-based learning applied to document recognition").

As in the MNIST tutorial (and d2l): conv 6@5x5 pad 2 -> sigmoid -> avgpool 2 -> conv 16@5x5 -> sigmoid
-> avgpool 2 -> 120 -> 84 -> classes, Xavier init. ``activation="relu"``, ``pool="max"`` and
``batch_norm=True`` (BN-LeNet, Ioffe & Szegedy 2015) give the modernised variants.
"""

from __future__ import annotations

from torch import nn

from litvision.models.common import ModelConfigError, feature_shape, make_activation


class LeNet(nn.Module):
    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 28,
        num_classes: int = 10,
        activation: str = "sigmoid",
        pool: str = "avg",
        batch_norm: bool = False,
    ):
        super().__init__()
        if pool not in ("avg", "max"):
            raise ModelConfigError(f"lenet: pool must be 'avg' or 'max', got {pool!r}")
        pool_layer = nn.AvgPool2d if pool == "avg" else nn.MaxPool2d

        def conv_block(cin: int, cout: int, padding: int) -> list[nn.Module]:
            norm = [nn.BatchNorm2d(cout)] if batch_norm else []
            return [nn.Conv2d(cin, cout, 5, padding=padding), *norm, make_activation(activation), pool_layer(2)]

        self.features = nn.Sequential(*conv_block(in_channels, 6, 2), *conv_block(6, 16, 0), nn.Flatten())
        flat = feature_shape(self.features, in_channels, image_size, "lenet")[0]

        def dense(cin: int, cout: int) -> list[nn.Module]:
            norm = [nn.BatchNorm1d(cout)] if batch_norm else []
            return [nn.Linear(cin, cout), *norm, make_activation(activation)]

        self.classifier = nn.Sequential(*dense(flat, 120), *dense(120, 84), nn.Linear(84, num_classes))
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight)

    def forward(self, x):
        return self.classifier(self.features(x))
