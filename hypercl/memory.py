"""Peak memory of the tensors a piece of code allocates, on the CPU as on CUDA.

CUDA has ``torch.cuda.max_memory_allocated``; the CPU allocator keeps no such counter. :class:`PeakTensorMemory`
counts instead every tensor storage created while it is active (a ``TorchDispatchMode`` sees each op's outputs,
the backward pass's and the optimizer's included, since the CPU autograd engine runs on the calling thread) and
releases it when its last tensor is freed. Outputs that share a storage with an input (views, in-place results) are
not new memory. What it measures: the peak of bytes allocated by the code on top of what existed before (parameters,
stored targets, optimizer state that existed before), in storage bytes, without the allocator's slack.
"""

from __future__ import annotations

import weakref
from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

__all__ = ["PeakTensorMemory", "peak_bytes"]


class PeakTensorMemory(TorchDispatchMode):
    """Context manager: ``.peak`` = the largest number of bytes held at once by storages created inside it,
    ``.current`` = those still alive at the end (e.g. new ``.grad`` tensors)."""

    def __init__(self) -> None:
        super().__init__()
        self._refs: dict[int, int] = {}
        self._size: dict[int, int] = {}
        self.current = 0
        self.peak = 0

    def _release(self, key: int) -> None:
        self._refs[key] -= 1
        if self._refs[key] == 0:
            del self._refs[key]
            self.current -= self._size.pop(key)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        leaves = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        inputs = {id(t) for t in leaves}
        input_storages = {t.untyped_storage().data_ptr() for t in leaves if t.device.type != "meta"}
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor) or id(t) in inputs or t.device.type == "meta":
                continue
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key in self._refs:
                self._refs[key] += 1
            elif key in input_storages or storage.nbytes() == 0:
                continue  # a view of (or in place on) a tensor that existed before
            else:
                self._refs[key] = 1
                self._size[key] = storage.nbytes()
                self.current += storage.nbytes()
                self.peak = max(self.peak, self.current)
            weakref.finalize(t, self._release, key)
        return out


def peak_bytes(fn: Callable[[], Any], device: torch.device) -> int:
    """Peak bytes allocated by one call of ``fn`` above what was allocated before it (CUDA: the allocator's own
    counter; CPU: :class:`PeakTensorMemory`)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return int(torch.cuda.max_memory_allocated(device) - base)
    with PeakTensorMemory() as m:
        fn()
    return int(m.peak)
