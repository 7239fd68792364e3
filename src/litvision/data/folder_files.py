"""An image folder's files: scanning, stratified carving, decoding in worker processes into the mapped cache,
the cache's fingerprint, statistics, and a per-file Dataset (loader=dataloader)."""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import signal
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from litvision.data.folder_classes import class_root, visible_dirs
from litvision.data.images import read_image, read_image_array
from litvision.data.mapped import CHUNK_ROWS, MappedImages, create_array, open_array
from litvision.support.errors import DataError

log = logging.getLogger(__name__)

SPLIT_FOLDERS = ("train", "val", "test")
CACHE_VERSION = 2  # bump when the cache's content or the decoder's output changes
DECODE_CHUNK = 256  # files a decoding worker takes at a time


@dataclass
class FileList:
    """Every candidate file: path, label and the split folder it came from ("train", "val", "test")."""

    paths: list[Path]
    labels: torch.Tensor
    origin: list[str]


def scan_folder(data_dir: Path, class_names: Sequence[str]) -> FileList:
    """All non-hidden files in the class folders, in a fixed order (split, class, file name)."""
    split_layout = (data_dir / "train").is_dir()
    roots = [(name, data_dir / name) for name in SPLIT_FOLDERS if (data_dir / name).is_dir()]
    if not split_layout:
        roots = [("train", data_dir)]
    index = {name: label for label, name in enumerate(class_names)}
    paths, labels, origin = [], [], []
    for split, root in roots:
        for folder in visible_dirs(root):
            if folder.name not in index:
                raise DataError(
                    f"{folder}: class {folder.name!r} is not among the classes of {class_root(data_dir)} "
                    f"({', '.join(class_names)})"
                )
            files = sorted(
                (entry.path for entry in os.scandir(folder) if entry.is_file() and not entry.name.startswith(".")),
            )
            if split == "train" and not files:
                raise DataError(f"{folder}: empty class folder (class {folder.name!r} has no files)")
            paths += [Path(f) for f in files]
            labels += [index[folder.name]] * len(files)
            origin += [split] * len(files)
    if not paths:
        raise DataError(f"{data_dir}: no image files in the class folders")
    return FileList(paths, torch.tensor(labels, dtype=torch.int64), origin)


# -- splits ------------------------------------------------------------------------------------
def stratified_carve(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(kept, carved) positions: ``fraction`` of each class (at least one where the class has two or more)."""
    generator = torch.Generator().manual_seed(seed)
    kept, carved = [], []
    for label in labels.unique(sorted=True).tolist():
        members = (labels == label).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        count = round(len(members) * fraction)
        if fraction > 0 and len(members) > 1:
            count = min(max(count, 1), len(members) - 1)
        carved.append(members[:count])
        kept.append(members[count:])
    return torch.cat(kept).sort().values, torch.cat(carved).sort().values


# -- decoding and the cache ----------------------------------------------------------------------
def fingerprint(paths: Sequence[Path], root: Path, settings: str) -> str:
    """A hash of the files' relative names, sizes and modification times and of the decode settings."""
    digest = hashlib.sha256(f"v{CACHE_VERSION}|{settings}".encode())
    for path in paths:
        stat = path.stat()
        digest.update(f"\n{path.relative_to(root).as_posix()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:20]


def decode_all(
    paths: Sequence[Path], channels: int, size: int, resize: str, threads: int
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """uint8 images ``(N, C, size, size)`` in memory, a bool mask of the files that decoded and the failures.

    For a sample of files (the statistics of loader=dataloader); whole folders go through
    :func:`decode_into`. Threads: Pillow releases the GIL for part of each decode.
    """
    images = torch.zeros(len(paths), channels, size, size, dtype=torch.uint8)
    ok = torch.ones(len(paths), dtype=torch.bool)
    errors: list[str | None] = [None] * len(paths)

    def work(chunk: range) -> None:
        for i in chunk:
            try:
                images[i] = read_image(paths[i], channels, size, resize)
            except DataError as err:
                ok[i], errors[i] = False, str(err)

    chunk = 64
    chunks = [range(start, min(start + chunk, len(paths))) for start in range(0, len(paths), chunk)]
    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        list(pool.map(work, chunks))
    return images, ok, [e for e in errors if e is not None]


def decode_into(
    target: Path, paths: Sequence[Path], channels: int, size: int, resize: str, workers: int
) -> dict[int, str]:
    """Decode ``paths`` straight into the uint8 ``.npy`` file ``target`` (created here); returns the failures.

    Worker processes (not threads: Pillow's Python around each decode holds the GIL) each open the
    file's memory map and write their chunk of rows into it, so no process holds more than a chunk
    in anonymous memory whatever the number of images. With one worker, or few files, this process
    decodes them itself. ``{position: message}`` of the files that are not readable images (left zero).

    This process is in charge of stopping: the workers ignore SIGINT (Ctrl-C reaches the whole process
    group), and when this process stops early (a signal, an error) they finish the file they are on and
    take no more, so the caller can remove ``target`` at once. A worker that dies (killed, out of
    memory) raises :class:`~concurrent.futures.process.BrokenProcessPool` here.
    """
    create_array(target, (len(paths), channels, size, size))
    chunk = max(1, min(DECODE_CHUNK, -(-len(paths) // max(1, workers))))
    tasks = [
        (target, start, [str(p) for p in paths[start : start + chunk]], channels, size, resize)
        for start in range(0, len(paths), chunk)
    ]
    failures: dict[int, str] = {}
    if workers <= 1 or len(tasks) == 1:
        for task in tasks:
            failures.update(_decode_chunk(*task))
        return failures
    # fork where the platform has it: the workers start at once, with litvision already imported.
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    stop = context.Event()
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_worker_start, initargs=(stop,))
    try:
        for done in pool.map(_decode_chunk, *zip(*tasks)):
            failures.update(done)
    finally:
        stop.set()  # stopped early: the chunks still queued return at once
        pool.shutdown(wait=True, cancel_futures=True)
    return failures


_stop_requested = None  # in a decoding worker: the event the parent sets when it stops early


def _worker_start(stop) -> None:
    global _stop_requested
    _stop_requested = stop
    # As DataLoader's workers do: a forked child must not enter the parent's OpenMP pool, which fork
    # leaves unusable (each worker is one decoding core anyway).
    torch.set_num_threads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the parent's handler, inherited through fork


def _decode_chunk(target: Path, start: int, paths: list[str], channels: int, size: int, resize: str) -> dict[int, str]:
    images = open_array(target, writable=True)
    failures = {}
    for offset, path in enumerate(paths):
        if _stop_requested is not None and _stop_requested.is_set():
            break  # the parent stopped: what is written here is thrown away
        try:
            images[start + offset] = read_image_array(path, channels, size, resize)
        except DataError as err:
            failures[start + offset] = str(err)
    images.flush()
    del images
    return failures


def per_channel_stats(images) -> tuple[list[float], list[float]]:
    """Mean and std per channel of uint8 ``images`` scaled to [0, 1], exact, from each channel's histogram.

    A histogram of 256 counts per channel, counted a chunk of images at a time: no float copy of the
    split, bounded memory for a mapped split, and no rounding in long sums.
    """
    values = torch.arange(256, dtype=torch.float64)
    channels = images.shape[1]
    counts = torch.zeros(channels, 256, dtype=torch.float64)
    chunks = images.chunks() if isinstance(images, MappedImages) else images.split(CHUNK_ROWS)
    for chunk in chunks:
        for channel in range(channels):
            counts[channel] += torch.bincount(chunk[:, channel].reshape(-1), minlength=256).to(torch.float64)
    means, stds = [], []
    for channel in range(channels):
        total = counts[channel].sum().clamp_min(1)
        mean = (counts[channel] * values).sum() / total
        variance = ((counts[channel] * values.square()).sum() / total - mean.square()).clamp_min(0)
        means.append(float(mean) / 255)
        stds.append(max(float(variance.sqrt()) / 255, 1e-3))  # a flat channel: std stays > 0
    return means, stds


class ImageFileDataset(Dataset):
    """``(uint8 image, label)`` per file, decoded on access (in DataLoader workers): data larger than memory.

    In skip mode an unreadable file yields None (logged with its path), which :func:`collate_skipping` drops.
    """

    def __init__(self, paths: Sequence[Path], labels: torch.Tensor, channels: int, size: int, resize: str, skip: bool):
        self.paths, self.labels = [str(p) for p in paths], labels
        self.channels, self.size, self.resize, self.skip = channels, size, resize, skip

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        try:
            image = read_image(self.paths[index], self.channels, self.size, self.resize)
        except DataError as err:
            if not self.skip:
                raise
            log.warning("skipped %s", err)
            return None
        return image, int(self.labels[index])


def collate_skipping(samples):
    samples = [s for s in samples if s is not None]
    if not samples:
        return torch.zeros(0, dtype=torch.uint8), torch.zeros(0, dtype=torch.int64)
    return torch.stack([s[0] for s in samples]), torch.tensor([s[1] for s in samples], dtype=torch.int64)
