"""The tests' dataset files, in the exact formats torchvision parses: IDX (raw or gzipped) and CIFAR-10's pickle batches.

Every image is faint noise with a bright 6x4 patch whose place is given by its label, so a net learns
the tiny sets within an epoch and a test can tell a trained net from an untrained one.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image

# (split, kind) -> the file name torchvision's MNIST-family classes read.
IDX_NAMES = {
    (split, kind): f"{prefix}-{kind}-idx{3 if kind == 'images' else 1}-ubyte"
    for split, prefix in (("train", "train"), ("test", "t10k"))
    for kind in ("images", "labels")
}
CIFAR_BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def labelled_patches(count: int, side: int, channels: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, H, W, C) and uint8 labels: label k puts the patch in row k // 5, column k % 5."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, count).astype(np.uint8)
    images = rng.integers(0, 60, (count, side, side, channels)).astype(np.uint8)
    top = (3 + (labels // 5).astype(int) * (side // 2 - 2))[:, None, None]
    left = (1 + (labels % 5).astype(int) * (side // 5))[:, None, None]
    rows, cols = np.arange(side)[None, :, None], np.arange(side)[None, None, :]
    images[(rows >= top) & (rows < top + 6) & (cols >= left) & (cols < left + 4)] = 255
    return images, labels


def idx_bytes(array: np.ndarray) -> bytes:
    """The IDX encoding of a uint8 array: magic (0, 0, type 0x08, dims), big-endian sizes, then the bytes."""
    sizes = struct.pack(f">{array.ndim}I", *array.shape)
    return bytes([0, 0, 0x08, array.ndim]) + sizes + array.astype(np.uint8).tobytes()


def write_idx_dataset(folder: Path, train: int = 600, test: int = 200, gzipped: bool = False, seed: int = 0) -> Path:
    """The four MNIST-family files in ``folder``: raw, or ``.gz`` as Debian's and the mnist-17k copies have them."""
    folder.mkdir(parents=True, exist_ok=True)
    encode, suffix = (gzip.compress, ".gz") if gzipped else (bytes, "")
    for split, count, split_seed in (("train", train, seed), ("test", test, seed + 1)):
        images, labels = labelled_patches(count, 28, 1, split_seed)
        for kind, array in (("images", images[..., 0]), ("labels", labels)):
            (folder / f"{IDX_NAMES[split, kind]}{suffix}").write_bytes(encode(idx_bytes(array)))
    return folder


def write_cifar10(data_dir: Path, per_batch: int = 120, test: int = 200, seed: int = 0) -> Path:
    """``cifar-10-batches-py/`` as the official archive has it: five training batches of ``per_batch``
    images, test_batch and batches.meta, pickled (protocol 2) with the archive's str keys."""
    folder = data_dir / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for number, name in enumerate(CIFAR_BATCHES, start=1):
        count, batch_seed = (test, seed + 9) if name == "test_batch" else (per_batch, seed + number)
        images, labels = labelled_patches(count, 32, 3, batch_seed)
        batch = {
            "batch_label": name,
            "labels": [int(label) for label in labels],
            "data": images.transpose(0, 3, 1, 2).reshape(count, -1),  # one CHW row per image
            "filenames": [f"{name}_{i}.png" for i in range(count)],
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    meta = {"label_names": names, "num_cases_per_batch": per_batch, "num_vis": 3 * 32 * 32}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return data_dir


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


class Planted:
    """What a hostile pickle holds: unpickling it creates the file ``sentinel`` (a test asserts it never exists)."""

    def __init__(self, sentinel: Path):
        self.sentinel = str(sentinel)

    def __reduce__(self):
        return open, (self.sentinel, "w")
