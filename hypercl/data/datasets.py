"""Any map-style dataset with integer targets (``torchvision.datasets.MNIST``, ``FakeData``, ``ImageFolder``, ...)
as a Split or Permuted benchmark, read lazily: no copy into tensors by hand, the dataset's own transforms applied.

A task's ``x_train`` / ``x_test`` is a :class:`DatasetView`: indexing it with a batch of sample indices reads those
samples through ``dataset[i]`` (so random augmentation in the dataset's transform runs per access) and stacks them;
the learner batches it by index like an in-memory tensor. Labels are read once, from ``dataset.targets`` when the
dataset has it (torchvision's MNIST, CIFAR, ImageFolder), otherwise by reading every sample once.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import torch

from .benchmarks import Benchmark, task_permutation
from .tasks import TaskData

__all__ = ["DatasetView", "dataset_targets", "split_dataset", "permuted_dataset"]


def dataset_targets(dataset: Any) -> torch.Tensor:
    """The integer class of every sample (int64, ``(N,)``): ``dataset.targets`` if present, else ``dataset[i][1]``."""
    targets = getattr(dataset, "targets", None)
    if targets is None:
        targets = [dataset[i][1] for i in range(len(dataset))]
    t = torch.as_tensor(targets)
    if t.dim() != 1 or t.is_floating_point() or t.dtype == torch.bool or len(t) != len(dataset):
        raise ValueError(
            f"{type(dataset).__name__}: targets must be one integer class per sample, got dtype "
            f"{t.dtype} and shape {tuple(t.shape)} for {len(dataset)} samples"
        )
    return t.to(torch.int64)


class DatasetView:
    """Samples ``indices`` of a map-style ``dataset``, read on access: ``view[idx]`` (an int, a slice or an index
    tensor) is the stacked inputs ``dataset[i][0]``; with ``permutation`` each input is flattened and its values
    permuted (Permuted benchmarks)."""

    def __init__(
        self,
        dataset: Any,
        indices: torch.Tensor,
        permutation: Optional[torch.Tensor] = None,
        device: Union[str, torch.device] = "cpu",
    ) -> None:
        self.dataset = dataset
        self.indices = torch.as_tensor(indices, dtype=torch.int64).reshape(-1)
        self.permutation = permutation
        self._device = torch.device(device)
        first = self._read(self.indices[:1]) if len(self.indices) else None
        self._sample_shape = tuple(first.shape[1:]) if first is not None else ()
        self._dtype = first.dtype if first is not None else torch.float32

    def _read(self, picked: torch.Tensor) -> torch.Tensor:
        xs = []
        for i in picked.tolist():
            x = self.dataset[i][0]
            if not isinstance(x, torch.Tensor):
                raise TypeError(
                    f"{type(self.dataset).__name__}[{i}] gives inputs of type {type(x).__name__}; give the "
                    "dataset a transform that returns tensors (e.g. torchvision.transforms.ToTensor())"
                )
            xs.append(x)
        out = torch.stack(xs)
        if self.permutation is not None:
            out = out.reshape(len(out), -1)[:, self.permutation]
        return out.to(self._device)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, idx: Any) -> torch.Tensor:
        if isinstance(idx, int):
            return self._read(self.indices[idx : idx + 1])[0]
        return self._read(self.indices[idx.cpu() if isinstance(idx, torch.Tensor) else idx])

    @property
    def shape(self) -> torch.Size:
        return torch.Size((len(self), *self._sample_shape))

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    @property
    def device(self) -> torch.device:
        return self._device

    def dim(self) -> int:
        return len(self.shape)

    def materialize(self) -> torch.Tensor:
        """All samples read once into one tensor (the transform applied once: for deterministic transforms)."""
        return self._read(self.indices)

    def to(self, device: Union[str, torch.device]) -> DatasetView:
        """The same view, its batches delivered on ``device``."""
        return DatasetView(self.dataset, self.indices, self.permutation, device)

    def __repr__(self) -> str:
        return f"DatasetView({type(self.dataset).__name__}, shape={tuple(self.shape)}, device={self.device})"


def _lazy(view: DatasetView) -> Any:
    """A view where TaskData types its inputs as a tensor: the learner indexes both alike (``hypercl.batches``)."""
    return view


class DatasetBenchmark(Benchmark):
    """A benchmark whose tasks read a map-style dataset lazily (:func:`split_dataset`, :func:`permuted_dataset`)."""

    def __init__(self, name: str, tasks: list[TaskData], classes_per_task: int) -> None:
        self.name = name
        self.tasks = tasks
        self.classes_per_task = classes_per_task
        shape = tasks[0].input_shape
        self.input_dim = int(torch.Size(shape).numel())


def split_dataset(
    train: Any,
    test: Any,
    classes_per_task: int = 2,
    num_tasks: Optional[int] = None,
    class_order: Optional[Sequence[int]] = None,
    name: str = "split",
    in_memory: bool = False,
) -> DatasetBenchmark:
    """Split a dataset's classes into tasks of ``classes_per_task`` classes (in ``class_order``, default ascending
    class ids; ``num_tasks`` default: as many as fit). Task ``t``'s local label ``i`` is class
    ``class_order[t * classes_per_task + i]``. ``in_memory``: read every sample once into tensors (fast batches;
    a random transform is then drawn once per sample, not per access)."""
    y_train, y_test = dataset_targets(train), dataset_targets(test)
    order = [int(c) for c in (class_order if class_order is not None else torch.unique(y_train).tolist())]
    if len(set(order)) != len(order):
        raise ValueError(f"class_order repeats a class: {order}")
    if classes_per_task <= 0 or classes_per_task > len(order):
        raise ValueError(f"classes_per_task must be in 1..{len(order)} (the dataset's classes), got {classes_per_task}")
    fit = len(order) // classes_per_task
    n = fit if num_tasks is None else int(num_tasks)
    if not 1 <= n <= fit:
        raise ValueError(
            f"num_tasks must be in 1..{fit} for {len(order)} classes and {classes_per_task} per task, got {num_tasks}"
        )
    tasks = []
    for t in range(n):
        classes = torch.tensor(order[t * classes_per_task : (t + 1) * classes_per_task])
        split: dict[str, Any] = {}
        for part, ds, y in (("train", train, y_train), ("test", test, y_test)):
            idx = torch.nonzero(torch.isin(y, classes)).flatten()
            if len(idx) == 0:
                raise ValueError(f"task {t}: the {part} dataset has no sample of classes {classes.tolist()}")
            view = DatasetView(ds, idx)
            split[f"x_{part}"] = view.materialize() if in_memory else view
            split[f"y_{part}"] = (y[idx].unsqueeze(1) == classes).int().argmax(1)
        tasks.append(
            TaskData(
                name=f"{name}/{'-'.join(map(str, classes.tolist()))}",
                num_classes=classes_per_task,
                class_offset=t * classes_per_task,
                **split,
            )
        )
    return DatasetBenchmark(name, tasks, classes_per_task)


def permuted_dataset(
    train: Any, test: Any, num_tasks: int = 10, seed: int = 0, first_identity: bool = True, name: str = "permuted"
) -> DatasetBenchmark:
    """``num_tasks`` tasks over all of the dataset's classes, task ``t``'s inputs flattened and permuted by
    :func:`~hypercl.data.benchmarks.task_permutation` (``seed``, ``t``); task 0 unpermuted if ``first_identity``."""
    if num_tasks <= 0:
        raise ValueError(f"num_tasks must be positive, got {num_tasks}")
    y_train, y_test = dataset_targets(train), dataset_targets(test)
    k = int(max(int(y_train.max()), int(y_test.max()))) + 1
    dim = DatasetView(train, torch.arange(1)).shape[1:].numel()
    tasks = []
    for t in range(num_tasks):
        perm = torch.arange(dim) if (t == 0 and first_identity) else task_permutation(seed, t, dim)
        tasks.append(
            TaskData(
                name=f"{name}/{t}",
                num_classes=k,
                class_offset=t * k,
                x_train=_lazy(DatasetView(train, torch.arange(len(y_train)), perm)),
                y_train=y_train,
                x_test=_lazy(DatasetView(test, torch.arange(len(y_test)), perm)),
                y_test=y_test,
            )
        )
    return DatasetBenchmark(name, tasks, k)
