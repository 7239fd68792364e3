"""The tests' shared data folder: tiny MNIST, Fashion-MNIST and CIFAR-10 from litvision.data.synthetic's writers.

Written without the SYNTHETIC.txt marker, so the tests read them as any user's files.
"""

from __future__ import annotations

from pathlib import Path

from litvision.data.synthetic import write_cifar10, write_idx_dataset


def write_all(data_dir: Path) -> Path:
    """Tiny MNIST, Fashion-MNIST and CIFAR-10 under one data_dir in torchvision's layout."""
    write_idx_dataset(data_dir / "MNIST" / "raw", seed=0)
    write_idx_dataset(data_dir / "FashionMNIST" / "raw", seed=10)
    write_cifar10(data_dir)
    return data_dir
