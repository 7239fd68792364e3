"""Small datasets written in the exact on-disk formats torchvision parses (IDX, CIFAR-10 pickle batches).

Each class k draws a bright square at its own place over faint noise, so a net learns them in an
epoch and accuracy-based checks mean something.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

IDX_NAMES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def make_images(count: int, side: int, channels: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images (N, H, W, C) and uint8 labels with a class-dependent bright square."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, count).astype(np.uint8)
    images = rng.integers(0, 60, (count, side, side, channels)).astype(np.uint8)
    for i, label in enumerate(labels):
        row, col = divmod(int(label), 5)
        top, left = 3 + row * (side // 2 - 2), 1 + col * (side // 5)
        images[i, top : top + 6, left : left + 4, :] = 255
    return images, labels


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding: two zero bytes, type 0x08 (ubyte), the number of dims, big-endian sizes, the data."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_idx_dataset(folder: Path, train: int = 600, test: int = 200, gzipped: bool = False, seed: int = 0) -> Path:
    """The four MNIST-family files in ``folder`` (raw, or ``.gz`` like Debian's and the mnist-17k copies)."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, count, split_seed in (("train", train, seed), ("test", test, seed + 1)):
        images, labels = make_images(count, 28, 1, split_seed)
        for kind, array in (("images", images[..., 0]), ("labels", labels)):
            name = IDX_NAMES[(split, kind)]
            payload = idx_bytes(array)
            if gzipped:
                (folder / f"{name}.gz").write_bytes(gzip.compress(payload))
            else:
                (folder / name).write_bytes(payload)
    return folder


def write_cifar10(data_dir: Path, per_batch: int = 120, test: int = 200, seed: int = 0) -> Path:
    """``cifar-10-batches-py`` with data_batch_1..5, test_batch and batches.meta, as in the official archive."""
    folder = data_dir / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    batches = [(f"data_batch_{i}", per_batch, seed + i) for i in range(1, 6)] + [("test_batch", test, seed + 9)]
    for name, count, batch_seed in batches:
        images, labels = make_images(count, 32, 3, batch_seed)
        rows = images.transpose(0, 3, 1, 2).reshape(count, 3 * 32 * 32)  # CHW rows, as the archive stores them
        # The archive's Python 2 pickles hold str keys (torchvision reads them with encoding="latin1").
        entry = {"batch_label": name, "labels": labels.astype(int).tolist(), "data": rows,
                 "filenames": [f"{name}_{i}.png" for i in range(count)]}
        with (folder / name).open("wb") as handle:
            pickle.dump(entry, handle, protocol=2)
    meta = {"label_names": CIFAR_CLASSES, "num_cases_per_batch": per_batch, "num_vis": 3072}
    with (folder / "batches.meta").open("wb") as handle:
        pickle.dump(meta, handle, protocol=2)
    return data_dir


def write_all(data_dir: Path) -> Path:
    """Tiny MNIST, Fashion-MNIST and CIFAR-10 under one data_dir in torchvision's layout."""
    write_idx_dataset(data_dir / "MNIST" / "raw", seed=0)
    write_idx_dataset(data_dir / "FashionMNIST" / "raw", seed=10)
    write_cifar10(data_dir)
    return data_dir
