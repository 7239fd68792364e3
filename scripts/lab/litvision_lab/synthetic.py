"""Synthetic datasets written in the exact on-disk formats torchvision parses (IDX, CIFAR-10 pickle batches).

For timing where the real files are missing (CIFAR-10 has no offline copy). Each class k draws a
bright square at its own place over faint noise, so a net learns them within an epoch and an accuracy
comparison between two training loops still means something; accuracy on them says nothing about the
real dataset. A ``SYNTHETIC.txt`` marker next to the files lets the benchmark's table and the
reproduction's page say so.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

from litvision.data.datasets import CIFAR10_FILES, FASHION_MNIST_FILES, MNIST_FILES
from litvision.support.errors import DataError

MARKER = "SYNTHETIC.txt"
IDX_NAMES = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
OFFICIAL_SIZES = {"mnist": (60000, 10000), "fashion_mnist": (60000, 10000), "cifar10": (50000, 10000)}

# The built-in datasets by their data config name (data=mnist, ...): the lab writes and reads them.
DATASETS = {"mnist": MNIST_FILES, "fashion_mnist": FASHION_MNIST_FILES, "cifar10": CIFAR10_FILES}


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
    """``cifar-10-batches-py`` with data_batch_1..5, test_batch and batches.meta, as in the official archive.

    ``per_batch`` is the size of each of the five training batches (an int), or the five sizes.
    """
    folder = data_dir / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    sizes = [per_batch] * 5 if isinstance(per_batch, int) else list(per_batch)
    batches = [(f"data_batch_{i}", sizes[i - 1], seed + i) for i in range(1, 6)] + [("test_batch", test, seed + 9)]
    for name, count, batch_seed in batches:
        images, labels = make_images(count, 32, 3, batch_seed)
        rows = images.transpose(0, 3, 1, 2).reshape(count, 3 * 32 * 32)  # CHW rows, as the archive stores them
        # The archive's Python 2 pickles hold str keys (torchvision reads them with encoding="latin1").
        entry = {
            "batch_label": name,
            "labels": labels.astype(int).tolist(),
            "data": rows,
            "filenames": [f"{name}_{i}.png" for i in range(count)],
        }
        with (folder / name).open("wb") as handle:
            pickle.dump(entry, handle, protocol=2)
    meta = {"label_names": CIFAR_CLASSES, "num_cases_per_batch": max(sizes), "num_vis": 3072}
    with (folder / "batches.meta").open("wb") as handle:
        pickle.dump(meta, handle, protocol=2)
    return data_dir


def write_synthetic(
    dataset: str, data_dir: str | Path, train: int | None = None, test: int | None = None, seed: int = 0
) -> Path:
    """``dataset``'s files, synthetic, under ``data_dir`` in torchvision's layout, with the marker; the folder.

    Sizes default to the official ones. Refuses to write where any of the dataset's files exist, so
    real data is never overwritten.
    """
    if dataset not in DATASETS:
        raise DataError(f"unknown dataset {dataset!r}; choose from {sorted(DATASETS)}")
    official_train, official_test = OFFICIAL_SIZES[dataset]
    train, test = official_train if train is None else train, official_test if test is None else test
    minimum_train = 5 if dataset == "cifar10" else 1  # five training batch files
    if train < minimum_train or test < 1:
        raise DataError(f"{dataset}: need at least {minimum_train} training and 1 test example (got {train}, {test})")
    spec, data_dir = DATASETS[dataset], Path(data_dir).expanduser()
    present = [path for path in spec.paths(data_dir) if path.exists()]
    if present:
        raise DataError(f"{present[0]} exists: synthetic files are only written where {spec.name} has no files")
    if dataset == "cifar10":
        write_cifar10(
            data_dir, per_batch=[len(part) for part in np.array_split(np.arange(train), 5)], test=test, seed=seed
        )
    else:
        write_idx_dataset(data_dir / spec.folder, train=train, test=test, seed=seed)
    folder = data_dir / spec.folder
    (folder / MARKER).write_text(
        f"Synthetic {spec.name} files ({train} training, {test} test images): noise with a bright square per "
        f"class, written by scripts/lab/synthetic_data.py for timing. Accuracy on them says nothing about {spec.name}.\n"
    )
    return folder


def dataset_name(files) -> str | None:
    """The data config name (``mnist``...) of a data module's ``files``; None for a dataset of one's own."""
    return next((name for name, spec in DATASETS.items() if spec is files), None)


def is_synthetic(dataset: str, data_dir: str | Path) -> bool:
    """Whether ``data_dir`` holds synthetic files of ``dataset`` (written by :func:`write_synthetic`)."""
    return (Path(data_dir).expanduser() / DATASETS[dataset].folder / MARKER).is_file()
