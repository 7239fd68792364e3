"""Decoded images on disk: a memory-mapped uint8 cache file, and how much of it memory can hold.

The cache is a NumPy ``.npy`` file (its header records the dtype and the shape) beside a JSON sidecar
that records the cache version, the source fingerprint and the files that failed to decode. Both are
written under names unique to the host and process and renamed into place, the sidecar last, so a
reader sees a whole cache or none. A split read from it is a :class:`MappedImages`: rows of the
mapped array, gathered on demand and held in the page cache, which every process of a node shares.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

SIDECAR_SUFFIX = ".json"
CHUNK_ROWS = 1024  # rows copied or counted at a time: bounded memory whatever the split's size


def scratch_name(target: Path) -> Path:
    """A file beside ``target`` that no other host or process writes."""
    return target.with_name(f"{target.name}.{socket.gethostname()}-{os.getpid()}.tmp")


def create_array(path: Path, shape: tuple[int, ...]) -> None:
    """A zero-filled uint8 ``.npy`` of ``shape`` whose blocks are reserved now.

    Reserving the space up front turns a full disk into an OSError (ENOSPC) here, before anything is
    decoded, instead of a SIGBUS when a mapped page finds no block to land in.
    """
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)
    offset, size = array.offset, array.nbytes
    del array
    with open(path, "r+b") as handle:
        if size and hasattr(os, "posix_fallocate"):
            os.posix_fallocate(handle.fileno(), offset, size)


def open_array(path: Path, writable: bool = False) -> np.memmap:
    return np.load(path, mmap_mode="r+" if writable else "r")


def read_sidecar(path: Path) -> dict | None:
    try:
        return json.loads(path.with_name(path.name + SIDECAR_SUFFIX).read_text())
    except (OSError, ValueError):
        return None


def write_sidecar(path: Path, record: dict) -> None:
    sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
    scratch = scratch_name(sidecar)
    try:
        scratch.write_text(json.dumps(record))
        os.replace(scratch, sidecar)
    finally:
        scratch.unlink(missing_ok=True)


def whole_array(path: Path, shape: tuple[int, ...]) -> bool:
    """Whether ``path`` is a uint8 ``.npy`` of ``shape`` with every byte present (a truncated file is not)."""
    try:
        array = open_array(path)
    except (OSError, ValueError, EOFError):
        return False
    whole = array.dtype == np.uint8 and tuple(array.shape) == tuple(shape)
    whole = whole and path.stat().st_size == array.offset + array.nbytes
    del array
    return whole


class MappedImages:
    """Rows ``rows`` of a uint8 ``(N, C, H, W)`` ``.npy`` file, read through a memory map: a split on disk.

    Indexing with a tensor gives another view (nothing is read); :meth:`gather` reads rows into a new
    tensor, :meth:`load` the whole split into memory in chunks. Pickled as the path (DataLoader
    workers started by spawn map the file themselves).
    """

    def __init__(self, path: Path, rows: torch.Tensor | None = None, array: np.memmap | None = None):
        self.path = Path(path)
        self._array = array
        self.rows = torch.arange(len(self.array)) if rows is None else rows

    @property
    def array(self) -> np.memmap:
        if self._array is None:
            self._array = open_array(self.path)
        return self._array

    def __getstate__(self) -> dict:
        return {"path": self.path, "rows": self.rows}

    def __setstate__(self, state: dict) -> None:
        self.path, self.rows, self._array = state["path"], state["rows"], None

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self.rows), *self.array.shape[1:]))

    dtype = torch.uint8
    device = torch.device("cpu")

    @property
    def nbytes(self) -> int:
        return len(self.rows) * int(np.prod(self.array.shape[1:]))

    def __getitem__(self, index) -> MappedImages:
        return MappedImages(self.path, self.rows[index], self._array)

    def gather(self, index: torch.Tensor) -> torch.Tensor:
        """The rows at positions ``index`` of this view, read into a new uint8 tensor."""
        rows = self.rows[index].numpy()
        return torch.from_numpy(np.take(self.array, rows, axis=0))

    def chunks(self, size: int = CHUNK_ROWS) -> Iterator[torch.Tensor]:
        for start in range(0, len(self.rows), size):
            yield self.gather(torch.arange(start, min(start + size, len(self.rows))))

    def load(self) -> torch.Tensor:
        """The whole view in memory, copied a chunk at a time (no second full-size copy on the way)."""
        images = torch.empty(self.shape, dtype=torch.uint8)
        start = 0
        for chunk in self.chunks():
            images[start : start + len(chunk)] = chunk
            start += len(chunk)
        return images


# -- how much memory the splits may take -------------------------------------------------------------
def available_memory() -> int:
    """Bytes the kernel says can be allocated without swapping (MemAvailable), else the free pages."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


def memory_budget(budget: float, processes: int) -> tuple[int, str]:
    """This process's budget in bytes, and how it was worked out (for messages).

    ``budget`` up to 1 is a share of the available memory, more than 1 a number of bytes, both divided
    among the node's ``processes`` (every rank holds its own copy of in-memory splits).
    """
    processes = max(1, processes)
    if budget > 1:
        return int(budget) // processes, f"data.memory_budget={int(budget)} bytes over {processes} process(es)"
    available = available_memory()
    how = f"data.memory_budget={budget} of {human_size(available)} available over {processes} process(es)"
    return int(available * budget) // processes, how


def human_size(size: int) -> str:
    """``3.5 kB``, ``1.20 GB``: decimal units, as disks and ``free -h --si`` count."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.{2 if unit == 'GB' else 1}f} {unit}"
    return f"{size} B"
