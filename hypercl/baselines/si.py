"""Synaptic Intelligence (Zenke, Poole & Ganguli 2017), as implemented by van de Ven & Tolias 2019."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import torch

from ._common import WeightRegularizer, check_number

if TYPE_CHECKING:  # pragma: no cover
    from ..strategies.base import Learner

__all__ = ["SI"]


class SI(WeightRegularizer):
    """SI: a per-weight importance from each weight's contribution to the drop of the loss along the training path.

    During a task, after every optimizer step (``after_step``)::

        ω_i += −g_i · Δθ_i          Δθ = θ_after_step − θ_before_step

    where ``g`` is the gradient the optimizer just used, i.e. the gradient of the TOTAL loss (task loss + this SI
    penalty), exactly as in van de Ven & Tolias' reference code (``train.py``: ``W[n].add_(-p.grad*(p.detach()-
    p_old[n]))`` after ``train_a_batch``, whose ``loss_total`` includes ``si_c * surrogate_loss``; repository
    GMvandeVen/continual-learning). Zenke et al.'s paper uses the gradient of the unregularised task loss instead.
    After the task (``after_task``)::

        Ω_i += ω_i / ((θ_i − θ_i^start)² + ξ),   ω ← 0,   θ* ← θ

    with ``θ^start`` the weights when the task began, and the penalty during later tasks is

        ``penalty = c · Σ_i Ω_i (θ_i − θ*_i)²``   (no 1/2, as in the reference ``surrogate_loss``).

    ``ω``, the previous weights and ``Ω`` stay on the weights' device; nothing syncs with the host per step.

    Args:
        c: regularisation strength ``c`` (``si_c`` / ``--c`` in the reference code).
        xi: damping ``ξ > 0`` (``epsilon`` there; 0.1 by default in both Zenke et al. and the reference code).
    """

    name = "si"

    def __init__(self, c: float = 0.1, xi: float = 0.1) -> None:
        self.c = check_number("c", c)
        self.xi = check_number("xi", xi, low_open=True)
        self.omega_sum: Optional[torch.Tensor] = None  # Ω (N,), over all finished tasks
        self.anchor: Optional[torch.Tensor] = None  # θ* (N,), the weights after the last finished task
        self.omega: Optional[torch.Tensor] = None  # ω (N,), running path integral of the current task
        self.start: Optional[torch.Tensor] = None  # θ^start (N,)
        self.prev: Optional[torch.Tensor] = None  # θ before the latest step

    def config(self) -> dict:
        return {"c": self.c, "xi": self.xi}

    @torch.no_grad()
    def before_task(self, learner: Learner, task_id: int) -> None:
        theta = self.weights(learner).detach()
        self.start = theta.clone()
        self.prev = theta.clone()
        self.omega = torch.zeros_like(theta)

    def penalty(self, learner: Learner, task_id: int) -> Optional[torch.Tensor]:
        if self.omega_sum is None or self.anchor is None or self.c == 0:
            return None
        theta = self.weights(learner)
        return self.c * (self.omega_sum * (theta - self.anchor).pow(2)).sum()

    @torch.no_grad()
    def after_step(self, learner: Learner, task_id: int) -> None:
        w = self.weights(learner)
        theta = w.detach()
        if self.omega is None or self.prev is None:
            raise RuntimeError("SI's path integral starts in before_task(); begin the task first")
        if w.grad is not None:
            self.omega.addcmul_(w.grad, theta - self.prev, value=-1.0)
        self.prev.copy_(theta)

    @torch.no_grad()
    def after_task(self, learner: Learner, task_id: int, data: Any) -> None:
        theta = self.weights(learner).detach()
        if self.omega is None or self.start is None:
            raise RuntimeError("SI's path integral starts in before_task(); begin the task first")
        add = self.omega / ((theta - self.start).pow(2) + self.xi)
        self.omega_sum = add if self.omega_sum is None else self.omega_sum + add
        self.anchor = theta.clone()
        self.omega.zero_()
        self.start = theta.clone()
        self.prev = theta.clone()

    def state_dict(self) -> dict:
        return {"omega_sum": self.omega_sum, "anchor": self.anchor}

    def load_state_dict(self, state: dict) -> None:
        self.omega_sum = state.get("omega_sum")
        self.anchor = state.get("anchor")
        self.omega = self.start = self.prev = None  # set again by before_task
