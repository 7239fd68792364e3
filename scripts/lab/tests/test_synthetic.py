"""litvision_lab.synthetic and scripts/lab/synthetic_data.py: real file formats, the marker, no overwriting."""

from __future__ import annotations

import pytest
import torch

from litvision.data import CIFAR10DataModule, MNISTDataModule
from litvision.support.errors import DataError
from litvision_lab.synthetic import is_synthetic, write_cifar10, write_synthetic

from .helpers import run_lab

MNIST_FACTS = dict(num_classes=10, class_names=[str(i) for i in range(10)], mean=[0.13], std=[0.31])
CIFAR_FACTS = dict(num_classes=10, class_names=[f"c{i}" for i in range(10)], mean=[0.5] * 3, std=[0.25] * 3)


@pytest.mark.parametrize(
    "dataset,module,facts,shape",
    [("mnist", MNISTDataModule, MNIST_FACTS, (1, 28, 28)), ("cifar10", CIFAR10DataModule, CIFAR_FACTS, (3, 32, 32))],
)
def test_synthetic_files_parse_like_the_real_ones_and_carry_the_marker(dataset, module, facts, shape, tmp_path):
    folder = write_synthetic(dataset, tmp_path, train=233, test=17)
    assert is_synthetic(dataset, tmp_path) and (folder / "SYNTHETIC.txt").is_file()
    datamodule = module(data_dir=str(tmp_path), val_size=33, download=False, **facts)
    datamodule.setup("fit")
    (train_x, train_y), (test_x, _) = datamodule.splits["train"], datamodule.splits["test"]
    assert train_x.shape == (200, *shape) and train_x.dtype == torch.uint8 and len(test_x) == 17
    assert set(train_y.tolist()) <= set(range(10)) and len(set(train_y.tolist())) > 5
    # Written once: a second call refuses instead of overwriting whatever is there now.
    before = {path.name: path.read_bytes() for path in folder.iterdir()}
    with pytest.raises(DataError, match="exists"):
        write_synthetic(dataset, tmp_path, train=50, test=5)
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == before


def test_files_without_the_marker_are_not_called_synthetic(tmp_path):
    write_cifar10(tmp_path, per_batch=20, test=10)
    assert not is_synthetic("cifar10", tmp_path)


def test_synthetic_data_script_refuses_to_overwrite_in_one_line(tmp_path):
    run_lab("synthetic_data.py", "mnist", str(tmp_path), "--train", "20", "--test", "5")
    kept = (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").read_bytes()
    result = run_lab("synthetic_data.py", "mnist", str(tmp_path), "--train", "30", "--test", "6", check=False)
    assert result.returncode == 2 and "exists" in result.stderr and "Traceback" not in result.stderr
    assert (tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").read_bytes() == kept
