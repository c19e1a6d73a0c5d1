"""CIFAR ResNets (He et al. 2016, section 4.2): the ResNet-32 target network of the CIFAR experiments.

Layout for ``depth = 6n + 2`` (ResNet-32: ``n = 5``)::

    conv3x3(in, 16) - BN - ReLU
    stage 1: n BasicBlocks, 16 channels, stride 1       (32x32 for CIFAR inputs)
    stage 2: n BasicBlocks, 32 channels, first stride 2 (16x16)
    stage 3: n BasicBlocks, 64 channels, first stride 2 (8x8)
    global average pool - Linear(64, num_classes)

A BasicBlock is ``conv3x3 - BN - ReLU - conv3x3 - BN``, added to the shortcut, then ReLU. Convolutions have no
bias (a BatchNorm follows each one). Shortcut: identity when the shape is kept; **option B** of the paper (a 1x1
convolution with the block's stride followed by BatchNorm, a learned projection) when the channels or the spatial
size change, i.e. at the first block of stages 2 and 3. ResNet-32 with 10 classes has 466,906 parameters
(464,154 of them in the option-A layout; the two projections add 2,752).

These are ordinary ``nn.Module`` s: :func:`hypercl.wrap` turns them into functional targets, and their BatchNorm
statistics are buffers, so a caller can keep one set per task (see ``docs/cifar.md``).
"""

from __future__ import annotations

from typing import Sequence, cast

import torch
import torch.nn.functional as F
from torch import nn

from .registry import build_model, register_model

__all__ = ["BasicBlock", "CifarResNet", "ResNet32", "cifar_resnet", "resnet32"]


def _conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus a shortcut (identity, or 1x1 conv + BN when the shape changes)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = _conv3x3(in_ch, out_ch, stride)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = _conv3x3(out_ch, out_ch)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """CIFAR ResNet of depth ``6n + 2`` (20, 32, 44, 56, 110, ...; 8 for tiny tests), see the module docstring.

    Args:
        depth: total number of weighted layers, ``6n + 2`` with ``n >= 1`` (``n`` BasicBlocks per stage).
        num_classes: outputs of the linear head.
        in_channels: input image channels.
        widths: channels of the three stages (16, 32, 64 in the paper).

    Initialisation: He (``kaiming_normal_``, fan_out, ReLU) for convolutions, BN weight 1 and bias 0,
    PyTorch's default for the linear head. Works for any input size >= 4x4 (the pool is adaptive).
    """

    def __init__(
        self, depth: int = 32, num_classes: int = 10, in_channels: int = 3, widths: Sequence[int] = (16, 32, 64)
    ) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6 != 0:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 with n >= 1 (8, 14, 20, 32, 56, ...), got {depth}")
        widths = [int(w) for w in widths]
        if len(widths) != 3 or min(widths) < 1:
            raise ValueError(f"widths must be three positive channel counts, got {widths}")
        if num_classes < 1 or in_channels < 1:
            raise ValueError(f"num_classes and in_channels must be >= 1, got {num_classes}, {in_channels}")
        self.depth = depth
        self.blocks_per_stage = (depth - 2) // 6
        self.conv1 = _conv3x3(in_channels, widths[0])
        self.bn1 = nn.BatchNorm2d(widths[0])
        stages = []
        in_ch = widths[0]
        for i, width in enumerate(widths):
            blocks = []
            for j in range(self.blocks_per_stage):
                blocks.append(BasicBlock(in_ch, width, stride=2 if (i > 0 and j == 0) else 1))
                in_ch = width
            stages.append(nn.Sequential(*blocks))
        self.stage1, self.stage2, self.stage3 = stages
        self.fc = nn.Linear(in_ch, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"CifarResNet expects images (B, C, H, W), got shape {tuple(x.shape)}")
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.stage3(self.stage2(self.stage1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)


class ResNet32(CifarResNet):
    """:class:`CifarResNet` with ``depth=32`` (5 BasicBlocks per stage; 466,906 parameters for 10 classes)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, widths: Sequence[int] = (16, 32, 64)) -> None:
        super().__init__(32, num_classes, in_channels, widths)


@register_model("cifar_resnet")
def _cifar_resnet(
    depth: int = 32, num_classes: int = 10, in_channels: int = 3, widths: Sequence[int] = (16, 32, 64)
) -> CifarResNet:
    return CifarResNet(depth, num_classes, in_channels, list(widths))


@register_model("resnet32")
def _resnet32(num_classes: int = 10) -> ResNet32:
    return ResNet32(num_classes)


def cifar_resnet(
    depth: int = 32, num_classes: int = 10, in_channels: int = 3, widths: Sequence[int] = (16, 32, 64)
) -> CifarResNet:
    """A :class:`CifarResNet` tagged for checkpoints, e.g. ``cifar_resnet(8, 3)`` for a tiny test network."""
    return cast(
        CifarResNet,
        build_model(
            "cifar_resnet",
            depth=int(depth),
            num_classes=int(num_classes),
            in_channels=int(in_channels),
            widths=[int(w) for w in widths],
        ),
    )


def resnet32(num_classes: int = 10) -> ResNet32:
    """The ResNet-32 target of the CIFAR experiments (466,906 parameters for 10 classes), tagged for checkpoints."""
    return cast(ResNet32, build_model("resnet32", num_classes=int(num_classes)))
