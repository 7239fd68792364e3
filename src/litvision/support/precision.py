"""Whether the CPU computes bfloat16 itself (/proc/cpuinfo's x86 flags), and the warning where it does not.

``trainer.precision=bf16-mixed`` runs a CPU's convolutions faster than float32 only where the CPU
computes bfloat16 itself (AVX512-BF16 or AMX); elsewhere torch emulates it, and a step takes many times
as long as in float32. A run that asks for it there gets a warning naming the fix.
"""

from __future__ import annotations

import logging
from pathlib import Path

from lightning import Trainer
from lightning.pytorch.accelerators import CPUAccelerator

log = logging.getLogger(__name__)

CPUINFO = Path("/proc/cpuinfo")
BFLOAT16_FLAGS = {"avx512_bf16", "amx_bf16"}  # x86 flags of native bfloat16 arithmetic


def cpu_flags(cpuinfo: Path | None = None) -> set[str] | None:
    """The first processor's x86 feature flags ("avx2", "avx512_bf16", ...); None where none are listed
    (no /proc/cpuinfo, or not x86)."""
    try:
        text = (cpuinfo or CPUINFO).read_text()
    except OSError:
        return None
    first_processor = text.strip().split("\n\n", 1)[0]
    for line in first_processor.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "flags":
            return set(value.split())
    return None


def has_bfloat16_instructions(cpuinfo: Path | None = None) -> bool | None:
    """Whether the CPU computes bfloat16 natively; None where that is unknown (no x86 flags listed)."""
    flags = cpu_flags(cpuinfo)
    return None if flags is None else bool(flags & BFLOAT16_FLAGS)


def warn_if_bfloat16_is_emulated(trainer: Trainer, cpuinfo: Path | None = None) -> bool:
    """Log a warning (and return True) when ``trainer`` trains in bfloat16 on a CPU that emulates it."""
    precision = str(trainer.precision)
    if not precision.startswith("bf16") or not isinstance(trainer.accelerator, CPUAccelerator):
        return False
    if has_bfloat16_instructions(cpuinfo) is not False:
        return False
    log.warning(
        "trainer.precision=%s on a CPU without bfloat16 instructions (AVX512-BF16 or AMX): torch emulates "
        "them, and a step takes many times as long as with trainer.precision=32-true",
        precision,
    )
    return True
