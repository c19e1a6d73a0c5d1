"""HNET (eq. 2) and IWR (eq. 3) output regularisers of the hypernetwork, with the optional lookahead ΔΘ_h."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Optional

import torch
from torch import nn
from torch.func import functional_call

from ..regularizers import hnet_output_regularizer, importance_weighted_regularizer
from .base import Strategy

if TYPE_CHECKING:  # pragma: no cover
    from ..learner import ContinualLearner

__all__ = ["HNETRegularizer", "IWRegularizer", "candidate_step"]


@torch.no_grad()
def candidate_step(optimizer: torch.optim.Optimizer) -> dict[nn.Parameter, torch.Tensor]:
    """The step ``ΔΘ_h`` the optimizer would take with the current gradients (the lookahead of eq. 2/3).

    Adam/AdamW: the bias-corrected Adam update from the optimizer's moments and the new gradient (no weight
    decay); any other optimizer: the SGD step ``-lr · grad``. Parameters without a gradient get no entry.
    """
    steps: dict[nn.Parameter, torch.Tensor] = {}
    adam = isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW))
    for group in optimizer.param_groups:
        lr = float(group["lr"])
        for p in group["params"]:
            if p.grad is None:
                continue
            g = p.grad
            if not adam:
                steps[p] = -lr * g
                continue
            b1, b2 = group["betas"]
            state = optimizer.state.get(p, {})
            # the step count stays where the optimizer keeps it (a device tensor for fused/capturable Adam): no host
            # synchronisation per step
            t = state["step"] + 1 if "step" in state else 1.0
            bc1 = 1 - b1**t
            bc2_sqrt = (1 - b2**t).sqrt() if torch.is_tensor(t) else math.sqrt(1 - b2**t)
            # in place on two fresh temporaries: m = lerp(m, g, 1-β1), v = β2 v + (1-β2) g², step = -lr m̂ / (√v̂ + ε)
            m = state["exp_avg"].lerp(g, 1 - b1) if "exp_avg" in state else g * (1 - b1)
            v = state["exp_avg_sq"] * b2 if "exp_avg_sq" in state else torch.zeros_like(g)
            v.addcmul_(g, g, value=1 - b2).sqrt_().div_(bc2_sqrt).add_(group["eps"])
            steps[p] = m.div_(v).mul_(-lr).div_(bc1)
    return steps


class _RawGeneration(nn.Module):
    """Adaptor so ``functional_call`` can evaluate ``hnet.generate_raw`` at shifted parameters Θ_h + ΔΘ_h."""

    def __init__(self, hnet: nn.Module) -> None:
        super().__init__()
        self.hnet = hnet

    def forward(self, task_ids: list[int]) -> torch.Tensor:
        return self.hnet.generate_raw(task_ids)


class HNETRegularizer(Strategy):
    """Eq. 2 (von Oswald et al. 2020): keep the weights generated for old tasks where they were.

    Before task ``T`` the weights ``f_h(e_t, c, Θ*_h)`` of every learned task ``t < T`` are generated in ONE call and
    stored (detached) as one ``(T−1, N)`` tensor; each step adds :func:`~hypercl.regularizers.hnet_output_regularizer`
    of the weights generated now for all old tasks, again in ONE batched generator call. Old task embeddings are
    frozen by the learner; the new task's embedding only sees the task loss.

    The penalty is evaluated on the generator's raw outputs (:meth:`~hypercl.HyperNetwork.to_raw_space`: targets
    mapped back through the fixed init-scale map, weight ``gain²``), which is the same value without the map's and
    the chunk padding's forward and backward passes over ``(T−1) × N`` values every step.

    Args:
        beta: ``β`` of eq. 2.
        lookahead: evaluate the old tasks' weights at ``Θ_h + ΔΘ_h``, ``ΔΘ_h`` the optimizer's candidate step on the
            task loss (:func:`candidate_step`), treated as a constant (as in the reference implementation).
    """

    name = "hnet"
    needs_hypernetwork = True

    def __init__(self, beta: float = 0.01, lookahead: bool = False) -> None:
        if not (isinstance(beta, (int, float)) and math.isfinite(beta) and beta >= 0):
            raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
        self.beta = float(beta)
        self.lookahead = bool(lookahead)
        self.uses_lookahead = self.lookahead
        self.old_ids: list[int] = []
        self.targets: Optional[torch.Tensor] = None  # (T-1, N)
        self._raw: Optional[tuple[torch.Tensor, torch.Tensor]] = None  # (raw targets, raw weight), padded

    def config(self) -> dict:
        return {"beta": self.beta, "lookahead": self.lookahead}

    @torch.no_grad()
    def before_task(self, learner: "ContinualLearner", task_id: int) -> None:
        self.old_ids = [t for t in learner.learned_tasks if t != task_id]
        self.targets = learner.hnet.generate_flat(self.old_ids).detach().clone() if self.old_ids else None
        self._raw = None

    def importance(self) -> Optional[torch.Tensor]:
        """Per-weight importance of the old tasks' weights, ``(T−1, N)``; ``None`` = uniform (eq. 2)."""
        return None

    def _raw_space(self, learner: "ContinualLearner") -> tuple[torch.Tensor, torch.Tensor]:
        if self._raw is None:
            self._raw = learner.hnet.to_raw_space(self.targets, self.importance())
        return self._raw

    def current_old_raw(self, learner: "ContinualLearner") -> torch.Tensor:
        """Raw generator outputs for all old tasks now, ``(T−1, padded)``, one generator call (lookahead applied
        if on)."""
        hnet = learner.hnet
        if not self.lookahead:
            return hnet.generate_raw(self.old_ids)
        steps = candidate_step(learner.optimizer)
        shifted = {f"hnet.{n}": p + steps[p] for n, p in hnet.named_parameters() if p in steps}
        return functional_call(_RawGeneration(hnet), shifted, (self.old_ids,))

    def penalty(self, learner: "ContinualLearner", task_id: int) -> Optional[torch.Tensor]:
        if not self.old_ids or self.beta == 0:
            return None
        raw_targets, scale_sq = self._raw_space(learner)
        return hnet_output_regularizer(self.current_old_raw(learner), raw_targets, self.beta, scale_sq)

    def state_dict(self) -> dict:
        return {"old_ids": list(self.old_ids), "targets": self.targets}

    def load_state_dict(self, state: dict) -> None:
        self.old_ids = list(state.get("old_ids", []))
        self.targets = state.get("targets")
        self._raw = None


class IWRegularizer(HNETRegularizer):
    """Eq. 3 (IWR): eq. 2 weighted per target weight by the diagonal Fisher information of eq. 4.

    After each task the empirical Fisher of the weights GENERATED for it is computed
    (:func:`~hypercl.fisher.diagonal_empirical_fisher`, per-sample gradients by ``vmap(grad)``, target in eval
    mode) and normalised to mean 1 (:func:`~hypercl.fisher.normalize_fisher`), so that ``β`` means the same
    as in eq. 2: a uniform Fisher gives exactly eq. 2.

    Args:
        beta, lookahead: as :class:`HNETRegularizer`.
        fisher_samples: at most this many training samples of the task enter eq. 4 (``None``: all of them).
        fisher_batch_size: samples per ``vmap`` batch (memory: this many copies of the target's gradient).
    """

    name = "iwr"

    def __init__(
        self,
        beta: float = 0.01,
        lookahead: bool = False,
        fisher_samples: Optional[int] = None,
        fisher_batch_size: int = 64,
    ) -> None:
        super().__init__(beta, lookahead)
        if fisher_samples is not None and int(fisher_samples) <= 0:
            raise ValueError(f"fisher_samples must be positive or None, got {fisher_samples}")
        self.fisher_samples = None if fisher_samples is None else int(fisher_samples)
        self.fisher_batch_size = int(fisher_batch_size)
        self.fisher: dict[int, torch.Tensor] = {}  # task id -> (N,) normalised
        self.old_fisher: Optional[torch.Tensor] = None

    def config(self) -> dict:
        return {**super().config(), "fisher_samples": self.fisher_samples, "fisher_batch_size": self.fisher_batch_size}

    def before_task(self, learner: "ContinualLearner", task_id: int) -> None:
        super().before_task(learner, task_id)
        self.old_fisher = torch.stack([self.fisher[t] for t in self.old_ids]) if self.old_ids else None

    def importance(self) -> Optional[torch.Tensor]:
        return self.old_fisher

    def penalty(self, learner: "ContinualLearner", task_id: int) -> Optional[torch.Tensor]:
        if not self.old_ids or self.beta == 0:
            return None
        raw_targets, raw_fisher = self._raw_space(learner)  # FI ⊙ gain² on the raw outputs: the same eq. 3
        return importance_weighted_regularizer(self.current_old_raw(learner), raw_targets, raw_fisher, self.beta)

    def after_task(self, learner: "ContinualLearner", task_id: int, data: Any) -> None:
        self.fisher[task_id] = learner.task_fisher(task_id, data, self.fisher_samples, self.fisher_batch_size)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "fisher": dict(self.fisher)}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.fisher = {int(k): v for k, v in state.get("fisher", {}).items()}
        self.old_fisher = torch.stack([self.fisher[t] for t in self.old_ids]) if self.old_ids else None
        self._raw = None
