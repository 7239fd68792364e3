"""Finding, parsing and checking dataset files.

torchvision's dataset classes parse the IDX files; CIFAR-10's pickle batches are read by a restricted
unpickler (no code runs, whatever the file holds). This module decides where the files come from:
(a) ``data_dir`` in torchvision's layout (raw files, or ``.gz`` archives in the raw folder), (b) known
system copies (gzip files that are decompressed into ``data_dir``), (c) torchvision's download,
(d) otherwise one clear :class:`DataError`. Every split is checked on load: as many labels as images,
labels in ``[0, num_classes)``, images of the dataset's shape.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision import datasets as tv_datasets

from litvision.data.cifar import CIFAR10Files
from litvision.support.errors import DataError, first_line


@dataclass(frozen=True)
class DatasetFiles:
    """Where one dataset's files live in torchvision's layout under ``data_dir``."""

    name: str
    parser: type
    folder: str  # the folder torchvision reads, relative to data_dir
    files: tuple[str, ...]  # the files torchvision needs inside that folder
    gzipped: bool  # system copies hold ``<file>.gz`` (the MNIST family)
    debian_package: str | None = None  # a package that installs a system copy, named in the missing-files error

    def paths(self, data_dir: Path) -> list[Path]:
        return [data_dir / self.folder / f for f in self.files]


IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

# The files of the built-in datasets; each data module names its own (``files`` of an ImageDataModule).
MNIST_FILES = DatasetFiles("MNIST", tv_datasets.MNIST, "MNIST/raw", IDX_FILES, gzipped=True)
FASHION_MNIST_FILES = DatasetFiles(
    "Fashion-MNIST",
    tv_datasets.FashionMNIST,
    "FashionMNIST/raw",
    IDX_FILES,
    gzipped=True,
    debian_package="dataset-fashion-mnist",
)
CIFAR10_FILES = DatasetFiles(
    "CIFAR-10",
    CIFAR10Files,
    "cifar-10-batches-py",
    tuple(name for name, _ in CIFAR10Files.train_list + CIFAR10Files.test_list) + ("batches.meta",),
    gzipped=False,
)


def ensure_available(spec: DatasetFiles, data_dir: str | Path, search_dirs=(), download: bool = True) -> None:
    """Make the dataset's files exist under ``data_dir`` or raise one :class:`DataError`."""
    data_dir = Path(data_dir).expanduser()
    if all(p.is_file() for p in spec.paths(data_dir)):
        return
    raw = data_dir / spec.folder
    looked_at = [str(raw)]
    # Archives placed in the raw folder itself (any source: torchvision's checksums are not required)
    # are decompressed beside them and checked by structure on load like any other copy.
    if spec.gzipped and all((raw / f).is_file() or (raw / f"{f}.gz").is_file() for f in spec.files):
        _decompress_into(raw, spec, data_dir)
        return
    for source in search_dirs or ():
        source = Path(source).expanduser()
        looked_at.append(str(source))
        if spec.gzipped and all((source / f"{f}.gz").is_file() for f in spec.files):
            _decompress_into(source, spec, data_dir)
            return
    download_error = _try_download(spec, data_dir) if download else "download disabled (data.download=false)"
    if download_error is None:
        return
    raise DataError(
        f"{spec.name} not found. Looked in: {', '.join(looked_at)}; torchvision download failed: "
        f"{download_error}.\nFix: put the files in torchvision's layout under {data_dir / spec.folder}, "
        f"or set data.data_dir=<folder that holds them>"
        + (f", or on Debian/Ubuntu: apt-get install {spec.debian_package}" if spec.debian_package else "")
        + ", or run once with internet access."
    )


def _decompress_into(source: Path, spec: DatasetFiles, data_dir: Path) -> None:
    """Decompress ``source/<file>.gz`` into torchvision's raw folder, atomically per file.

    Debian re-compressed its copies, so torchvision's .gz checksums do not match; the decompressed
    content is what torchvision reads. A corrupt archive leaves nothing behind.
    """
    target_dir = data_dir / spec.folder
    target_dir.mkdir(parents=True, exist_ok=True)
    for name in spec.files:
        target = target_dir / name
        if target.is_file():
            continue
        archive = source / f"{name}.gz"
        fd, partial = tempfile.mkstemp(dir=target_dir, prefix=f".{name}.", suffix=".partial")
        try:
            with gzip.open(archive, "rb") as src, os.fdopen(fd, "wb") as dst:
                shutil.copyfileobj(src, dst, length=1 << 20)
            os.replace(partial, target)
        except (OSError, EOFError, gzip.BadGzipFile) as err:
            Path(partial).unlink(missing_ok=True)
            raise DataError(f"{archive} is corrupt or truncated ({err}). Reinstall or replace that file.") from None


def _try_download(spec: DatasetFiles, data_dir: Path) -> str | None:
    """Download through torchvision into a scratch folder, moved in only when complete.

    Returns None on success, else a one-line reason.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=data_dir, prefix=".download-") as scratch:
        try:
            spec.parser(scratch, train=True, download=True)
            spec.parser(scratch, train=False, download=True)
        except Exception as err:  # torchvision raises RuntimeError/URLError/OSError per mirror
            return str(err).strip().splitlines()[-1][:200] or type(err).__name__
        for entry in Path(scratch).iterdir():
            if entry.suffix in {".gz", ".tar"}:  # the downloaded archive; the extracted folder is what counts
                continue
            destination = data_dir / entry.name
            if destination.exists():
                shutil.copytree(entry, destination, dirs_exist_ok=True)
            else:
                shutil.move(str(entry), destination)
    return None


def _find_unreadable(spec: DatasetFiles, data_dir: Path) -> Path | None:
    """Name the IDX file that broke parsing, by header against size (CIFAR batches name themselves)."""
    for path in spec.paths(data_dir):
        if not spec.gzipped:
            continue
        try:
            header = path.read_bytes()[: 4 + 4 * 3]
            dims = header[3]
            sizes = np.frombuffer(header[4 : 4 + 4 * dims], dtype=">i4")
            if path.stat().st_size != 4 + 4 * dims + int(np.prod(sizes)):
                return path
        except Exception:
            return path
    return None


def _split_files(spec: DatasetFiles, data_dir: Path, train: bool, parsed) -> tuple[str, str]:
    """(images file, labels file) of a split, for messages."""
    if hasattr(parsed, "sources"):  # CIFAR-10: images and labels live in the same batch files
        names = ", ".join(path.name for path, _ in parsed.sources)
        return f"{data_dir / spec.folder} ({names})", f"{data_dir / spec.folder} ({names})"
    prefix = "train" if train else "t10k"
    folder = data_dir / spec.folder
    return str(folder / f"{prefix}-images-idx3-ubyte"), str(folder / f"{prefix}-labels-idx1-ubyte")


def _labels_file(parsed, index: int, fallback: str) -> str:
    """The file that holds the ``index``-th label of a split (CIFAR-10: one of the batches)."""
    for path, count in getattr(parsed, "sources", ()):
        if index < count:
            return f"{path} (image {index})"
        index -= count
    return f"{fallback} (image {index})"


def check_split(
    spec: DatasetFiles,
    data_dir: Path,
    train: bool,
    parsed,
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int | None,
    shape: tuple[int, int] | None,
) -> None:
    """Raise one :class:`DataError` naming the file and the value when a split is not what the dataset declares."""
    split = "train" if train else "test"
    images_file, labels_file = _split_files(spec, data_dir, train, parsed)
    if len(images) != len(labels):
        raise DataError(
            f"{spec.name} {split} split: {len(images)} images ({images_file}) but {len(labels)} labels ({labels_file})"
        )
    if shape is not None and tuple(images.shape[1:]) != (shape[0], shape[1], shape[1]):
        channels, side = shape
        found = "x".join(str(size) for size in images.shape[1:])
        raise DataError(
            f"{spec.name} {split} split: images of {found} in {images_file}, expected {channels}x{side}x{side}"
        )
    if num_classes is not None and len(labels):
        bad = ((labels < 0) | (labels >= num_classes)).nonzero()
        if len(bad):
            index = int(bad[0])
            raise DataError(
                f"{spec.name} {split} split: label {int(labels[index])} outside [0, {num_classes}) in "
                f"{_labels_file(parsed, index, labels_file)}"
            )


def load_split(
    spec: DatasetFiles,
    data_dir: str | Path,
    train: bool,
    num_classes: int | None = None,
    shape: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Parse and check one split: uint8 images ``(N, C, H, W)`` and int64 labels ``(N,)``.

    ``num_classes`` and ``shape`` (channels, side) are what the data config declares; each split is
    checked against them (see :func:`check_split`).
    """
    data_dir = Path(data_dir)
    try:
        parsed = spec.parser(str(data_dir), train=train, download=False)
    except DataError:
        raise  # already names the file
    except Exception as err:
        bad = _find_unreadable(spec, Path(data_dir))
        reason = first_line(err, typed=True)  # one line, whatever torchvision raised
        raise DataError(
            f"{spec.name}: cannot read {bad or Path(data_dir) / spec.folder} ({reason}). The file is "
            f"truncated or corrupt: delete it and provide it again."
        ) from None
    images = parsed.data
    if isinstance(images, np.ndarray):  # CIFAR-10 arrives as (N, H, W, C) numpy
        images = torch.from_numpy(images).permute(0, 3, 1, 2)
    elif images.ndim == 3:  # MNIST family: (N, H, W)
        images = images.unsqueeze(1)
    labels = torch.as_tensor(parsed.targets, dtype=torch.int64)
    check_split(spec, data_dir, train, parsed, images, labels, num_classes, shape)
    return images.contiguous(), labels
