"""Result files written whole or not at all: a unique temporary file in the same folder, fsync, rename.

A crash, a Ctrl-C or a second process writing the same file never leaves half a file behind: a reader
sees the old content or the new, and each writer has its own temporary name (two writers: the last
rename wins, each file whole). The temporary file is removed when writing fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing; on success it replaces ``path`` (mode ``w`` or ``wb``)."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files (mode w or wb), not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        with open(partial, mode, **kwargs) as stream:  # by name: the stream's .name is the temporary path
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        _publish(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` for writers that take a file name (an exporter, ``np.savez``); on
    success the file there is flushed to disk and replaces ``path``; on failure it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + path.suffix)
    os.close(handle)
    partial = Path(name)
    try:
        yield partial
        with partial.open("rb+") as stream:
            os.fsync(stream.fileno())
        _publish(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise


def _read_umask() -> int:
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


_UMASK = _read_umask()  # read once, at import: setting it later could race another thread creating a file


def _publish(partial: Path | str, path: Path) -> None:
    os.chmod(partial, 0o666 & ~_UMASK)  # mkstemp makes the file 0600; a result file gets the usual permissions
    os.replace(partial, path)


def write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    with atomic_open(path, "w", encoding=encoding) as stream:
        stream.write(text)
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_open(path, "wb") as stream:
        stream.write(data)
    return Path(path)


def write_json(path: str | Path, payload: Mapping[str, Any] | list, **dump_options: Any) -> Path:
    options = {"indent": 2, "sort_keys": True, **dump_options}
    return write_text(path, json.dumps(payload, **options) + "\n")
