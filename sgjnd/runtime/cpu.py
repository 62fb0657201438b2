"""This CPU's model and the instruction-set flags that decide INT8, BF16 and FP32 speed (read from /proc/cpuinfo).

In the runtime, so backends that choose kernels or precisions by CPU (ONNX Runtime's U8S8 saturation warning,
OpenVINO's bf16, ``--backend auto``) need nothing above it; :mod:`sgjnd.environment` re-exports it for reports.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

_CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")


def cpu_info() -> dict[str, Any]:
    """CPU model, core count and the instruction-set flags that decide INT8, BF16 and FP32 speed.

    ``vnni``: integer dot products (AVX-512 VNNI or AVX-VNNI), what INT8 kernels need to be fast; ``bf16``: bf16
    arithmetic (AVX-512-BF16 or AMX-BF16), what OpenVINO's bf16 inference needs; ``amx``: the AMX matrix engine
    (int8 and bf16 tiles).
    """
    model, flags = platform.processor() or "unknown", set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name") and model in ("unknown", "", platform.machine()):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    return {
        "model": model,
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "flags": [f for f in _CPU_FLAGS if f in flags],
        "vnni": bool({"avx512_vnni", "avx_vnni"} & flags),
        "bf16": bool({"avx512_bf16", "amx_bf16"} & flags),
        "amx": bool({"amx_int8", "amx_bf16"} & flags),
    }
