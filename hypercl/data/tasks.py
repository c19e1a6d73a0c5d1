"""Per-task tensors: :class:`TaskData` and the lazy :class:`PermutedImages` view."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Dict, Optional, Tuple, Union

import torch

__all__ = ["TaskData", "PermutedImages", "SharedBase", "Inputs"]

Device = Union[str, torch.device]


class SharedBase:
    """One base tensor plus its copies on other devices, shared by several views."""

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor
        self._copies: Dict[str, torch.Tensor] = {str(tensor.device): tensor}

    def on(self, device: Device) -> SharedBase:
        """The shared base on ``device`` (moved once per device, then cached)."""
        key = str(torch.device(device))
        if key not in self._copies:
            moved = self.tensor.to(device)
            self._copies[key] = moved
            self._copies.setdefault(str(moved.device), moved)
        target = self._copies[key]
        if target is self.tensor:
            return self
        other = SharedBase.__new__(SharedBase)
        other.tensor = target
        other._copies = self._copies  # all devices share one cache
        return other


class PermutedImages:
    """Lazy view ``base[:, perm]`` of flattened images: ``x[idx]`` permutes only the batch.

    Several tasks share one ``base`` (float32, (N, D)); each holds only its permutation
    (D longs). ``.to(device)`` moves the base once per device for all views sharing it.
    """

    def __init__(self, base: Union[torch.Tensor, SharedBase], perm: torch.Tensor) -> None:
        self._base = base if isinstance(base, SharedBase) else SharedBase(base)
        if self._base.tensor.dim() != 2:
            raise ValueError(f"base must be 2-D (N, D), got shape {tuple(self._base.tensor.shape)}")
        if perm.shape != (self._base.tensor.shape[1],):
            raise ValueError(f"perm must have shape ({self._base.tensor.shape[1]},), got {tuple(perm.shape)}")
        self.perm = perm.to(device=self._base.tensor.device, dtype=torch.long)

    @property
    def shared_base(self) -> SharedBase:
        """The unpermuted images, shared (not copied) between the tasks that permute them."""
        return self._base

    @property
    def base(self) -> torch.Tensor:
        """The shared, unpermuted (N, D) tensor."""
        return self._base.tensor

    @property
    def shape(self) -> torch.Size:
        return self._base.tensor.shape

    @property
    def dtype(self) -> torch.dtype:
        return self._base.tensor.dtype

    @property
    def device(self) -> torch.device:
        return self._base.tensor.device

    @property
    def ndim(self) -> int:
        return 2

    def dim(self) -> int:
        return 2

    def size(self, dim: Optional[int] = None):
        """Like :meth:`torch.Tensor.size`."""
        return self.shape if dim is None else self.shape[dim]

    def __len__(self) -> int:
        return self._base.tensor.shape[0]

    def __getitem__(self, idx) -> torch.Tensor:
        return self._base.tensor[idx][..., self.perm]

    def to(self, device: Device) -> PermutedImages:
        """Same view on ``device``; views that shared a base keep sharing it there."""
        return PermutedImages(self._base.on(device), self.perm)

    def materialize(self) -> torch.Tensor:
        """The full permuted tensor (N, D) (allocates a copy)."""
        return self._base.tensor[:, self.perm]

    def __repr__(self) -> str:
        return f"PermutedImages(shape={tuple(self.shape)}, dtype={self.dtype}, device={self.device})"


#: a task's inputs: a float32 tensor, a :class:`PermutedImages`, or any view indexable by sample index
#: (:class:`~hypercl.data.datasets.DatasetView`)
Inputs = Any


@dataclass
class TaskData:
    """One task: inputs (float32 tensor or :class:`PermutedImages`) and LOCAL int64 labels.

    Labels are in ``0..num_classes-1``; the global label is ``class_offset + label``.
    """

    name: str
    x_train: Inputs
    y_train: torch.Tensor
    x_test: Inputs
    y_test: torch.Tensor
    num_classes: int
    class_offset: int
    #: the validation split held out of the training data (``val_size``): ``(X, Y)``, or ``None``
    val: Optional[Tuple[Inputs, torch.Tensor]] = None

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if len(x) != len(y):
                raise ValueError(f"task {self.name}: {len(x)} {split} inputs but {len(y)} labels")

    @property
    def input_shape(self) -> Tuple[int, ...]:
        """Shape of one input (without the batch dimension)."""
        return tuple(self.x_train.shape[1:])

    def global_labels(self, y: torch.Tensor) -> torch.Tensor:
        """Map local labels to global ones (``class_offset + y``)."""
        return y + self.class_offset

    def to(self, device: Device) -> TaskData:
        """A copy of this task with every tensor on ``device``."""
        return replace(
            self,
            x_train=self.x_train.to(device),
            y_train=self.y_train.to(device),
            x_test=self.x_test.to(device),
            y_test=self.y_test.to(device),
            val=None if self.val is None else (self.val[0].to(device), self.val[1].to(device)),
        )
