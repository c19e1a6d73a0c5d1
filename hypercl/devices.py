"""The compute device in words, for results files and logs."""

from __future__ import annotations

import os
import platform
from typing import Any

import torch

__all__ = ["device_name", "digits_environment"]


def device_name(dev: torch.device) -> str:
    """``"cuda (NVIDIA H100 ...)"`` or ``"cpu (x86_64, AVX2, 16 cores, 4 threads)"``: what ran a job. On a CPU the
    kernel path torch dispatches to (``ATEN_CPU_CAPABILITY`` selects one) and the thread count decide the
    floating-point summation order, so both are named: the same run reproduces its digits only with both equal."""
    if dev.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(dev)})"
    cpu = platform.processor() or platform.machine()
    env = digits_environment()
    return f"cpu ({cpu}, {env['cpu_capability']}, {os.cpu_count()} cores, {env['threads']} threads)"


def digits_environment() -> dict[str, Any]:
    """What besides the run configuration decides a CPU run's digits, for a results record: the torch build, the
    thread count and the CPU kernel path torch dispatches to (``ATEN_CPU_CAPABILITY`` selects one)."""
    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    }
