"""The generator interface shared by every hypernetwork backend."""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import nn

from ..chunking import ChunkPlan

__all__ = ["Generator", "make_activation", "ACTIVATIONS"]

ACTIVATIONS = {
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
}


def make_activation(name: str) -> nn.Module:
    """An activation module by name (``relu``, ``elu``, ``tanh``, ``sigmoid``, ``leaky_relu``, ``gelu``)."""
    try:
        return ACTIVATIONS[name]()
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; valid: {sorted(ACTIVATIONS)}") from None


class Generator(nn.Module):
    """Maps task embeddings ``(B, E)`` to raw target weights ``(B, n_chunks, chunk_size)`` in one call.

    Subclasses own their chunk embeddings (learned parameters) and their output layer; the
    :class:`~hypercl.HyperNetwork` joins the chunks and applies the fixed init-scale map (see ``docs/foundation.md``).
    ``task_ids`` is only used by generators with task-specific weights (GROW, section 3.3).
    """

    supports_growth: bool = False

    def __init__(self, plan: ChunkPlan, task_emb_dim: int) -> None:
        super().__init__()
        self.plan = plan
        self.task_emb_dim = int(task_emb_dim)

    def forward(self, task_emb: torch.Tensor, task_ids: Optional[Sequence[int]] = None) -> torch.Tensor:
        raise NotImplementedError

    def output_layers(self) -> list[nn.Module | nn.Parameter]:
        """The parameters of the layer(s) that emit the chunk values; init-scale calibration multiplies them."""
        raise NotImplementedError

    @torch.no_grad()
    def rescale_output_(self, factor: float) -> None:
        """Multiply the output layer's weights and bias by ``factor`` (so raw outputs scale by ``factor``)."""
        for p in self.output_layers():
            p.mul_(factor)

    def on_add_task(self, task_id: int) -> None:
        """Called by the hypernetwork when a task is registered (GROW creates its per-task weights here)."""

    def _check_emb(self, task_emb: torch.Tensor) -> None:
        if task_emb.dim() != 2 or task_emb.shape[1] != self.task_emb_dim:
            raise ValueError(
                f"{type(self).__name__} expects task embeddings of shape (B, {self.task_emb_dim}), "
                f"got {tuple(task_emb.shape)}"
            )
