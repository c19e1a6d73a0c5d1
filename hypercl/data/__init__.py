"""Datasets and continual-learning benchmarks (no torchvision needed).

Files use torchvision's on-disk layout under a data root (see :func:`resolve_data_root`),
are md5-checked, and are downloaded atomically when missing (unless ``download=False``).
"""

from .augment import random_crop_flip
from .benchmarks import BENCHMARKS, Benchmark, PermutedMNIST, SplitMNIST, get_benchmark, task_permutation
from .cifar import CIFARArrays, load_cifar10, load_cifar100
from .cifar_benchmark import CIFAR10_MEAN, CIFAR10_STD, CIFAR100_MEAN, CIFAR100_STD, SplitCIFAR10_100
from .errors import DatasetIntegrityError, DatasetNotFoundError
from .idx import read_idx
from .mnist import MNISTArrays, load_mnist, torchvision_mnist_root
from .paths import resolve_data_root
from .tasks import PermutedImages, TaskData

__all__ = [
    "resolve_data_root",
    "read_idx",
    "load_mnist",
    "torchvision_mnist_root",
    "load_cifar10",
    "load_cifar100",
    "MNISTArrays",
    "CIFARArrays",
    "TaskData",
    "Benchmark",
    "SplitMNIST",
    "PermutedMNIST",
    "SplitCIFAR10_100",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR100_MEAN",
    "CIFAR100_STD",
    "random_crop_flip",
    "PermutedImages",
    "task_permutation",
    "get_benchmark",
    "BENCHMARKS",
    "DatasetNotFoundError",
    "DatasetIntegrityError",
]
