"""The compute device in words, for results files and logs."""

from __future__ import annotations

import os
import platform

import torch

__all__ = ["device_name"]


def device_name(dev: torch.device) -> str:
    """``"cuda (NVIDIA H100 ...)"`` or ``"cpu (x86_64, 16 cores, 4 threads)"``: what ran a job."""
    if dev.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(dev)})"
    cpu = platform.processor() or platform.machine()
    return f"cpu ({cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)"
