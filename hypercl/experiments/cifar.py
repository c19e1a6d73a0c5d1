"""Split CIFAR-10/100 pieces of the runner: the ResNet target and the on-device augmentation (random crop + flip per
task). The speed extrapolation of the seed paper's protocol lives in :mod:`hypercl.experiments.cifar_speed`."""

from __future__ import annotations

import importlib
import warnings
from typing import Any, Mapping, Optional, Sequence, Union

import torch

from ..config import AugmentConfig, TargetConfig
from ..data.augment import random_crop_flip

__all__ = ["resnet_target", "TaskAugment", "make_train_transform"]


def resnet_target(
    target: Union[TargetConfig, Mapping[str, Any]], num_outputs: int, in_channels: int = 3
) -> torch.nn.Module:
    """``resnet32(num_outputs)`` for the paper's config, else ``cifar_resnet(depth, num_outputs, widths=...)``.

    ``target`` is a :class:`~hypercl.config.TargetConfig` (its plain-data form is deprecated)."""
    from ..models import cifar_resnet, resnet32

    if not isinstance(target, TargetConfig):
        warnings.warn(
            "resnet_target(dict) is deprecated; give a hypercl.config.TargetConfig (TargetConfig.from_json(d))",
            DeprecationWarning,
            stacklevel=2,
        )
        target = TargetConfig.from_json({"model": "resnet", **target})

    depth = int(target.depth if target.depth is not None else 32)
    widths = [int(w) for w in (target.widths if target.widths is not None else (16, 32, 64))]
    if depth == 32 and widths == [16, 32, 64] and in_channels == 3:
        return resnet32(num_outputs)
    return cifar_resnet(depth, num_outputs, in_channels=in_channels, widths=widths)


class TaskAugment:
    """:func:`~hypercl.data.random_crop_flip` of every training batch on its device, with a seeded generator.

    ``fills[t]`` is the padding value of task ``t`` (``bench.pad_fill(t)``: black in that task's normalised space,
    as torchvision's ``RandomCrop(32, padding=4)`` before ``Normalize``); the runner calls :meth:`set_task` before
    each task. Without fills the padding is 0 (the mean colour).
    """

    def __init__(
        self,
        padding: int = 4,
        fills: Optional[Sequence[torch.Tensor]] = None,
        seed: int = 0,
        device: Union[str, torch.device] = "cpu",
    ) -> None:
        self.padding = int(padding)
        self.device = torch.device(device)
        self.generator = torch.Generator(device=self.device).manual_seed(int(seed))
        self.fills = [f.to(self.device) for f in fills] if fills is not None else None
        self.fill: Any = 0.0
        self.task: Optional[int] = None

    def set_task(self, task_id: int) -> None:
        self.task = int(task_id)
        if self.fills is not None and task_id < len(self.fills):
            self.fill = self.fills[task_id]
        else:
            self.fill = 0.0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return random_crop_flip(x, self.padding, generator=self.generator, fill=self.fill)

    def __repr__(self) -> str:
        return f"TaskAugment(padding={self.padding}, task={self.task}, device={self.device})"


def make_train_transform(
    aug: Union[AugmentConfig, Mapping[str, Any]], bench: Any, seed: int, device: Any
) -> TaskAugment:
    """The training transform a config's ``augment`` entry describes (only ``random_crop_flip`` exists)."""
    if isinstance(aug, Mapping):  # its JSON form
        aug = AugmentConfig.from_json(aug)
    if (aug.kind or "random_crop_flip") != "random_crop_flip":
        raise ValueError(f"unknown augmentation {aug.kind!r}; valid: 'random_crop_flip'")
    fills = None
    if (aug.fill or "black") == "black" and hasattr(bench, "pad_fill"):
        fills = [bench.pad_fill(t) for t in range(bench.num_tasks)]
    dev = torch.device(device) if device is not None else torch.device("cpu")
    return TaskAugment(int(aug.padding if aug.padding is not None else 4), fills, seed=seed, device=dev)


# ---------------------------------------------------------------------------------------------------------- speed


#: names that moved to :mod:`hypercl.experiments.cifar_speed` (still importable from here, with a warning)
_MOVED_TO_CIFAR_SPEED = ("cifar_speed", "plot_speed", "SyntheticCIFAR", "CIFAR_TRAIN_SIZES", "CIFAR_TEST_SIZES")


def __getattr__(name: str) -> Any:
    if name in _MOVED_TO_CIFAR_SPEED:
        warnings.warn(
            f"hypercl.experiments.cifar.{name} moved to hypercl.experiments.cifar_speed; import it from there",
            DeprecationWarning,
            stacklevel=2,
        )
        # resolved by name at attribute access, not imported: cifar_speed needs the runner, which needs this module,
        # and the deprecated aliases are no reason for an import circle
        return getattr(importlib.import_module(f"{__package__}.cifar_speed"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
