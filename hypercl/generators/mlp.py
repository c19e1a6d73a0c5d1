"""Feed-forward generators: the full MLP hypernetwork and the chunked MLP (HNET, von Oswald et al. 2020)."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from ..chunking import ChunkPlan
from .base import ChunkProjection, Generator, make_activation

__all__ = ["MLPGenerator", "ChunkedMLPGenerator"]


def _mlp(in_dim: int, hidden: Sequence[int], activation: str) -> tuple[nn.Sequential, int]:
    layers: list[nn.Module] = []
    d = in_dim
    for h in hidden:
        layers += [nn.Linear(d, int(h)), make_activation(activation)]
        d = int(h)
    return nn.Sequential(*layers), d


class MLPGenerator(Generator):
    """Full (non-chunked) hypernetwork: one MLP maps ``e_t`` to all ``N`` target weights.

    The plan must have a single chunk (``chunk_size >= num_params``); output shape ``(B, 1, chunk_size)``.
    """

    def __init__(
        self, plan: ChunkPlan, task_emb_dim: int, hidden: Sequence[int] = (10, 10), activation: str = "relu"
    ) -> None:
        super().__init__(plan, task_emb_dim)
        if plan.n_chunks != 1:
            raise ValueError(
                f"MLPGenerator emits all weights at once and needs a one-chunk plan (chunk_size >= "
                f"num_params={plan.num_params}), got chunk_size={plan.chunk_size}; use ChunkedMLPGenerator to chunk"
            )
        self.body, d = _mlp(task_emb_dim, hidden, activation)
        self.out = ChunkProjection(d, plan.padded_size)

    def forward(self, task_emb: torch.Tensor, task_ids: Optional[Sequence[int]] = None) -> torch.Tensor:
        self._check_emb(task_emb)
        return self.out(self.body(task_emb)).unsqueeze(1)

    def output_layers(self) -> list[torch.Tensor]:
        return [p for p in (self.out.weight, self.out.bias) if p is not None]


class ChunkedMLPGenerator(Generator):
    """HNET (von Oswald et al. 2020): the same MLP maps ``⟨e_t, c_j⟩`` to chunk ``j``, for all chunks at once.

    Chunks are generated independently of each other given ``(e_t, c_j)`` (the independence the seed paper's
    section 3 points out). All ``B × n_chunks`` inputs go through the MLP as one batch.
    """

    def __init__(
        self,
        plan: ChunkPlan,
        task_emb_dim: int,
        chunk_emb_dim: int = 96,
        hidden: Sequence[int] = (10, 10),
        activation: str = "relu",
    ) -> None:
        super().__init__(plan, task_emb_dim)
        self.chunk_embeddings = nn.Parameter(torch.randn(plan.n_chunks, chunk_emb_dim))
        self.body, d = _mlp(task_emb_dim + chunk_emb_dim, hidden, activation)
        self.out = ChunkProjection(d, plan.chunk_size)

    def forward(self, task_emb: torch.Tensor, task_ids: Optional[Sequence[int]] = None) -> torch.Tensor:
        self._check_emb(task_emb)
        x = chunk_inputs(task_emb, self.chunk_embeddings)
        return self.out(self.body(x))

    def output_layers(self) -> list[torch.Tensor]:
        return [p for p in (self.out.weight, self.out.bias) if p is not None]


def chunk_inputs(task_emb: torch.Tensor, chunk_emb: torch.Tensor) -> torch.Tensor:
    """The input sequence ``⟨e_t, c_1⟩ … ⟨e_t, c_nc⟩`` for every task: ``(B, n_chunks, E + E_c)``."""
    b, n = task_emb.shape[0], chunk_emb.shape[0]
    return torch.cat([task_emb.unsqueeze(1).expand(b, n, -1), chunk_emb.unsqueeze(0).expand(b, n, -1)], dim=-1)
