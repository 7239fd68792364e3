"""An image folder's decode cache: every file decoded once into a memory-mapped uint8 ``.npy`` per node.

``<folder>/.litvision-cache-<channels>x<size>-<resize>-<fingerprint>.npy`` beside its ``.json`` sidecar
(see :mod:`litvision.data.mapped`). The fingerprint covers the files' names, sizes and modification
times and the decode settings, so a changed folder or another setting gets a cache of its own.

Where it lives: beside the data, or, where the folder cannot be written, in the user's own cache
directory (``$XDG_CACHE_HOME/litvision/<folder hash>/``, else ``~/.cache/litvision/...``), created 0700
and used only while it is the user's and nobody else can write it; otherwise (and with
``enabled=False``, ``data.cache=false``) the run decodes into a scratch file of its own, removed when it
ends. Never a shared place such as the temporary directory, where another user could plant a cache.

A cache is data from outside: it counts only when its sidecar passes every check (types, ranges, this
fingerprint and shape, each failure's index and file), its ``.npy`` header matches, and a few files
picked at random decode to exactly the rows it holds, so a cache that is not these files' images (a
planted one, say) is decoded again. Beside the data, the cache is as trustworthy as the folder: whoever
can write there can change the images themselves. A truncated scratch file never stays: it is removed
when decoding stops early (an error, Ctrl-C, SIGTERM, a killed worker), and one left by a process that
no longer runs (SIGKILL) is removed by the next run on that host.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import hashlib
import logging
import os
import random
import shutil
import signal
import stat
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np
from lightning.pytorch.utilities.exceptions import SIGTERMException

from litvision.data.folder_files import CACHE_VERSION, decode_into, fingerprint
from litvision.data.images import read_image_array
from litvision.data.mapped import (
    SIDECAR_SUFFIX,
    MappedImages,
    human_size,
    open_array,
    read_sidecar,
    remove_dead_scratch,
    scratch_name,
    sidecar_failures,
    whole_array,
    write_sidecar,
)
from litvision.support.errors import DataError

log = logging.getLogger(__name__)

CACHE_PREFIX = ".litvision-cache"
SPOT_CHECKS = 8  # files decoded again, at random, to check that a cache found holds their images
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
_READ_ONLY = (errno.EACCES, errno.EPERM, errno.EROFS)


def user_cache_root() -> Path | None:
    """``$XDG_CACHE_HOME/litvision`` (an absolute ``XDG_CACHE_HOME``), else ``~/.cache/litvision``; None without a home."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # unset, or relative: the XDG spec says to ignore it
        try:
            base = str(Path.home() / ".cache")
        except (RuntimeError, KeyError):  # no HOME and no password entry
            return None
    return Path(base) / "litvision"


def not_private(folder: Path) -> str | None:
    """Why ``folder`` is no place for this user's cache, or None: a folder of this user's nobody else can write."""
    try:
        status = folder.stat()
    except OSError as err:
        return err.strerror or type(err).__name__
    if not stat.S_ISDIR(status.st_mode):
        return "it is not a folder"
    if status.st_uid != os.getuid():
        return f"it belongs to another user (uid {status.st_uid})"
    if status.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"other users can write it (mode {stat.S_IMODE(status.st_mode):o})"
    return None


def _replaceable(folder: Path) -> str | None:
    """Why an entry of ``folder`` could be swapped by another user (writable by others, no sticky bit), or None."""
    try:
        mode = folder.stat().st_mode
    except OSError as err:
        return err.strerror or type(err).__name__
    if mode & (stat.S_IWGRP | stat.S_IWOTH) and not mode & stat.S_ISVTX:
        return f"other users can replace what is in it (mode {stat.S_IMODE(mode):o})"
    return None


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """SIGTERM while decoding raises (Lightning's ``SIGTERMException``, which the interruption callback
    reports) instead of ending the process on the spot, so the scratch file is removed first.

    Only where SIGTERM would kill the process outright (its default handler, in the main thread): a
    handler someone installed stays in charge.
    """
    main = threading.current_thread() is threading.main_thread()
    if not main or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return

    def stop(signum, frame):
        raise SIGTERMException

    signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


class FolderCache:
    """Finds or builds the cache of ``data_dir``'s files for one set of decode settings."""

    def __init__(self, data_dir: Path, channels: int, size: int, resize: str, enabled: bool, workers: int):
        self.data_dir, self.channels, self.size, self.resize = data_dir, channels, size, resize
        self.enabled, self.workers = enabled, workers
        self.settings = f"{channels}x{size}-{resize}"
        self._refused: set[Path] = set()  # cache folders already warned about

    def user_folder(self) -> Path | None:
        """This folder's place in the user's cache directory (for a folder that cannot be written)."""
        root = user_cache_root()
        digest = hashlib.sha256(str(self.data_dir.resolve()).encode()).hexdigest()[:16]
        return root / digest if root is not None else None

    def _private_user_folder(self, create: bool) -> Path | None:
        """:meth:`user_folder` if it (and ``litvision/`` above it) is this user's alone; created 0700 if asked.

        A folder that exists but others could write, own or swap is skipped with one warning: a cache
        there could have been planted.
        """
        folder = self.user_folder()
        if folder is None:
            return None
        if create:
            try:
                folder.parent.parent.mkdir(parents=True, exist_ok=True)
                for level in (folder.parent, folder):
                    level.mkdir(mode=0o700, exist_ok=True)
            except OSError as err:
                log.warning("cannot create the cache folder %s (%s)", folder, err.strerror)
                return None
        elif not folder.is_dir():
            return None
        checks = ((folder.parent.parent, _replaceable), (folder.parent, not_private), (folder, not_private))
        for level, check in checks:
            why = check(level)
            if why is not None:
                if level not in self._refused:
                    self._refused.add(level)
                    log.warning(
                        "not using the cache folder %s: %s, so a cache there could have been planted (make it "
                        "yours alone with chmod 700, or point XDG_CACHE_HOME elsewhere)",
                        *(level, why),
                    )
                return None
        return folder

    def _cache_path(self, folder: Path, key: str) -> Path:
        return folder / f"{CACHE_PREFIX}-{self.settings}-{key}.npy"

    # -- finding ---------------------------------------------------------------------------------
    def find(self, paths: Sequence[Path]) -> tuple[MappedImages, dict[int, str]] | None:
        """The matching, complete cache of ``paths`` (mapped), or None."""
        if not self.enabled:
            return None
        key = fingerprint(paths, self.data_dir, self.settings)
        shape = (len(paths), self.channels, self.size, self.size)
        for folder in (self.data_dir, self._private_user_folder(create=False)):
            if folder is None:
                continue
            remove_dead_scratch(folder, CACHE_PREFIX)
            path = self._cache_path(folder, key)
            if not os.path.lexists(path):
                continue
            failures = self._checked(path, key, shape, paths)
            if failures is not None:
                log.info("mapped %d decoded images from %s", len(paths), path)
                return MappedImages(path), failures
        return None

    def _checked(self, path: Path, key: str, shape: tuple[int, ...], paths: Sequence[Path]) -> dict[int, str] | None:
        """The failures the cache at ``path`` records, if it is a whole cache of ``paths``' images; else None
        (said in one warning)."""
        # At most what a sidecar listing every file as a failure takes (JSON escapes a character in up to 12 bytes).
        record = read_sidecar(path, max_bytes=4096 + sum(12 * (len(str(p)) + 300) for p in paths))
        failures = sidecar_failures(record, CACHE_VERSION, key, shape, paths)
        if failures is None or not whole_array(path, shape):
            log.warning("decoding again: the cache %s is incomplete or from another version", path)
            return None
        differs = self._spot_check(path, paths, failures)
        if differs is not None:
            log.warning("decoding again: the cache %s does not hold the images of its files (%s)", path, differs)
            return None
        return failures

    def _spot_check(self, path: Path, paths: Sequence[Path], failures: dict[int, str]) -> str | None:
        """None if a few files picked at random decode to the rows the cache holds (and the recorded failures
        still fail); else the first file that does not."""
        images = open_array(path)
        try:
            for position in random.SystemRandom().sample(range(len(paths)), min(SPOT_CHECKS, len(paths))):
                try:
                    decoded = read_image_array(paths[position], self.channels, self.size, self.resize)
                except DataError:
                    decoded = None
                if (decoded is None) != (position in failures):
                    return f"{paths[position]} {'does not decode' if decoded is None else 'decodes'} now"
                if decoded is not None and not np.array_equal(images[position], decoded):
                    return f"{paths[position]} decodes to other pixels"
        finally:
            del images
        return None

    # -- building --------------------------------------------------------------------------------
    def build(self, paths: Sequence[Path]) -> tuple[MappedImages, dict[int, str]]:
        """Decode ``paths`` into a new cache (or a scratch file when the cache is off) and map it."""
        if not self.enabled:
            return self._build_scratch(paths)
        key = fingerprint(paths, self.data_dir, self.settings)
        try:
            return self._build_in(self.data_dir, paths, key)
        except OSError as err:
            if err.errno not in _READ_ONLY:
                raise
            reason = err.strerror
        folder = self._private_user_folder(create=True)
        if folder is None:
            log.warning(
                "cannot write the cache in %s (%s) nor in a cache folder of yours: decoding into a scratch "
                "file of this run",
                *(self.data_dir, reason),
            )
            return self._build_scratch(paths)
        log.warning("cannot write the cache in %s (%s): keeping it in %s", self.data_dir, reason, folder)
        return self._build_in(folder, paths, key)

    def _build_in(self, folder: Path, paths: Sequence[Path], key: str) -> tuple[MappedImages, dict[int, str]]:
        remove_dead_scratch(folder, CACHE_PREFIX)
        target = self._cache_path(folder, key)
        failures = self._write(paths, target, key)
        self._remove_stale(folder, target)
        return MappedImages(target), failures

    def _build_scratch(self, paths: Sequence[Path]) -> tuple[MappedImages, dict[int, str]]:
        scratch = Path(tempfile.mkdtemp(prefix="litvision-decode-"))  # 0700, a fresh name: this run's alone
        atexit.register(shutil.rmtree, scratch, ignore_errors=True)  # the run's own copy, gone when it ends
        try:
            with _sigterm_raises():
                failures = self._decode(paths, scratch / "images.npy")
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        return MappedImages(scratch / "images.npy"), failures

    def _write(self, paths: Sequence[Path], target: Path, key: str) -> dict[int, str]:
        """Decode into a scratch file beside ``target``, rename it into place, then write the sidecar."""
        shape = [len(paths), self.channels, self.size, self.size]
        with _sigterm_raises():
            scratch = scratch_name(target)  # unique per host and process: ranks and nodes never share one
            placed = False
            try:
                failures = self._decode(paths, scratch)
                os.replace(scratch, target)
                placed = True
                # The sidecar last: until it is there, the cache does not count.
                record = {"version": CACHE_VERSION, "key": key, "shape": shape}
                write_sidecar(target, {**record, "failures": sorted(failures.items())})
            except BaseException as err:
                scratch.unlink(missing_ok=True)  # a truncated scratch file never stays behind
                if placed:
                    target.unlink(missing_ok=True)
                if isinstance(err, OSError) and err.errno in _NO_SPACE:
                    need = len(paths) * self.channels * self.size * self.size
                    raise DataError(
                        f"{target.parent}: no space left for the decoded images ({human_size(need)}); free that "
                        f"much space there (the cache is in the image folder, or in your cache folder where the "
                        f"image folder is read-only)"
                    ) from None
                raise
        return failures

    def _decode(self, paths: Sequence[Path], target: Path) -> dict[int, str]:
        started = time.perf_counter()
        workers = max(1, min(self.workers, len(paths) // 64))  # a process is worth starting for 64+ files
        log.info("decoding %d files from %s (%d process(es))", len(paths), self.data_dir, workers)
        try:
            failures = decode_into(target, paths, self.channels, self.size, self.resize, workers)
        except BrokenProcessPool:
            raise DataError(
                f"{self.data_dir}: a decode worker process died before the folder was decoded (killed by a "
                f"signal, or out of memory); nothing was cached: run again, with fewer data.decode_workers if "
                f"memory is short"
            ) from None
        seconds = time.perf_counter() - started
        log.info("decoded %d files in %.1f s (%.0f images/s)", len(paths), seconds, len(paths) / max(seconds, 1e-9))
        return failures

    def _remove_stale(self, folder: Path, current: Path) -> None:
        """Caches of the same settings for an older state of the folder (and the old torch.save caches)."""
        keep = {current.name, current.name + SIDECAR_SUFFIX}
        for stale in folder.glob(f"{CACHE_PREFIX}-{self.settings}-*"):
            if stale.name not in keep and stale.suffix in (".npy", ".json", ".pt"):
                stale.unlink(missing_ok=True)
