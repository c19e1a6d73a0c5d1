"""The benchmark base class shared by the MNIST and CIFAR benchmarks: a sequence of :class:`TaskData`."""

from __future__ import annotations

from typing import Iterator, List, Optional

import torch

from .tasks import TaskData

__all__ = ["Benchmark", "first_n"]


class Benchmark:
    """A sequence of tasks; iterate it, index it, or use ``.tasks``."""

    name: str = ""
    tasks: List[TaskData]
    input_dim: int
    classes_per_task: int

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    @property
    def total_classes(self) -> int:
        """Number of distinct global labels (for the class-incremental, CL3, head)."""
        return max(t.class_offset + t.num_classes for t in self.tasks)

    def __len__(self) -> int:
        return len(self.tasks)

    def __getitem__(self, i: int) -> TaskData:
        return self.tasks[i]

    def __iter__(self) -> Iterator[TaskData]:
        return iter(self.tasks)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_tasks={self.num_tasks}, input_dim={self.input_dim}, "
            f"classes_per_task={self.classes_per_task})"
        )


def first_n(n: Optional[int], x: torch.Tensor) -> torch.Tensor:
    """The first ``n`` rows of ``x`` (all when ``n`` is None)."""
    if n is not None and n < 0:
        raise ValueError(f"max_*_per_task must be >= 0, got {n}")
    return x if n is None else x[:n]
