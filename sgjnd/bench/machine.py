"""The machine a benchmark ran on: :func:`sgjnd.environment.environment` plus threads and GPU facts.

Everything here is read without loading a model. A fact that cannot be read is recorded with the reason, never left
out, so that two result files can always be told apart.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from typing import Any

from sgjnd.bench.frame import numpy_blas_threads

_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def thread_info(configured: int | None = None) -> dict[str, Any]:
    """Thread settings that decide CPU speed: the configured count, each library's count and the variables.

    Args:
        configured: the ``threads`` of the benchmark config (None: each library's default).
    """
    info: dict[str, Any] = {
        "configured": configured,
        "logical_cpus": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "environment": {v: os.environ[v] for v in _THREAD_VARS if v in os.environ},
    }
    threads, how = numpy_blas_threads()
    info["numpy_blas"] = {"threads": threads, "how": how}
    if "torch" in sys.modules or importlib.util.find_spec("torch") is not None:
        import torch

        info["torch"] = {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads()}
    info["onnxruntime"] = {
        "intra_op": configured if configured is not None else "default (one per physical core)",
        "inter_op": 1,
    }
    return info


def gpu_info() -> dict[str, Any]:
    """GPUs, driver and CUDA versions, from the CUDA bindings and ``nvidia-smi``; ``available`` False with a reason."""
    info: dict[str, Any] = {"available": False}
    try:
        from sgjnd.runtime import cuda

        api = cuda.load_cuda()
        info["cuda"] = api.versions()
        count = api.device_count()
        info["devices"] = [_device(api.device_info(i)) for i in range(count)]
        info["available"] = count > 0
        if count == 0:
            info["reason"] = "CUDA reports 0 devices"
    except Exception as exc:  # no bindings, no driver, no device: each is a reason to record, not an error
        info["reason"] = str(exc)
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run(
                [smi, "--query-gpu=name,driver_version,memory.total,clocks.max.sm", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=10, check=True,
            )
            info["nvidia_smi"] = [line.strip() for line in out.stdout.splitlines() if line.strip()]
        except (OSError, subprocess.SubprocessError) as exc:
            info["nvidia_smi"] = f"failed: {exc}"
    else:
        info["nvidia_smi"] = "not found"
    return info


def _device(device: Any) -> dict[str, Any]:
    return {
        "index": device.index,
        "name": device.name,
        "compute_capability": device.compute_capability,
        "memory_gib": round(device.total_memory / 2**30, 2),
    }


def machine_info(threads: int | None = None) -> dict[str, Any]:
    """Everything :func:`sgjnd.environment.environment` reports, plus ``threads`` and ``gpu``."""
    from sgjnd import __version__
    from sgjnd.environment import environment

    env = environment()
    env["sgjnd"] = __version__
    env["threads"] = thread_info(threads)
    env["gpu"] = gpu_info()
    return env
