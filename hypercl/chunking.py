"""The chunk plan: flat target weight vector ⇄ fixed-size chunks.

A chunked hypernetwork (von Oswald et al. 2020; seed paper section 3) emits the ``N`` target weights as
``n_chunks = ceil(N / C)`` chunks of ``C`` values each. The last chunk is zero-padded on the way in and the padding
is dropped on the way out, so ``join(split(flat)) == flat`` exactly.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["ChunkPlan"]


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be a positive integer, got {value!r} of type {type(value).__name__}")
    if int(value) <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value}")
    return int(value)


@dataclass(frozen=True)
class ChunkPlan:
    """How ``num_params`` target weights are cut into chunks of ``chunk_size``.

    ``split`` and ``join`` work on any number of leading (batch / task) dimensions.
    """

    num_params: int
    chunk_size: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "num_params", _check_positive_int("num_params", self.num_params))
        object.__setattr__(self, "chunk_size", _check_positive_int("chunk_size", self.chunk_size))

    @property
    def n_chunks(self) -> int:
        """Number of chunks, ``ceil(num_params / chunk_size)``."""
        return math.ceil(self.num_params / self.chunk_size)

    @property
    def padded_size(self) -> int:
        """``n_chunks * chunk_size``: the length of the flat vector including the zero padding."""
        return self.n_chunks * self.chunk_size

    @property
    def padding(self) -> int:
        """How many zeros pad the last chunk."""
        return self.padded_size - self.num_params

    def split(self, flat: torch.Tensor) -> torch.Tensor:
        """``(..., num_params)`` → ``(..., n_chunks, chunk_size)``, zero-padding the last chunk."""
        if flat.dim() == 0 or flat.shape[-1] != self.num_params:
            raise ValueError(
                f"ChunkPlan.split expects a tensor whose last dimension is num_params={self.num_params}, "
                f"got shape {tuple(flat.shape)}"
            )
        if self.padding:
            flat = F.pad(flat, (0, self.padding))
        return flat.reshape(*flat.shape[:-1], self.n_chunks, self.chunk_size)

    def join(self, chunks: torch.Tensor) -> torch.Tensor:
        """``(..., n_chunks, chunk_size)`` → ``(..., num_params)``, dropping the padding."""
        if chunks.dim() < 2 or tuple(chunks.shape[-2:]) != (self.n_chunks, self.chunk_size):
            raise ValueError(
                f"ChunkPlan.join expects a tensor ending in (n_chunks, chunk_size)=({self.n_chunks}, "
                f"{self.chunk_size}), got shape {tuple(chunks.shape)}"
            )
        flat = chunks.reshape(*chunks.shape[:-2], self.padded_size)
        return flat[..., : self.num_params]
