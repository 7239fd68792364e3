"""The lab's fixtures: tiny dataset files from the lab's own writers, and torch threads shared among xdist workers."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from litvision_lab.synthetic import write_cifar10, write_idx_dataset

# Each pytest-xdist worker (-n auto) takes its share of the cores: the torch threads of two workers on the
# same cores slow both many times over. OMP_NUM_THREADS carries the share to subprocesses.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    os.environ["OMP_NUM_THREADS"] = str(torch.get_num_threads())


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> Path:
    """MNIST, Fashion-MNIST (600 training images each) and CIFAR-10 in torchvision's layout, without the
    synthetic marker, so the code under test reads them as anyone's files."""
    root = tmp_path_factory.mktemp("lab-data")
    for folder, seed in (("MNIST", 0), ("FashionMNIST", 10)):
        write_idx_dataset(root / folder / "raw", seed=seed)
    return write_cifar10(root)
