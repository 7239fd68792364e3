"""Process-wide settings a task applies before it builds anything (conf/runtime)."""

from __future__ import annotations

import ctypes
import os
import sys

from omegaconf import DictConfig

from litvision.errors import LitvisionError

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters from glibc's <malloc.h>
_MMAP_THRESHOLD_CEILING_MB = 32  # glibc refuses larger values on 64-bit systems


def apply_runtime(cfg: DictConfig | None) -> None:
    skip_nvml_check_without_nvml()
    if cfg is None:
        return
    tune_glibc_malloc(cfg.get("malloc_mmap_threshold_mb"), cfg.get("malloc_trim_threshold_mb"))
    lean = cfg.get("lean_callback_dispatch", True)
    if not isinstance(lean, bool):
        raise LitvisionError(f"runtime.lean_callback_dispatch must be true or false (got {lean!r})")
    # Imported here, not at the top: it imports Lightning (and torch), see _torch_has_cuda.
    from litvision.callback_dispatch import use_lean_callback_dispatch

    use_lean_callback_dispatch(lean)


def skip_nvml_check_without_nvml() -> bool:
    """Drop Lightning's ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` where NVML cannot be loaded; True if dropped.

    Lightning sets it on import so that ``torch.cuda.is_available()`` asks NVML instead of initializing
    CUDA (which would spoil CUDA in forked workers). With a CUDA build of torch on a machine without
    the NVIDIA driver, NVML is missing: every check then tries to load it, fails, and falls back to
    the CUDA runtime query anyway. Adam and AdamW run that check on every ``step()``: 0.13-0.17 ms of
    a fashion_cnn-sized Adam step's 0.3-0.5 ms on a 2-core CPU, about 1% of the training step.
    Without NVML there is no driver and no GPU, so the answer cannot change, and the fallback the
    check ends in is the one it now takes at once.
    """
    if os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") != "1" or not _torch_has_cuda():
        return False
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        del os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"]
        return True
    return False


def _torch_has_cuda() -> bool:
    import torch  # here, not at the top: tune_glibc_malloc's subprocess test runs without importing torch

    return torch.version.cuda is not None


def tune_glibc_malloc(mmap_threshold_mb: float | None, trim_threshold_mb: float | None) -> bool:
    """Fixed mmap and trim thresholds for glibc's malloc; False where the C library is not glibc.

    glibc serves blocks above its mmap threshold (128 KB at first) with fresh pages from the kernel
    and unmaps them on free. A CPU training step allocates and frees activations of a few MB on every
    batch, so they are page-faulted in again each time: with fashion_cnn on Fashion-MNIST (2-core VM,
    4 epochs of the bare loop) that was 2.0-3.2 million page faults and 5-8 s of system time, against
    0.3-0.4 million and 1.3-1.8 s with these thresholds (the same reason PyTorch's CPU tuning guide
    suggests jemalloc or tcmalloc). Setting the variables MALLOC_MMAP_THRESHOLD_ and
    MALLOC_TRIM_THRESHOLD_ does the same from outside the process.
    """
    if mmap_threshold_mb is None and trim_threshold_mb is None:
        return False
    if mmap_threshold_mb is not None and not 0 < mmap_threshold_mb <= _MMAP_THRESHOLD_CEILING_MB:
        raise LitvisionError(f"runtime.malloc_mmap_threshold_mb must be in (0, {_MMAP_THRESHOLD_CEILING_MB}] "
                             f"(got {mmap_threshold_mb}); null leaves glibc's default")
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
        libc.gnu_get_libc_version  # only glibc has it (musl, for one, has mallopt as a no-op stub)
    except (OSError, AttributeError):
        return None
    libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return libc
