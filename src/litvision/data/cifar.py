"""CIFAR-10's pickle batches read without executing code: a restricted unpickler and torchvision's dataset on it."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
from torchvision import datasets as tv_datasets

from litvision.support.errors import DataError, first_line

# The only globals a CIFAR-10 pickle holds: numpy's array reconstruction and, in pickles written by
# Python 3 at protocol 2, ``_codecs.encode`` for the raw bytes. Anything else (os.system, eval, ...)
# is refused before it is called.
_CIFAR_PICKLE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}
_CIFAR_ROW = 3 * 32 * 32  # values per image in a batch's "data" rows (CHW)


class _CifarUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _CIFAR_PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, which CIFAR-10 files never hold")
        return super().find_class(module, name)


def read_cifar_pickle(path: Path) -> dict:
    """Unpickle a CIFAR-10 file with :class:`_CifarUnpickler`: a dict, or one :class:`DataError` naming it."""
    try:
        with Path(path).open("rb") as handle:
            loaded = _CifarUnpickler(handle, encoding="latin1").load()
    except FileNotFoundError:
        raise DataError(f"CIFAR-10: {path} is missing") from None
    except Exception as err:  # UnpicklingError, EOFError, ValueError ...: what the file holds is the problem
        raise DataError(f"CIFAR-10: {path} is not a CIFAR-10 file ({first_line(err)}); refused to load it") from None
    if not isinstance(loaded, dict):
        raise DataError(f"CIFAR-10: {path} holds a {type(loaded).__name__}, not a CIFAR-10 dict")
    return loaded


def read_cifar_batch(path: Path) -> tuple[np.ndarray, list[int]]:
    """A batch's uint8 rows ``(N, 3072)`` and its labels, checked for structure and count."""
    entry = read_cifar_pickle(path)
    data, labels = entry.get("data"), entry.get("labels", entry.get("fine_labels"))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise DataError(f"CIFAR-10: {path}: 'data' is not a 2-d uint8 array")
    if data.shape[1] != _CIFAR_ROW:
        raise DataError(f"CIFAR-10: {path}: images of {data.shape[1]} values, expected {_CIFAR_ROW} (3x32x32)")
    if not isinstance(labels, list) or not all(type(label) is int for label in labels):
        raise DataError(f"CIFAR-10: {path}: 'labels' is not a list of integers")
    if len(labels) != len(data):
        raise DataError(f"CIFAR-10: {path}: {len(data)} images but {len(labels)} labels")
    return data, labels


class CIFAR10Files(tv_datasets.CIFAR10):
    """torchvision's CIFAR-10 dataset with files checked by structure and read without executing code.

    torchvision refuses any CIFAR-10 batch whose md5 differs from the published one, which rules out
    re-packed copies and the small files tests write; and it reads batches with ``pickle.load``, which
    runs whatever a crafted file asks. Here :func:`read_cifar_batch` reads them instead.
    """

    train_list = [[name, None] for name, _ in tv_datasets.CIFAR10.train_list]
    test_list = [[name, None] for name, _ in tv_datasets.CIFAR10.test_list]
    meta = {**tv_datasets.CIFAR10.meta, "md5": None}

    def __init__(self, root, train: bool = True, transform=None, target_transform=None, download: bool = False):
        tv_datasets.VisionDataset.__init__(self, root, transform=transform, target_transform=target_transform)
        self.train = train
        if download:
            self.download()
        folder = Path(self.root) / self.base_folder
        # (file, number of images) in order, so a check on the whole split can name the file at fault
        self.sources: list[tuple[Path, int]] = []
        rows, self.targets = [], []
        for name, _ in self.train_list if train else self.test_list:
            data, labels = read_cifar_batch(folder / name)
            rows.append(data)
            self.targets.extend(labels)
            self.sources.append((folder / name, len(data)))
        self.data = np.concatenate(rows).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # HWC, as torchvision's
        self._load_meta()

    def _load_meta(self) -> None:
        path = Path(self.root) / self.base_folder / self.meta["filename"]
        names = read_cifar_pickle(path).get(self.meta["key"])
        if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
            raise DataError(f"CIFAR-10: {path}: {self.meta['key']!r} is not a list of class names")
        self.classes = names
        self.class_to_idx = {name: i for i, name in enumerate(names)}
