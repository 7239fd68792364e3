"""Wide residual networks (Zagoruyko & Komodakis, 2016, "Wide residual networks"): WRN-d-k for CIFAR.

WRN-d-k has three groups of (d-4)/6 pre-activation basic blocks (BN-ReLU-conv3x3, BN-ReLU-dropout-
conv3x3) of width 16k, 32k, 64k after a 3x3 16-channel stem, the second and third group
starting with stride 2, then BN-ReLU, global average pooling and the classifier. This is the paper's
CIFAR network unchanged (it was designed for 32 pixels; 28 goes 28-14-7); WRN-16-4 (2.7M parameters)
to WRN-28-10 (36.5M) are the usual choices. torchvision's ``wide_resnet50_2`` is the ImageNet
bottleneck variant and its ``BasicBlock`` is post-activation, so the pre-activation block is written
here.
"""

from __future__ import annotations

from torch import nn

from litvision.models.common import ModelConfigError, feature_shape


class PreActBlock(nn.Module):
    """BN-ReLU-conv3x3, BN-ReLU(-dropout)-conv3x3, plus the input (a 1x1 convolution when the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, dropout: float = 0.0):
        super().__init__()
        self.norm1, self.relu1 = nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.norm2, self.relu2 = nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x):
        activated = self.relu1(self.norm1(x))
        # The projection shortcut takes the activated input, as in the authors' code.
        identity = x if self.shortcut is None else self.shortcut(activated)
        out = self.conv1(activated)
        out = self.conv2(self.dropout(self.relu2(self.norm2(out))))
        return out + identity


class WideResNet(nn.Module):
    def __init__(
        self,
        in_channels: int = 3,
        image_size: int = 32,
        num_classes: int = 10,
        depth: int = 16,
        widen_factor: int = 4,
        dropout: float = 0.0,
    ):
        super().__init__()
        if depth < 10 or (depth - 4) % 6:
            raise ModelConfigError(f"wide_resnet: depth must be 6n+4 with n >= 1 (10, 16, 22, 28, 40...), got {depth}")
        if widen_factor < 1:
            raise ModelConfigError(f"wide_resnet: widen_factor must be >= 1, got {widen_factor}")
        blocks_per_group = (depth - 4) // 6
        layers: list[nn.Module] = [nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)]
        channels = 16
        for group, base_width in enumerate((16, 32, 64)):
            for index in range(blocks_per_group):
                stride = 2 if group > 0 and index == 0 else 1
                layers.append(PreActBlock(channels, base_width * widen_factor, stride, dropout))
                channels = base_width * widen_factor
        layers += [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        feature_shape(self.features, in_channels, image_size, f"wide_resnet{depth}-{widen_factor}")
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        return self.classifier(self.features(x))
