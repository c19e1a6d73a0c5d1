"""Split CIFAR-10/100 (von Oswald et al. 2020, section 4.2): CIFAR-10, then 10-class slices of CIFAR-100.

Task 0 is all of CIFAR-10 (10 classes, ``class_offset`` 0). Task ``k = 1..5`` holds the CIFAR-100 *fine* label ids
``10(k-1) .. 10k-1`` in numeric order (local label ``fine - 10(k-1)``, ``class_offset = 10k``).
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch

from .benchmark_base import Benchmark, first_n
from .cifar import CIFARArrays, load_cifar10, load_cifar100
from .paths import PathLike
from .tasks import TaskData

__all__ = ["SplitCIFAR10_100", "CIFAR10_MEAN", "CIFAR10_STD", "CIFAR100_MEAN", "CIFAR100_STD"]

# Per-channel (R, G, B) mean and standard deviation of the training images scaled to [0, 1].
CIFAR10_MEAN: Tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
CIFAR10_STD: Tuple[float, float, float] = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN: Tuple[float, float, float] = (0.5071, 0.4865, 0.4409)
CIFAR100_STD: Tuple[float, float, float] = (0.2673, 0.2564, 0.2762)


def _normalise(images: torch.Tensor, mean: Tuple[float, ...], std: Tuple[float, ...]) -> torch.Tensor:
    m = torch.tensor(mean, dtype=torch.float32).reshape(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).reshape(1, 3, 1, 1)
    return images.to(torch.float32).div_(255.0).sub_(m).div_(s)


class SplitCIFAR10_100(Benchmark):
    """Split CIFAR-10/100: task 0 = CIFAR-10, tasks 1..5 = CIFAR-100 fine classes 0-9, 10-19, ..., 40-49.

    Inputs: float32 images (N, 3, 32, 32), ``x / 255`` (in [0, 1]) normalised per channel with fixed statistics
    of the training set the task comes from: :data:`CIFAR10_MEAN` / :data:`CIFAR10_STD` for task 0,
    :data:`CIFAR100_MEAN` / :data:`CIFAR100_STD` for the CIFAR-100 tasks (``normalize=False`` keeps [0, 1]).
    Labels are local 0..9; the global label is ``class_offset + y`` with ``class_offset = 10 t``, so the
    class-incremental head has 60 classes. ``num_tasks`` (1..11) keeps fewer or more CIFAR-100 slices
    (up to all 100 fine classes). ``max_train_per_task`` / ``max_test_per_task`` keep the first k samples of each
    task (in file order). ``cifar10`` / ``cifar100`` accept already loaded :class:`CIFARArrays`.

    Memory: about 0.6 GB (train) + 0.12 GB (test) of float32 for CIFAR-10 and half that for 5 CIFAR-100 tasks.
    """

    name = "split_cifar"

    def __init__(
        self,
        root: Optional[PathLike] = None,
        download: bool = True,
        max_train_per_task: Optional[int] = None,
        max_test_per_task: Optional[int] = None,
        *,
        verify: bool = True,
        num_tasks: int = 6,
        normalize: bool = True,
        cifar10: Optional[CIFARArrays] = None,
        cifar100: Optional[CIFARArrays] = None,
    ) -> None:
        if not 1 <= num_tasks <= 11:
            raise ValueError(f"num_tasks must be in 1..11 (CIFAR-10 + up to 10 CIFAR-100 slices), got {num_tasks}")
        c10 = cifar10 if cifar10 is not None else load_cifar10(root, download=download, verify=verify)
        c100: Optional[CIFARArrays] = None
        if num_tasks > 1:
            c100 = cifar100 if cifar100 is not None else load_cifar100(root, download=download, verify=verify)
        self.input_shape: Tuple[int, int, int] = (3, 32, 32)
        self.input_dim = 3 * 32 * 32
        self.classes_per_task = 10
        self.normalize = normalize
        self.stats: List[Tuple[Tuple[float, ...], Tuple[float, ...]]] = []
        self.tasks = []
        for t in range(num_tasks):
            if t == 0:
                data, lo, mean, std, label = c10, 0, CIFAR10_MEAN, CIFAR10_STD, "cifar10"
            else:
                assert c100 is not None
                lo = 10 * (t - 1)
                data, mean, std, label = c100, CIFAR100_MEAN, CIFAR100_STD, f"cifar100/{lo}-{lo + 9}"
            if not normalize:
                mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
            self.stats.append((mean, std))
            split: dict[str, torch.Tensor] = {}
            for part, images, labels, limit in (
                ("train", data.train_images, data.train_labels, max_train_per_task),
                ("test", data.test_images, data.test_labels, max_test_per_task),
            ):
                if tuple(images.shape[1:]) != self.input_shape:
                    raise ValueError(f"CIFAR images must be (N, 3, 32, 32), got {tuple(images.shape)}")
                idx = first_n(limit, torch.nonzero((labels >= lo) & (labels < lo + 10)).flatten())
                split[f"x_{part}"] = _normalise(images[idx], mean, std)
                split[f"y_{part}"] = (labels[idx] - lo).to(torch.int64)
            self.tasks.append(
                TaskData(
                    name=f"split_cifar/{label}",
                    num_classes=10,
                    class_offset=10 * t,
                    x_train=split["x_train"],
                    y_train=split["y_train"],
                    x_test=split["x_test"],
                    y_test=split["y_test"],
                )
            )

    def pad_fill(self, task: int) -> torch.Tensor:
        """Per-channel value of a black pixel in task ``task``'s normalised space (``-mean / std``, shape (3,)).

        Pass it as ``fill`` to :func:`hypercl.data.augment.random_crop_flip` to pad with black like torchvision.
        """
        mean, std = self.stats[task]
        return -torch.tensor(mean, dtype=torch.float32) / torch.tensor(std, dtype=torch.float32)
