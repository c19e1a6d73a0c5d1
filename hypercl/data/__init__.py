"""Datasets and continual-learning benchmarks (no torchvision needed).

Files use torchvision's on-disk layout under a data root (see :func:`resolve_data_root`),
are md5-checked, and are downloaded atomically when missing (unless ``download=False``).
"""

from .benchmarks import BENCHMARKS, Benchmark, PermutedMNIST, SplitMNIST, get_benchmark, task_permutation
from .cifar import CIFARArrays, load_cifar10, load_cifar100
from .errors import DatasetIntegrityError, DatasetNotFoundError
from .idx import read_idx
from .mnist import MNISTArrays, load_mnist
from .paths import resolve_data_root
from .tasks import PermutedImages, TaskData

__all__ = [
    "resolve_data_root",
    "read_idx",
    "load_mnist",
    "load_cifar10",
    "load_cifar100",
    "MNISTArrays",
    "CIFARArrays",
    "TaskData",
    "Benchmark",
    "SplitMNIST",
    "PermutedMNIST",
    "PermutedImages",
    "task_permutation",
    "get_benchmark",
    "BENCHMARKS",
    "DatasetNotFoundError",
    "DatasetIntegrityError",
]
