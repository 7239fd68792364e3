"""An image folder's decode cache: every file decoded once into a memory-mapped uint8 ``.npy`` per node.

``<folder>/.litvision-cache-<channels>x<size>-<resize>-<fingerprint>.npy`` beside its ``.json`` sidecar
(see :mod:`litvision.data.mapped`). The fingerprint covers the files' names, sizes and modification
times and the decode settings, so a changed folder or another setting gets a cache of its own; a
cache that is truncated, lacks its sidecar, or was written by another cache version is decoded again.
A folder that cannot be written keeps its cache in the temporary directory instead. ``enabled=False``
(``data.cache=false``) decodes into a scratch file of the run's own, removed when it ends.
"""

from __future__ import annotations

import atexit
import errno
import hashlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from litvision.data.folder_files import CACHE_VERSION, decode_into, fingerprint
from litvision.data.mapped import (
    SIDECAR_SUFFIX,
    MappedImages,
    human_size,
    read_sidecar,
    scratch_name,
    whole_array,
    write_sidecar,
)
from litvision.support.errors import DataError

log = logging.getLogger(__name__)

CACHE_PREFIX = ".litvision-cache"
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_READ_ONLY = (errno.EACCES, errno.EPERM, errno.EROFS)


class FolderCache:
    """Finds or builds the cache of ``data_dir``'s files for one set of decode settings."""

    def __init__(self, data_dir: Path, channels: int, size: int, resize: str, enabled: bool, workers: int):
        self.data_dir, self.channels, self.size, self.resize = data_dir, channels, size, resize
        self.enabled, self.workers = enabled, workers
        self.settings = f"{channels}x{size}-{resize}"

    def _folders(self) -> list[Path]:
        """The folder itself, then a per-folder place in the temporary directory (a read-only folder)."""
        digest = hashlib.sha256(str(self.data_dir.resolve()).encode()).hexdigest()[:16]
        return [self.data_dir, Path(tempfile.gettempdir()) / f"litvision-cache-{os.getuid()}" / digest]

    def find(self, paths: Sequence[Path]) -> tuple[MappedImages, dict[int, str]] | None:
        """The matching, complete cache of ``paths`` (mapped), or None."""
        if not self.enabled:
            return None
        key = fingerprint(paths, self.data_dir, self.settings)
        shape = (len(paths), self.channels, self.size, self.size)
        for folder in self._folders():
            path = folder / f"{CACHE_PREFIX}-{self.settings}-{key}.npy"
            if not path.exists():
                continue
            record = read_sidecar(path)
            if record and record.get("version") == CACHE_VERSION and record.get("key") == key:
                if tuple(record.get("shape", ())) == shape and whole_array(path, shape):
                    log.info("mapped %d decoded images from %s", len(paths), path)
                    failures = {int(position): message for position, message in record["failures"]}
                    return MappedImages(path), failures
            log.warning("decoding again: the cache %s is incomplete or from another version", path)
        return None

    def build(self, paths: Sequence[Path]) -> tuple[MappedImages, dict[int, str]]:
        """Decode ``paths`` into a new cache (or a scratch file when the cache is off) and map it."""
        key = fingerprint(paths, self.data_dir, self.settings)
        if not self.enabled:
            scratch = Path(tempfile.mkdtemp(prefix="litvision-decode-"))
            atexit.register(shutil.rmtree, scratch, ignore_errors=True)  # the run's own copy, gone when it ends
            failures = self._decode(paths, scratch / "images.npy")
            return MappedImages(scratch / "images.npy"), failures
        folders = self._folders()
        for folder in folders:
            target = folder / f"{CACHE_PREFIX}-{self.settings}-{key}.npy"
            try:
                folder.mkdir(parents=True, exist_ok=True)
                failures = self._write(paths, target, key)
            except OSError as err:
                if err.errno in _READ_ONLY and folder != folders[-1]:
                    log.warning(
                        "cannot write the cache in %s (%s): keeping it in %s", folder, err.strerror, folders[-1]
                    )
                    continue
                raise
            self._remove_stale(folder, target)
            return MappedImages(target), failures
        raise AssertionError("unreachable: the last folder raises")

    def _write(self, paths: Sequence[Path], target: Path, key: str) -> dict[int, str]:
        scratch = scratch_name(target)  # unique per host and process: ranks and nodes never share one
        try:
            failures = self._decode(paths, scratch)
            os.replace(scratch, target)
            # The sidecar last: until it is there, the cache does not count.
            record = {"version": CACHE_VERSION, "key": key, "shape": [len(paths), self.channels, self.size, self.size]}
            write_sidecar(target, {**record, "failures": sorted(failures.items())})
        except OSError as err:
            scratch.unlink(missing_ok=True)
            if err.errno in _NO_SPACE:
                target.unlink(missing_ok=True)
                need = len(paths) * self.channels * self.size * self.size
                raise DataError(
                    f"{target.parent}: no space left for the decoded images ({human_size(need)}); free that much "
                    f"space there (the cache is in the image folder, or in TMPDIR where the folder is read-only)"
                ) from None
            raise
        return failures

    def _decode(self, paths: Sequence[Path], target: Path) -> dict[int, str]:
        started = time.perf_counter()
        workers = max(1, min(self.workers, len(paths) // 64))  # a process is worth starting for 64+ files
        log.info("decoding %d files from %s (%d process(es))", len(paths), self.data_dir, workers)
        failures = decode_into(target, paths, self.channels, self.size, self.resize, workers)
        seconds = time.perf_counter() - started
        log.info("decoded %d files in %.1f s (%.0f images/s)", len(paths), seconds, len(paths) / max(seconds, 1e-9))
        return failures

    def _remove_stale(self, folder: Path, current: Path) -> None:
        """Caches of the same settings for an older state of the folder (and the old torch.save caches)."""
        keep = {current.name, current.name + SIDECAR_SUFFIX}
        for stale in folder.glob(f"{CACHE_PREFIX}-{self.settings}-*"):
            if stale.name not in keep and stale.suffix in (".npy", ".json", ".pt"):
                stale.unlink(missing_ok=True)
