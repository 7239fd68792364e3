from litvision.data.datamodule import (
    CIFAR10DataModule,
    FashionMNISTDataModule,
    ImageDataModule,
    MNISTDataModule,
)
from litvision.data.folder import FolderDataModule
from litvision.data.images import IMAGE_SUFFIXES, read_image

__all__ = [
    "ImageDataModule",
    "MNISTDataModule",
    "FashionMNISTDataModule",
    "CIFAR10DataModule",
    "FolderDataModule",
    "read_image",
    "IMAGE_SUFFIXES",
]
