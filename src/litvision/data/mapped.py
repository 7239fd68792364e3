"""Decoded images on disk: a memory-mapped uint8 cache file, and how much of it memory can hold.

The cache is a NumPy ``.npy`` file (its header records the dtype and the shape) beside a JSON sidecar
that records the cache version, the source fingerprint and the files that failed to decode. The array
is decoded into a scratch file whose name carries the process id and host (:func:`scratch_name`) and
renamed into place, then the sidecar is written atomically, so a reader sees a whole cache or none,
and a scratch file left by a killed process is known as such (:func:`scratch_owner`). Both files are
read as untrusted input: only regular files, a sidecar of bounded size, a C-ordered uint8 array of
exactly the expected shape and size. A split read from the cache is a :class:`MappedImages`: rows of
the mapped array, gathered on demand and held in the page cache, which every process of a node shares.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import secrets
import socket
import stat
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from litvision.support.atomic import write_json

log = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".json"
CHUNK_ROWS = 1024  # rows copied or counted at a time: bounded memory whatever the split's size
_SCRATCH = re.compile(r"(?P<target>.+)\.(?P<pid>\d+)@(?P<host>.+)\.[0-9a-f]{8}\.tmp")
_OLD_SCRATCH = re.compile(r"(?P<target>.+\.npy(?:\.json)?)\.(?P<host>.+)-(?P<pid>\d+)\.tmp")  # older litvision


def process_place() -> str:
    """Where this process's id means something: the host name, and on Linux the pid namespace (containers on one
    host can share a host name, not their process ids)."""
    try:
        namespace = os.readlink("/proc/self/ns/pid").strip("pid:[]")
    except OSError:
        return socket.gethostname()
    return f"{socket.gethostname()}~{namespace}"


def scratch_name(target: Path) -> Path:
    """A new name beside ``target``: ``<name>.<pid>@<place>.<random>.tmp``, which no other process writes."""
    return target.with_name(f"{target.name}.{os.getpid()}@{process_place()}.{secrets.token_hex(4)}.tmp")


def scratch_owner(name: str) -> tuple[str, int] | None:
    """``(place, pid)`` of the process that writes the scratch file ``name`` (:func:`scratch_name`; an older
    litvision's names give the host alone as the place), or None when ``name`` is not a scratch file's."""
    found = _SCRATCH.fullmatch(name) or _OLD_SCRATCH.fullmatch(name)
    return (found["host"], int(found["pid"])) if found else None


def create_array(path: Path, shape: tuple[int, ...]) -> None:
    """A new zero-filled uint8 ``.npy`` of ``shape`` at ``path``, whose blocks are reserved now.

    Created exclusively (never through a file or a link already there). Reserving the space up front
    turns a full disk into an OSError (ENOSPC) here, before anything is decoded, instead of a SIGBUS
    when a mapped page finds no block to land in.
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    with os.fdopen(os.open(path, flags, 0o666), "r+b") as handle:
        header = {"descr": "|u1", "fortran_order": False, "shape": tuple(int(n) for n in shape)}
        np.lib.format.write_array_header_1_0(handle, header)
        offset, size = handle.tell(), int(np.prod(shape))
        handle.truncate(offset + size)
        if size and hasattr(os, "posix_fallocate"):
            os.posix_fallocate(handle.fileno(), offset, size)


def open_array(path: Path, writable: bool = False) -> np.memmap:
    return np.load(path, mmap_mode="r+" if writable else "r")


def _regular_file(path: Path) -> os.stat_result | None:
    """``path``'s status if it is a regular file (not a FIFO, a device or a folder: those would block or mislead)."""
    try:
        status = path.stat()
    except OSError:
        return None
    return status if stat.S_ISREG(status.st_mode) else None


def read_sidecar(path: Path, max_bytes: int) -> object | None:
    """The JSON of ``path``'s sidecar, or None when it is missing, not a regular file, over ``max_bytes`` or not
    JSON. What comes back is untrusted: the caller checks every field."""
    sidecar = path.with_name(path.name + SIDECAR_SUFFIX)
    status = _regular_file(sidecar)
    if status is None or status.st_size > max_bytes:
        return None
    try:
        return json.loads(sidecar.read_bytes())
    except (OSError, ValueError, RecursionError):  # RecursionError: JSON nested thousands of levels deep
        return None


def write_sidecar(path: Path, record: dict) -> None:
    write_json(path.with_name(path.name + SIDECAR_SUFFIX), record)


def whole_array(path: Path, shape: tuple[int, ...]) -> bool:
    """Whether ``path`` is a regular file holding a C-ordered uint8 ``.npy`` of ``shape`` with every byte present
    (a truncated file is not), read from its header alone (nothing in it is unpickled or loaded)."""
    status = _regular_file(path)
    if status is None:
        return False
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    try:
        with open(path, "rb") as handle:
            reader = readers.get(np.lib.format.read_magic(handle))
            if reader is None:
                return False
            found, fortran_order, dtype = reader(handle)
            offset = handle.tell()
    except (OSError, ValueError, EOFError, SyntaxError, TypeError):  # not an .npy, or a header that is not one
        return False
    if dtype != np.uint8 or fortran_order or tuple(found) != tuple(shape):
        return False
    return status.st_size == offset + int(np.prod(shape))


def sidecar_failures(
    record: object, version: int, key: str, shape: tuple[int, ...], paths: Sequence[Path]
) -> dict[int, str] | None:
    """``{position: message}`` of the files a sidecar says did not decode, or None when the sidecar is not this
    cache's: another version, fingerprint or shape, or any field of the wrong type or out of range (it is
    untrusted JSON; None means "decode again", never an error)."""
    if not isinstance(record, dict):
        return None
    found_version, found_key, found_shape, listed = (record.get(k) for k in ("version", "key", "shape", "failures"))
    if type(found_version) is not int or found_version != version or not isinstance(found_key, str) or found_key != key:
        return None
    if not isinstance(found_shape, list) or [type(n) for n in found_shape] != [int] * len(shape):
        return None
    if tuple(found_shape) != tuple(shape) or not isinstance(listed, list) or len(listed) > len(paths):
        return None
    failures: dict[int, str] = {}
    for entry in listed:
        if not isinstance(entry, list) or len(entry) != 2:
            return None
        position, message = entry
        if type(position) is not int or not 0 <= position < len(paths) or position in failures:
            return None
        # Each message is the one read_image gave for that very file: "<path>: ..." with nothing unprintable after.
        prefix = f"{paths[position]}: "
        if not isinstance(message, str) or not message.startswith(prefix) or not message[len(prefix) :].isprintable():
            return None
        failures[position] = message
    return failures


def _running(place: str, pid: int) -> bool:
    """Whether the process ``pid`` of ``place`` (:func:`process_place`) may still run: another host's or
    container's is assumed to."""
    if place not in (process_place(), socket.gethostname()):
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it runs, as another user
        return True
    return True


def remove_dead_scratch(folder: Path, prefix: str) -> None:
    """The scratch files ``<prefix>*`` in ``folder`` of processes here that no longer run (killed while decoding):
    truncated, useless."""
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            owner = scratch_owner(entry.name) if entry.name.startswith(prefix) else None
            if owner is not None and not _running(*owner):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    log.info("removed %s, left by a decoding process that no longer runs", entry.path)


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
