from litvision.data.datamodule import (
    CIFAR10DataModule,
    FashionMNISTDataModule,
    ImageDataModule,
    MNISTDataModule,
)

__all__ = ["ImageDataModule", "MNISTDataModule", "FashionMNISTDataModule", "CIFAR10DataModule"]
