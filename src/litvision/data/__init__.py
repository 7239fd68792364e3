"""The data modules and image readers.

Their modules load on first use: Hydra imports ``litvision.data.folder_classes`` (the config resolvers)
at every start, and a script's ``--help``, ``--cfg`` or config error should not wait for torch to load.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_HOMES = {
    "ImageDataModule": "litvision.data.datamodule",
    "MNISTDataModule": "litvision.data.datamodule",
    "FashionMNISTDataModule": "litvision.data.datamodule",
    "CIFAR10DataModule": "litvision.data.datamodule",
    "FolderDataModule": "litvision.data.folder",
    "read_image": "litvision.data.images",
    "IMAGE_SUFFIXES": "litvision.data.images",
}
__all__ = [
    "ImageDataModule",
    "MNISTDataModule",
    "FashionMNISTDataModule",
    "CIFAR10DataModule",
    "FolderDataModule",
    "read_image",
    "IMAGE_SUFFIXES",
]

if TYPE_CHECKING:
    from litvision.data.datamodule import CIFAR10DataModule, FashionMNISTDataModule, ImageDataModule, MNISTDataModule
    from litvision.data.folder import FolderDataModule
    from litvision.data.images import IMAGE_SUFFIXES, read_image


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)
