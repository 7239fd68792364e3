"""The benchmark's process-wide settings (scripts/lab/conf/runtime/): glibc malloc thresholds, opt-in with runtime=cpu_tuned."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest

from litvision.support.errors import LitvisionError
from litvision_lab.paths import LAB
from litvision_lab.runtime import _glibc, tune_glibc_malloc

# The same detection the code uses, so the skip fires exactly where tune_glibc_malloc would do nothing
# (CI runs on Debian: glibc, so it never fires there).
ON_GLIBC = _glibc() is not None


# Three 8 MB activations allocated, touched and freed per "step", as a CPU training step does.
STEPS = """
import ctypes, resource, sys
from litvision_lab.runtime import tune_glibc_malloc
if sys.argv[1] == "tuned":
    assert tune_glibc_malloc(32, 1024)
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size = 8 * 2**20
def step():
    blocks = [libc.malloc(size) for _ in range(3)]
    for block in blocks:
        ctypes.memset(block, 1, size)
    for block in blocks:
        libc.free(block)
step(); step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not ON_GLIBC, reason="mallopt thresholds exist only in glibc")
def test_tuned_malloc_reuses_freed_activations_instead_of_faulting_them_in_again():
    def page_faults(mode: str) -> int:
        # Started in scripts/lab: ``python -c`` imports from its working folder, so litvision_lab is found.
        command = [sys.executable, "-c", STEPS, mode]
        run = subprocess.run(command, cwd=LAB, capture_output=True, text=True, check=True)
        return int(run.stdout)

    pages_per_step = 3 * 8 * 2**20 // resource.getpagesize()
    assert page_faults("default") >= 5 * pages_per_step  # glibc's defaults give the memory back every step
    assert page_faults("tuned") < pages_per_step


@pytest.mark.parametrize("mmap_mb,trim_mb", [(64, 1024), (0, 1024), (32, -1), (32, 4096)])
def test_values_glibc_would_refuse_are_one_clear_error(mmap_mb, trim_mb):
    with pytest.raises(LitvisionError, match="runtime.malloc_"):
        tune_glibc_malloc(mmap_mb, trim_mb)


def test_null_thresholds_leave_malloc_alone():
    assert tune_glibc_malloc(None, None) is False
