"""DenseNet-BC (Huang et al., 2017, "Densely connected convolutional networks"), the paper's CIFAR form.

Three dense blocks of bottleneck layers (BN-ReLU-conv1x1 to 4k channels, BN-ReLU-conv3x3 to k) joined
by transitions that halve the channels (compression 0.5) and the resolution, then BN-ReLU, global
average pooling and the classifier: torchvision's ``DenseNet`` with its ``_DenseLayer``/``_Transition``
blocks, three blocks instead of four. What changes for small images is the stem: the ImageNet 7x7
stride-2 convolution, BatchNorm, ReLU and max-pool become one 3x3 stride-1 convolution to 2k channels,
as in the paper's CIFAR networks (32 pixels go 32-16-8; 28 go 28-14-7). A depth L has (L-4)/6 layers
per block; DenseNet-BC-100 with k=12 (0.8M parameters) is the paper's smallest BC network.
"""

from __future__ import annotations

from torch import nn
from torchvision.models.densenet import DenseNet as TorchvisionDenseNet

from litvision.models.common import ModelConfigError, feature_shape


class DenseNet(TorchvisionDenseNet):
    def __init__(
        self,
        in_channels: int = 3,
        image_size: int = 32,
        num_classes: int = 10,
        depth: int = 100,
        growth_rate: int = 12,
        dropout: float = 0.0,
    ):
        if depth < 10 or (depth - 4) % 6:
            raise ModelConfigError(f"densenet: depth must be 6n+4 with n >= 1 (40, 100, 190...), got {depth}")
        if growth_rate < 1:
            raise ModelConfigError(f"densenet: growth_rate must be >= 1, got {growth_rate}")
        layers_per_block = (depth - 4) // 6
        super().__init__(
            growth_rate=growth_rate,
            block_config=(layers_per_block,) * 3,
            num_init_features=2 * growth_rate,
            bn_size=4,
            drop_rate=dropout,
            num_classes=num_classes,
        )
        self.features.conv0 = nn.Conv2d(in_channels, 2 * growth_rate, kernel_size=3, padding=1, bias=False)
        nn.init.kaiming_normal_(self.features.conv0.weight)  # torchvision's init for its convolutions
        # Dense layers start with BN-ReLU themselves, so the stem is the bare convolution (the paper's).
        del self.features.norm0, self.features.relu0, self.features.pool0
        feature_shape(self.features, in_channels, image_size, f"densenet{depth}")
