"""Process-wide settings the benchmark applies before it builds anything (scripts/lab/conf/runtime/)."""

from __future__ import annotations

import ctypes
import sys

from omegaconf import DictConfig

from litvision.support.errors import LitvisionError

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters from glibc's <malloc.h>
_MMAP_THRESHOLD_CEILING_MB = 32  # glibc refuses larger values on 64-bit systems


def apply_runtime(cfg: DictConfig | None) -> None:
    if cfg is None:
        return
    tune_glibc_malloc(cfg.get("malloc_mmap_threshold_mb"), cfg.get("malloc_trim_threshold_mb"))


def tune_glibc_malloc(mmap_threshold_mb: float | None, trim_threshold_mb: float | None) -> bool:
    """Fixed mmap and trim thresholds for glibc's malloc; False where the C library is not glibc.

    glibc serves blocks above its mmap threshold (128 KB at first) with fresh pages from the kernel
    and unmaps them on free. A CPU training step allocates and frees activations of a few MB on every
    batch, so with the default thresholds they are page-faulted in again on each step, which shows
    as system time. Fixed thresholds keep those blocks in the heap for reuse (the same reason
    PyTorch's CPU tuning guide suggests jemalloc or tcmalloc). Setting the environment variables
    ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` does the same from outside the process.
    Opt-in: ``runtime=cpu_tuned``.
    """
    if mmap_threshold_mb is None and trim_threshold_mb is None:
        return False
    if mmap_threshold_mb is not None and not 0 < mmap_threshold_mb <= _MMAP_THRESHOLD_CEILING_MB:
        raise LitvisionError(
            f"runtime.malloc_mmap_threshold_mb must be in (0, {_MMAP_THRESHOLD_CEILING_MB}] "
            f"(got {mmap_threshold_mb}); null leaves glibc's default"
        )
    if trim_threshold_mb is not None and not 0 <= trim_threshold_mb < 2048:  # mallopt takes a C int
        raise LitvisionError(f"runtime.malloc_trim_threshold_mb must be in [0, 2048) (got {trim_threshold_mb})")
    libc = _glibc()
    if libc is None:
        return False
    settings = [(_M_MMAP_THRESHOLD, mmap_threshold_mb), (_M_TRIM_THRESHOLD, trim_threshold_mb)]
    return all(libc.mallopt(param, int(mb * 2**20)) == 1 for param, mb in settings if mb is not None)


def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    if not hasattr(libc, "gnu_get_libc_version"):  # only glibc has it (musl has mallopt as a no-op stub)
        return None
    libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return libc
