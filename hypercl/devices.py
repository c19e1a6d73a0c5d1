"""The compute device in words, for results files and logs."""

from __future__ import annotations

import os
import platform

import torch

__all__ = ["device_name"]


def device_name(dev: torch.device) -> str:
    """``"cuda (NVIDIA H100 ...)"`` or ``"cpu (x86_64, AVX2, 16 cores, 4 threads)"``: what ran a job. On a CPU the
    kernel path torch dispatches to (``ATEN_CPU_CAPABILITY`` selects one) and the thread count decide the
    floating-point summation order, so both are named: the same run reproduces its digits only with both equal."""
    if dev.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(dev)})"
    cpu = platform.processor() or platform.machine()
    path = torch.backends.cpu.get_cpu_capability()
    return f"cpu ({cpu}, {path}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)"
