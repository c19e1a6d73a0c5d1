"""CPU allocator setting that removes a page-fault pathology of training on CPU.

glibc's ``malloc`` serves blocks above ``M_MMAP_THRESHOLD`` (128 KiB to 32 MiB, adapted at run time) with fresh
``mmap`` pages and returns them to the system on ``free``. A training step allocates and frees tensors of several MB
(the ``(T−1, N)`` weights the regulariser of eq. 2/3 generates for all old tasks, their gradients, the padded chunk
output), so every step faults in fresh zero pages for them again. Measured with ``hypercl bench`` (Split MNIST config,
task 5, one thread): HNET_IWR's step went from 46.9 ms to 32.6 ms when freed memory stays in the heap.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory(mmap_threshold: int = 1 << 30, trim_threshold: int = 1 << 34) -> bool:
    """Ask glibc to serve blocks below ``mmap_threshold`` bytes from the heap and to keep up to ``trim_threshold``
    bytes of freed heap instead of returning it to the system, so a block freed in one training step is reused in
    the next without page faults. Process-wide; the command line (``hypercl run/bench/ablation``) calls it.

    Returns False (and changes nothing) where the C library is not glibc (macOS, Windows, musl).
    """
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    mmap_threshold = min(int(mmap_threshold), (1 << 31) - 1)
    trim_threshold = min(int(trim_threshold), (1 << 31) - 1)
    ok = mallopt(_M_MMAP_THRESHOLD, mmap_threshold) == 1 or mallopt(_M_MMAP_THRESHOLD, 32 << 20) == 1  # older max
    return ok and mallopt(_M_TRIM_THRESHOLD, trim_threshold) == 1
