"""Continual-learning benchmarks built from MNIST: Split MNIST and Permuted MNIST.

The data is loaded once into tensors; a task is a :class:`TaskData` (no DataLoader).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F

from .benchmark_base import Benchmark, first_n
from .cifar_benchmark import SplitCIFAR10_100
from .mnist import MNISTArrays, load_mnist
from .paths import PathLike
from .tasks import Inputs, PermutedImages, SharedBase, TaskData

__all__ = [
    "Benchmark",
    "SplitMNIST",
    "PermutedMNIST",
    "SplitCIFAR10_100",
    "get_benchmark",
    "task_permutation",
    "BENCHMARKS",
]


def _get_arrays(arrays: Optional[MNISTArrays], root, download: bool, verify: bool) -> MNISTArrays:
    return arrays if arrays is not None else load_mnist(root, download=download, verify=verify)


class SplitMNIST(Benchmark):
    """Split MNIST: 5 binary tasks {0,1}, {2,3}, {4,5}, {6,7}, {8,9}.

    Inputs: images flattened to 784 float32 values ``x / 255`` in [0, 1] (no normalisation).
    Task t has local labels {0, 1} (digit ``2t`` -> 0, ``2t+1`` -> 1) and ``class_offset = 2t``.
    ``max_train_per_task`` / ``max_test_per_task`` keep the first k samples of each task
    (in MNIST order). ``arrays`` lets you pass already loaded :class:`MNISTArrays`.
    """

    name = "split_mnist"

    def __init__(
        self,
        root: Optional[PathLike] = None,
        download: bool = True,
        max_train_per_task: Optional[int] = None,
        max_test_per_task: Optional[int] = None,
        *,
        verify: bool = True,
        arrays: Optional[MNISTArrays] = None,
    ) -> None:
        data = _get_arrays(arrays, root, download, verify)
        self.input_dim = 28 * 28
        self.classes_per_task = 2
        self.tasks = []
        for t in range(5):
            lo = 2 * t
            split: dict[str, torch.Tensor] = {}
            for part, images, labels, limit in (
                ("train", data.train_images, data.train_labels, max_train_per_task),
                ("test", data.test_images, data.test_labels, max_test_per_task),
            ):
                idx = first_n(limit, torch.nonzero((labels == lo) | (labels == lo + 1)).flatten())
                split[f"x_{part}"] = images[idx].reshape(len(idx), -1).to(torch.float32).div_(255.0)
                split[f"y_{part}"] = (labels[idx] - lo).to(torch.int64)
            self.tasks.append(
                TaskData(
                    name=f"split_mnist/{lo}-{lo + 1}",
                    num_classes=2,
                    class_offset=lo,
                    x_train=split["x_train"],
                    y_train=split["y_train"],
                    x_test=split["x_test"],
                    y_test=split["y_test"],
                )
            )


def task_permutation(seed: int, task: int, dim: int) -> torch.Tensor:
    """The pixel permutation of Permuted-MNIST task ``task`` for ``seed`` (int64, (dim,)).

    ``torch.randperm(dim, generator=torch.Generator().manual_seed(s))`` with
    ``s = SeedSequence([seed, task])``'s first 63-bit state, so every (seed, task) pair
    gets an independent permutation (seed 1 does not reuse the tasks of seed 0).
    """
    if seed < 0 or task < 0:
        raise ValueError("seed and task must be >= 0")
    state = np.random.SeedSequence([seed, task]).generate_state(2, dtype=np.uint32)
    task_seed = ((int(state[0]) << 32) | int(state[1])) & ((1 << 63) - 1)
    return torch.randperm(dim, generator=torch.Generator().manual_seed(task_seed))


def _pad_flat(images: torch.Tensor, pad_to: Optional[int]) -> torch.Tensor:
    x = images.to(torch.float32).div_(255.0)
    size = images.shape[-1]
    if pad_to is not None and pad_to != size:
        if pad_to < size:
            raise ValueError(f"pad_to={pad_to} is smaller than the image size {size}")
        before = (pad_to - size) // 2
        after = pad_to - size - before
        x = F.pad(x, (before, after, before, after))
    return x.reshape(x.shape[0], -1).contiguous()


class PermutedMNIST(Benchmark):
    """Permuted MNIST: every task is all of MNIST (10 classes) under a fixed pixel permutation.

    Images are zero-padded to ``pad_to`` x ``pad_to`` (32, as von Oswald et al. 2020; None
    or 28 for no padding; the digit is centred), flattened and scaled to [0, 1] (``x / 255``).
    Task t uses :func:`task_permutation` ``(seed, t, input_dim)``; task 0 is the identity
    when ``first_identity`` (customary: the first task is plain MNIST). Labels are local
    0..9 with ``class_offset = 10 * t`` (so CL3 is ``10 * num_tasks``-way).

    Memory: the padded images are stored once (float32); each task's ``x_train``/``x_test``
    is a :class:`PermutedImages` view (base, perm) that permutes only the requested batch.
    ``max_*_per_task`` keep the first k images of the train/test set (the same for every task).
    """

    name = "permuted_mnist"

    def __init__(
        self,
        num_tasks: int = 10,
        root: Optional[PathLike] = None,
        seed: int = 0,
        pad_to: Optional[int] = 32,
        first_identity: bool = True,
        download: bool = True,
        max_train_per_task: Optional[int] = None,
        max_test_per_task: Optional[int] = None,
        *,
        verify: bool = True,
        arrays: Optional[MNISTArrays] = None,
    ) -> None:
        if num_tasks < 1:
            raise ValueError(f"num_tasks must be >= 1, got {num_tasks}")
        data = _get_arrays(arrays, root, download, verify)
        self.seed = seed
        self.pad_to = pad_to
        self.classes_per_task = 10
        train_base = SharedBase(_pad_flat(first_n(max_train_per_task, data.train_images), pad_to))
        test_base = SharedBase(_pad_flat(first_n(max_test_per_task, data.test_images), pad_to))
        y_train = first_n(max_train_per_task, data.train_labels).to(torch.int64)
        y_test = first_n(max_test_per_task, data.test_labels).to(torch.int64)
        self.input_dim = int(train_base.tensor.shape[1])
        self.permutations: List[torch.Tensor] = []
        self.tasks = []
        for t in range(num_tasks):
            if t == 0 and first_identity:
                perm = torch.arange(self.input_dim)
            else:
                perm = task_permutation(seed, t, self.input_dim)
            self.permutations.append(perm)
            self.tasks.append(
                TaskData(
                    name=f"permuted_mnist/{t}",
                    x_train=PermutedImages(train_base, perm),
                    y_train=y_train,
                    x_test=PermutedImages(test_base, perm),
                    y_test=y_test,
                    num_classes=10,
                    class_offset=10 * t,
                )
            )


BENCHMARKS: Dict[str, Callable[..., Benchmark]] = {
    "split_mnist": SplitMNIST,
    "permuted_mnist": PermutedMNIST,
    "split_cifar": SplitCIFAR10_100,
}


def get_benchmark(name: str, **kwargs: Any) -> Benchmark:
    """Build a benchmark by name ("split_mnist", "permuted_mnist", "split_cifar"; '-' and case ignored)."""
    key = name.strip().lower().replace("-", "_")
    if key not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {name!r}; valid names: {', '.join(sorted(BENCHMARKS))}")
    val_size = int(kwargs.pop("val_size", 0) or 0)
    bench = BENCHMARKS[key](**kwargs)
    if val_size:
        hold_out_validation(bench, val_size)
    return bench


def hold_out_validation(bench: Benchmark, val_size: int) -> Benchmark:
    """Per task, the LAST ``val_size`` training samples (a deterministic carve) become ``task.val = (X, Y)``;
    training then sees only the rest. Tasks sharing one permuted base keep sharing (sliced once)."""
    from .tasks import PermutedImages

    if val_size < 0:
        raise ValueError(f"val_size must be >= 0, got {val_size}")
    carved: dict[int, tuple] = {}
    for i, task in enumerate(bench.tasks):
        n = len(task.y_train)
        if val_size >= n:
            raise ValueError(f"val_size={val_size} leaves no training data in task {task.name} ({n} samples)")
        x, y = task.x_train, task.y_train
        x_train: Inputs
        x_val: Inputs
        if isinstance(x, PermutedImages):
            base = x.shared_base
            if id(base) not in carved:
                carved[id(base)] = (SharedBase(base.tensor[: n - val_size]), SharedBase(base.tensor[n - val_size :]))
            tr, va = carved[id(base)]
            x_train, x_val = PermutedImages(tr, x.perm), PermutedImages(va, x.perm)
        else:
            x_train, x_val = x[: n - val_size], x[n - val_size :]
        bench.tasks[i] = replace(task, x_train=x_train, y_train=y[: n - val_size], val=(x_val, y[n - val_size :]))
    return bench
