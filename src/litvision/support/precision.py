"""The precision a run trains in: ``trainer.precision=auto`` resolved, and one line where a CPU changes the choice.

``bf16-mixed`` runs a CPU's convolutions faster than float32 only where the CPU computes bfloat16 itself
(AVX512-BF16 or AMX, read from /proc/cpuinfo's x86 flags, and oneDNN not capped below them by
``ONEDNN_MAX_CPU_ISA``); elsewhere torch emulates it, and a step takes
many times as long as in float32. ``auto`` therefore picks bf16-mixed where the hardware runs it natively
(such a CPU, or a CUDA GPU with bfloat16) and 32-true elsewhere. ``16-mixed`` on a CPU runs as
bf16-mixed (a CPU has no float16 autocast; Lightning swaps it too), said in one line naming both.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from lightning.pytorch.accelerators import CUDAAccelerator, MPSAccelerator

log = logging.getLogger(__name__)

CPUINFO = Path("/proc/cpuinfo")  # the flag source: tests point it at a file of another CPU
BFLOAT16_FLAGS = {"avx512_bf16", "amx_bf16"}  # x86 flags of native bfloat16 arithmetic
# ONEDNN_MAX_CPU_ISA values that keep oneDNN's convolutions off those instructions (it then emulates bfloat16).
ONEDNN_CAPS_BELOW_BFLOAT16 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX512_CORE", "AVX512_CORE_VNNI"}
BF16_EMULATED = (
    "on a CPU without bfloat16 instructions (AVX512-BF16 or AMX): torch emulates them, and a step takes "
    "many times as long as with trainer.precision=32-true (or auto)"
)


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


def onednn_cap() -> str | None:
    """``ONEDNN_MAX_CPU_ISA`` where it keeps oneDNN below the bfloat16 instructions, else None."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").strip().upper()
    return cap if cap in ONEDNN_CAPS_BELOW_BFLOAT16 else None


def has_bfloat16_instructions(cpuinfo: Path | None = None) -> bool | None:
    """Whether the CPU computes bfloat16 natively (and oneDNN may use it); None where that is unknown (no x86
    flags listed)."""
    flags = cpu_flags(cpuinfo)
    return None if flags is None else bool(flags & BFLOAT16_FLAGS) and onednn_cap() is None


def device_kind(accelerator) -> str:
    """'cpu', 'cuda' or another accelerator's name, for a Trainer's ``accelerator`` argument ("auto" included)."""
    name = str(accelerator).lower()
    if name == "auto":
        if CUDAAccelerator.is_available():
            return "cuda"
        return "mps" if MPSAccelerator.is_available() else "cpu"
    return "cuda" if name == "gpu" and CUDAAccelerator.is_available() else name


def choose_precision(requested, accelerator="auto", cpuinfo: Path | None = None) -> str:
    """The ``trainer.precision`` to build the Trainer with; logs one line where it differs from ``requested``
    or where bfloat16 would be emulated."""
    requested = str(requested)
    device = device_kind(accelerator)
    if requested == "auto":
        if device == "cuda":
            import torch

            native, why = torch.cuda.is_bf16_supported(), "a CUDA GPU with bfloat16"
        elif device == "cpu":
            native = bool(has_bfloat16_instructions(cpuinfo))
            why = "a CPU with bfloat16 instructions" if native else "a CPU without bfloat16 instructions"
            if cap := onednn_cap():
                why = f"ONEDNN_MAX_CPU_ISA={cap} keeps oneDNN off the CPU's bfloat16 instructions"
        else:
            native, why = False, f"accelerator {device}"
        chosen = "bf16-mixed" if native else "32-true"
        log.info("trainer.precision=auto: %s (%s)", chosen, why)
        return chosen
    if device != "cpu" or not requested.startswith(("bf16", "16-mixed")):
        return requested
    emulated = has_bfloat16_instructions(cpuinfo) is False
    if requested == "16-mixed":  # Lightning's own swap, said here with the user's spelling
        log.warning(
            "trainer.precision=16-mixed runs as bf16-mixed: a CPU has no float16 mixed precision%s",
            f"; bf16-mixed {BF16_EMULATED}" if emulated else "",
        )
        return "bf16-mixed"
    if emulated:
        log.warning("trainer.precision=%s %s", requested, BF16_EMULATED)
    return requested


def resolve_trainer_precision(trainer_cfg) -> None:
    """Put :func:`choose_precision`'s answer into the trainer config (a DictConfig) before the Trainer is built."""
    from omegaconf import open_dict

    if "precision" not in trainer_cfg:
        return
    chosen = choose_precision(trainer_cfg.precision, trainer_cfg.get("accelerator", "auto"))
    with open_dict(trainer_cfg):
        trainer_cfg.precision = chosen
