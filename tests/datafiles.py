"""The tests' shared data folder: tiny MNIST, Fashion-MNIST and CIFAR-10 from litvision.data.synthetic's writers.

Written without the SYNTHETIC.txt marker, so the tests read them as any user's files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from litvision.data.synthetic import write_cifar10, write_idx_dataset


def write_all(data_dir: Path) -> Path:
    """Tiny MNIST, Fashion-MNIST and CIFAR-10 under one data_dir in torchvision's layout."""
    write_idx_dataset(data_dir / "MNIST" / "raw", seed=0)
    write_idx_dataset(data_dir / "FashionMNIST" / "raw", seed=10)
    write_cifar10(data_dir)
    return data_dir


def write_image_folder(root: Path, classes: int = 10, per_class: int = 4) -> Path:
    """A ``data=folder`` dataset: ``classes`` class folders of small PNGs (as many classes as the others)."""
    rng = np.random.default_rng(0)
    for label in range(classes):
        (root / f"class{label}").mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(root / f"class{label}" / f"{i}.png")
    return root
