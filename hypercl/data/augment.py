"""Batch data augmentation on the device (no per-sample Python loop, no torchvision)."""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F

__all__ = ["random_crop_flip"]

Fill = Union[float, Sequence[float], torch.Tensor]


def _draw(generator: Optional[torch.Generator], device: torch.device, b: int, high: int):
    """Offsets (2, B) in ``[0, high)`` and flip flags (B,), drawn on the generator's device, moved to ``device``."""
    gen_device = generator.device if generator is not None else device
    offsets = torch.randint(0, high, (2, b), generator=generator, device=gen_device)
    flips = torch.rand(b, generator=generator, device=gen_device) < 0.5
    return offsets.to(device), flips.to(device)


def random_crop_flip(
    x: torch.Tensor,
    padding: int = 4,
    generator: Optional[torch.Generator] = None,
    fill: Fill = 0.0,
) -> torch.Tensor:
    """Standard CIFAR augmentation of a whole batch: random ``H x W`` crop of the padded image, random h-flip.

    Every image of ``x`` (B, C, H, W) is padded by ``padding`` pixels on each side with ``fill`` (a scalar or one
    value per channel), cropped at an offset drawn uniformly from ``0..2*padding`` in each direction, and flipped
    left-right with probability 0.5; each sample draws independently. Runs on ``x``'s device as one gather
    (no loop over samples). With ``generator`` (on any device) the result is deterministic for its seed.

    For images normalised as ``(x - mean) / std``, ``fill = -mean / std`` pads with black, as torchvision's
    ``RandomCrop(32, padding=4)`` before ``Normalize`` does; ``fill = 0`` pads with the mean colour.
    Returns a new tensor of ``x``'s shape, dtype and device.
    """
    if x.dim() != 4:
        raise ValueError(f"random_crop_flip expects a batch of images (B, C, H, W), got shape {tuple(x.shape)}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    b, c, h, w = x.shape
    fill_t = torch.as_tensor(fill, dtype=x.dtype, device=x.device).reshape(-1)
    if fill_t.numel() not in (1, c):
        raise ValueError(f"fill must be a scalar or have one value per channel ({c}), got {fill_t.numel()} values")
    if fill_t.numel() == 1 and float(fill_t) == 0.0:
        padded = F.pad(x, (padding, padding, padding, padding))
    else:
        padded = fill_t.reshape(1, -1, 1, 1).expand(b, c, h + 2 * padding, w + 2 * padding).clone()
        padded[:, :, padding : padding + h, padding : padding + w] = x
    offsets, flips = _draw(generator, x.device, b, 2 * padding + 1)
    rows = offsets[0, :, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = offsets[1, :, None] + torch.arange(w, device=x.device)  # (B, W)
    cols = torch.where(flips[:, None], cols.flip(1), cols)  # a flipped crop reads its columns backwards
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]
