"""The generator interface shared by every hypernetwork backend."""

from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import nn

from ..activations import ACTIVATIONS, make_activation
from ..chunking import ChunkPlan

__all__ = ["Generator", "ChunkProjection", "make_activation", "ACTIVATIONS"]


class ChunkProjection(nn.Module):
    """The output layer that emits chunk values: ``y = h W + b`` with ``W`` stored as ``(in_features, out_features)``.

    Same map and same initialisation as ``nn.Linear`` (uniform in ``±1/√in``), but the transposed storage makes the
    weight gradient ``hᵀ ∂y`` a GEMM in natural row-major layout; with ``nn.Linear``'s ``(out, in)`` weight it is
    ``∂yᵀ h`` over a ``(rows, chunk)`` operand read column-wise, 2–3× slower on CPU for chunks of 10⁴–10⁵ values
    (the largest GEMM of a hypernetwork step).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        bound = 1.0 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
        # drawn in nn.Linear's (out, in) order, then stored transposed: the same values nn.Linear would start from
        w = torch.empty(self.out_features, self.in_features).uniform_(-bound, bound)
        self.weight = nn.Parameter(w.t().contiguous())
        self.bias = nn.Parameter(torch.empty(self.out_features).uniform_(-bound, bound)) if bias else None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        if self.bias is None:
            return torch.matmul(h, self.weight)
        flat = torch.addmm(self.bias, h.reshape(-1, self.in_features), self.weight)
        return flat.view(*h.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class Generator(nn.Module):
    """Maps task embeddings ``(B, E)`` to raw target weights ``(B, n_chunks, chunk_size)`` in one call.

    Subclasses own their chunk embeddings (learned parameters) and their output layer; the
    :class:`~hypercl.HyperNetwork` joins the chunks and applies the fixed init-scale map (see ``docs/foundation.md``).
    ``task_ids`` is only used by generators with task-specific weights (GROW, section 3.3).
    """

    supports_growth: bool = False
    #: the hypernetwork's init scheme ("target_scale" or "von_oswald"; set by the HyperNetwork)
    init_scheme: str
    #: the product of all output-layer rescalings so far
    output_scale: float

    def __init__(self, plan: ChunkPlan, task_emb_dim: int) -> None:
        super().__init__()
        self.plan = plan
        self.task_emb_dim = int(task_emb_dim)

    def forward(self, task_emb: torch.Tensor, task_ids: Optional[Sequence[int]] = None) -> torch.Tensor:
        raise NotImplementedError

    def output_layers(self) -> list[torch.Tensor]:
        """The parameters of the layer(s) that emit the chunk values; init-scale calibration multiplies them."""
        raise NotImplementedError

    @torch.no_grad()
    def rescale_output_(self, factor: float) -> None:
        """Multiply the output layer's weights and bias by ``factor`` (so raw outputs scale by ``factor``)."""
        for p in self.output_layers():
            p.mul_(factor)
        #: the product of all rescalings so far (GROW's fresh per-task output layers are drawn at this scale)
        self.output_scale = getattr(self, "output_scale", 1.0) * float(factor)

    def on_add_task(self, task_id: int) -> None:
        """Called by the hypernetwork when a task is registered (GROW creates its per-task weights here)."""

    def _check_emb(self, task_emb: torch.Tensor) -> None:
        if task_emb.dim() != 2 or task_emb.shape[1] != self.task_emb_dim:
            raise ValueError(
                f"{type(self).__name__} expects task embeddings of shape (B, {self.task_emb_dim}), "
                f"got {tuple(task_emb.shape)}"
            )
