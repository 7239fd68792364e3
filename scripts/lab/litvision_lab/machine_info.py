"""The machine a measured run names in its record: the CPU with its vector instruction sets, threads, GPU.

"AMD EPYC, 2 threads" names CPUs of several generations, and a CPU run's speed (and, with
``bf16-mixed``, whether it helps at all) depends on AVX-512, AVX512-BF16 and AMX: the records say which.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

from litvision.support.precision import CPUINFO, cpu_flags


def cpu_fields(cpuinfo: Path | None = None) -> dict[str, str]:
    """The fields of the first processor in ``cpuinfo`` (/proc/cpuinfo): "model name", "cpu family", ...;
    empty where there is no such file."""
    fields: dict[str, str] = {}
    try:
        lines = (cpuinfo or CPUINFO).read_text().splitlines()
    except OSError:
        return fields
    for line in lines:
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


# /proc/cpuinfo flags worth naming, in order: each changes how fast torch's CPU kernels (and bfloat16) run.
VECTOR_FLAGS = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_bf16": "AVX512-BF16", "amx_bf16": "AMX"}


def cpu(cpuinfo: Path | None = None) -> str:
    """The CPU's name, family and model, and vector instruction sets, e.g.
    ``AMD EPYC (family 25 model 17; AVX2, AVX-512, AVX512-BF16)``."""
    fields, flags = cpu_fields(cpuinfo), cpu_flags(cpuinfo)
    name = fields.get("model name") or platform.processor() or platform.machine() or "CPU"
    details = []
    if "cpu family" in fields:
        details.append(f"family {fields['cpu family']} model {fields.get('model', '?')}")
    if flags is not None:
        details.append(", ".join(label for flag, label in VECTOR_FLAGS.items() if flag in flags) or "no AVX2")
    return f"{name} ({'; '.join(details)})" if details else name


def machine() -> str:
    """:func:`cpu`, the threads the OS and torch use, and the GPU if there is one."""
    import torch

    text = f"{cpu()}, {os.cpu_count()} threads (torch uses {torch.get_num_threads()})"
    if torch.cuda.is_available():
        text += f", GPU: {torch.cuda.get_device_name(0)}"
    return text
