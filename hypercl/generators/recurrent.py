"""Recurrent generators: LSTM_NET (seed paper section 3.1, eq. 1) and its GRU twin, with the GROW mode of 3.3.

The chunk sequence ``⟨e_t, c_1⟩ … ⟨e_t, c_nc⟩`` runs through ONE recurrent layer call (``nn.LSTM`` / ``nn.GRU``,
fused, cuDNN on GPU), so chunk ``j`` depends on chunks ``1..j-1`` through the hidden state; chunk ``j`` is
``Θ^(t,j) = h_j W``. There is never a Python loop over chunks.

GROW (LSTM_NET_GROW, section 3.3): the hidden-to-hidden weights ``u`` (and their bias) are shared by all tasks, every
task ``t`` has its own input weights ``w^t`` (all gates, with bias) and its own output layer ``W^t``. Implementation:
the per-task input projection of the whole chunk sequence is ONE batched matmul ``pre = ⟨e_t, c_j⟩ w^tᵀ + b^t``
(``torch.baddbmm`` over the tasks of the call), and the shared recurrence then runs through the fused op
(``torch.lstm`` / ``torch.gru``) whose input weights are a fixed identity and whose input bias is zero. ``x·I + 0``
is exact in floating point, so this computes exactly the gates of section 3.3.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, cast

import torch
from torch import nn

from ..chunking import ChunkPlan
from .base import ChunkProjection, Generator
from .init import von_oswald_init_
from .mlp import chunk_inputs

__all__ = ["RecurrentGenerator", "LSTMGenerator", "GRUGenerator"]

#: gates per recurrent cell: the LSTM stacks 4 (i, f, g, o), the GRU 3 (r, z, n)
GATES = {"lstm": 4, "gru": 3}
#: how GROW starts a new task's ``w^t``, ``W^t``: a copy of the previous task's, or a fresh draw of the initial ones
NEW_TASK_WEIGHTS = ("copy", "fresh")


class RecurrentGenerator(Generator):
    """Shared implementation of :class:`LSTMGenerator` and :class:`GRUGenerator`."""

    cell: str = "lstm"
    # GROW's state (enable_growth): shared hidden weights u, fixed identity input map, per-task w^t and W^t
    identity_ih: torch.Tensor
    zero_bias_ih: torch.Tensor
    shared_weight_hh: nn.Parameter
    shared_bias_hh: nn.Parameter
    task_weight_ih: nn.ParameterList
    task_bias_ih: nn.ParameterList
    task_weight_out: nn.ParameterList
    task_bias_out: nn.ParameterList
    supports_growth = True

    def __init__(
        self,
        plan: ChunkPlan,
        task_emb_dim: int,
        chunk_emb_dim: int = 96,
        hidden_size: int = 64,
        num_layers: int = 1,
        out_bias: bool = False,
    ) -> None:
        super().__init__(plan, task_emb_dim)
        if int(hidden_size) <= 0 or int(num_layers) <= 0:
            raise ValueError(f"hidden_size and num_layers must be positive, got {hidden_size}, {num_layers}")
        self.hidden_size = int(hidden_size)
        self.num_layers = int(num_layers)
        self.out_bias = bool(out_bias)
        self.input_size = task_emb_dim + chunk_emb_dim
        self.chunk_embeddings = nn.Parameter(torch.randn(plan.n_chunks, chunk_emb_dim))
        rnn_cls = nn.LSTM if self.cell == "lstm" else nn.GRU
        self.rnn = rnn_cls(self.input_size, self.hidden_size, num_layers=self.num_layers, batch_first=True)
        self.out = ChunkProjection(self.hidden_size, plan.chunk_size, bias=self.out_bias)
        self.growing = False
        self._template: Optional[list[torch.Tensor]] = None

    # ------------------------------------------------------------------ forward
    def forward(self, task_emb: torch.Tensor, task_ids: Optional[Sequence[int]] = None) -> torch.Tensor:
        self._check_emb(task_emb)
        x = chunk_inputs(task_emb, self.chunk_embeddings)  # (B, n_chunks, E + E_c)
        if not self.growing:
            h, _ = self.rnn(x)  # one fused call over the whole chunk sequence
            return self.out(h)
        if task_ids is None or len(task_ids) != task_emb.shape[0]:
            raise ValueError("a growing generator needs one task id per task embedding (task_ids)")
        ids = list(task_ids)
        w_ih = torch.stack([self.task_weight_ih[i] for i in ids])  # (B, G, D)
        b_ih = torch.stack([self.task_bias_ih[i] for i in ids])  # (B, G)
        pre = torch.baddbmm(b_ih.unsqueeze(1), x, w_ih.transpose(1, 2))  # (B, n_chunks, G): one batched matmul
        h = self._shared_recurrence(pre)  # (B, n_chunks, H)
        w_out = torch.stack([self.task_weight_out[i] for i in ids])  # (B, H, C): (in, out) as ChunkProjection
        y = torch.bmm(h, w_out)
        if self.out_bias:
            y = y + torch.stack([self.task_bias_out[i] for i in ids]).unsqueeze(1)
        return y

    def _shared_recurrence(self, pre: torch.Tensor) -> torch.Tensor:
        """Run the shared hidden-to-hidden recurrence on precomputed input pre-activations (fused op)."""
        b = pre.shape[0]
        h0 = pre.new_zeros(1, b, self.hidden_size)
        params = [self.identity_ih, self.shared_weight_hh, self.zero_bias_ih, self.shared_bias_hh]
        if self.cell == "lstm":
            out, _, _ = torch.lstm(pre, (h0, h0), params, True, 1, 0.0, self.training, False, True)
        else:
            out, _ = torch.gru(pre, h0, params, True, 1, 0.0, self.training, False, True)
        return out

    def output_layers(self) -> list[torch.Tensor]:
        if not self.growing:
            return list(self.out.parameters())
        layers = list(self.task_weight_out)
        if self.out_bias:
            layers += list(self.task_bias_out)
        return layers

    # ------------------------------------------------------------------ GROW (section 3.3)
    def enable_growth(self, num_tasks: int, new_task_weights: Optional[str] = None) -> None:
        """Switch to GROW: shared hidden weights ``u``, per-task input weights ``w^t`` and output layer ``W^t``.

        Every already registered task gets a copy of the current input and output weights. A task registered
        later starts, with ``new_task_weights="copy"``, from a copy of the most recent task's weights (forward
        transfer), with ``"fresh"`` from a new draw of the first task's initial distribution
        (:meth:`fresh_task_weights`).
        The paper (section 3.3) says only that ``w^t`` and ``W^t`` are task-specific; it does not say how they start.
        """
        if new_task_weights is not None:  # None keeps the choice made before (a checkpoint restore passes None)
            if new_task_weights not in NEW_TASK_WEIGHTS:
                raise ValueError(f"unknown new_task_weights {new_task_weights!r}; valid: {list(NEW_TASK_WEIGHTS)}")
            self.new_task_weights = new_task_weights
        if self.growing:
            return
        if self.num_layers != 1:
            raise ValueError(
                f"GROW is defined for a single recurrent layer (section 3.3), got num_layers={self.num_layers}"
            )
        g = GATES[self.cell] * self.hidden_size
        w_hh, b_hh = cast(torch.Tensor, self.rnn.weight_hh_l0), cast(torch.Tensor, self.rnn.bias_hh_l0)
        dev, dt = w_hh.device, w_hh.dtype
        self.shared_weight_hh = nn.Parameter(w_hh.detach().clone())
        self.shared_bias_hh = nn.Parameter(b_hh.detach().clone())
        self.register_buffer("identity_ih", torch.eye(g, device=dev, dtype=dt))
        self.register_buffer("zero_bias_ih", torch.zeros(g, device=dev, dtype=dt))
        template = [cast(torch.Tensor, self.rnn.weight_ih_l0), cast(torch.Tensor, self.rnn.bias_ih_l0), self.out.weight]
        if self.out_bias and self.out.bias is not None:
            template.append(self.out.bias)
        self._template = [t.detach().clone() for t in template]
        self.task_weight_ih = nn.ParameterList()
        self.task_bias_ih = nn.ParameterList()
        self.task_weight_out = nn.ParameterList()
        self.task_bias_out = nn.ParameterList()
        del self.rnn
        del self.out
        self.growing = True
        for t in range(num_tasks):
            self.on_add_task(t)

    def on_add_task(self, task_id: int) -> None:
        if not self.growing:
            return
        if len(self.task_weight_ih) != task_id:
            raise RuntimeError(f"GROW weights exist for {len(self.task_weight_ih)} tasks, cannot add task {task_id}")
        if len(self.task_weight_ih) and getattr(self, "new_task_weights", "copy") == "fresh":
            src = self.fresh_task_weights()
        elif len(self.task_weight_ih):
            src = [self.task_weight_ih[-1], self.task_bias_ih[-1], self.task_weight_out[-1]]
            if self.out_bias:
                src.append(self.task_bias_out[-1])
        else:
            assert self._template is not None
            src = self._template
        self.task_weight_ih.append(nn.Parameter(src[0].detach().clone()))
        self.task_bias_ih.append(nn.Parameter(src[1].detach().clone()))
        self.task_weight_out.append(nn.Parameter(src[2].detach().clone()))
        if self.out_bias:
            self.task_bias_out.append(nn.Parameter(src[3].detach().clone()))
        self._template = None

    @torch.no_grad()
    def fresh_task_weights(self) -> list[torch.Tensor]:
        """A new draw of ``w^t`` (weights, bias), ``W^t`` (and its bias) from the first task's initial distribution.

        ``init_scheme == "von_oswald"`` (set by :class:`~hypercl.HyperNetwork`): xavier-uniform matrices, zero biases
        (:func:`~hypercl.generators.init.von_oswald_init_`); otherwise the backend default, ``U(±1/√H)`` as
        ``nn.LSTM``/``nn.GRU`` and :class:`ChunkProjection` draw them, the output layer times the hypernetwork's
        init-scale calibration (:attr:`output_scale`).
        """
        ref = self.task_weight_ih[0]
        shapes = [self.task_weight_ih[0].shape, self.task_bias_ih[0].shape, self.task_weight_out[0].shape]
        if self.out_bias:
            shapes.append(self.task_bias_out[0].shape)
        out = [torch.empty(s, device=ref.device, dtype=ref.dtype) for s in shapes]
        if getattr(self, "init_scheme", "target_scale") == "von_oswald":
            von_oswald_init_((f"grow_task_tensor_{i}", t) for i, t in enumerate(out))
            return out
        bound = 1.0 / math.sqrt(self.hidden_size)
        scale = getattr(self, "output_scale", 1.0)
        for i, t in enumerate(out):
            t.uniform_(-bound, bound)
            if i >= 2:  # the output layer W^t (and its bias)
                t.mul_(scale)
        return out

    def shared_parameters(self) -> list[nn.Parameter]:
        """Parameters GROW shares across tasks (frozen after the first task): ``u``, its bias, chunk embeddings."""
        if not self.growing:
            raise RuntimeError("shared_parameters() is only defined once growth is enabled")
        return [self.shared_weight_hh, self.shared_bias_hh, self.chunk_embeddings]

    def task_parameters(self, task_id: int) -> list[nn.Parameter]:
        """The GROW parameters that belong to one task: ``w^t`` (weights, bias) and ``W^t``."""
        if not self.growing:
            raise RuntimeError("task_parameters() is only defined once growth is enabled")
        ps = [self.task_weight_ih[task_id], self.task_bias_ih[task_id], self.task_weight_out[task_id]]
        if self.out_bias:
            ps.append(self.task_bias_out[task_id])
        return ps


class LSTMGenerator(RecurrentGenerator):
    """LSTM_NET (seed paper section 3.1): an LSTM over the chunk sequence, chunk ``j = h_j W``."""

    cell = "lstm"


class GRUGenerator(RecurrentGenerator):
    """The LSTM_NET construction with a GRU cell (same interface, GROW included)."""

    cell = "gru"
