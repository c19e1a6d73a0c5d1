"""Elastic weight consolidation (Kirkpatrick et al. 2017) and its online variant (Schwarz et al. 2018)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import torch

from ._common import WeightRegularizer, check_fisher_args, check_number, task_fisher

if TYPE_CHECKING:  # pragma: no cover
    from ..strategies.base import Learner

__all__ = ["EWC", "OnlineEWC"]


class _FisherBaseline(WeightRegularizer):
    """Common arguments of EWC and Online EWC (how the diagonal Fisher of a finished task is estimated)."""

    def __init__(
        self,
        lambda_: float,
        fisher_samples: Optional[int] = None,
        fisher_batch_size: int = 64,
        fisher_labels: str = "true",
    ) -> None:
        self.lambda_ = check_number("lambda_", lambda_)
        check_fisher_args(fisher_samples, fisher_batch_size, fisher_labels)
        self.fisher_samples = None if fisher_samples is None else int(fisher_samples)
        self.fisher_batch_size = int(fisher_batch_size)
        self.fisher_labels = fisher_labels

    def config(self) -> dict:
        return {
            "lambda_": self.lambda_,
            "fisher_samples": self.fisher_samples,
            "fisher_batch_size": self.fisher_batch_size,
            "fisher_labels": self.fisher_labels,
        }

    def _fisher(self, learner: Learner, task_id: int, data: Any) -> torch.Tensor:
        return task_fisher(learner, task_id, data, self.fisher_samples, self.fisher_batch_size, self.fisher_labels)


class EWC(_FisherBaseline):
    """EWC: one quadratic anchor per learned task,

    ``penalty = λ/2 · Σ_{t<T} Σ_i F_{t,i} (θ_i − θ*_{t,i})²``,

    with ``θ*_t`` the weights right after task ``t`` and ``F_t`` their raw diagonal Fisher on task ``t``'s training
    data (:meth:`~hypercl.ContinualLearner.task_fisher`, ``normalize=False``). All anchors are kept as two stacked
    ``(T, N)`` tensors, so the penalty is one tensor expression however many tasks were learned.

    Args:
        lambda_: ``λ``.
        fisher_samples: at most this many training samples of a task enter its Fisher (``None``: all of them, as in
            van de Ven & Tolias' code, whose ``--fisher-n`` defaults to a full pass).
        fisher_batch_size: samples per ``vmap`` batch in the Fisher computation (memory only).
        fisher_labels: ``"true"`` (the empirical Fisher, with the data's labels) or ``"predicted"`` (the labels the
            network predicts itself, the default of van de Ven & Tolias' code).
    """

    name = "ewc"

    def __init__(
        self,
        lambda_: float = 5000.0,
        fisher_samples: Optional[int] = None,
        fisher_batch_size: int = 64,
        fisher_labels: str = "true",
    ) -> None:
        super().__init__(lambda_, fisher_samples, fisher_batch_size, fisher_labels)
        self.task_ids: list[int] = []
        self.means: Optional[torch.Tensor] = None  # (T, N) θ*_t
        self.fishers: Optional[torch.Tensor] = None  # (T, N) F_t

    def penalty(self, learner: Learner, task_id: int) -> Optional[torch.Tensor]:
        if self.means is None or self.fishers is None or self.lambda_ == 0:
            return None
        theta = self.weights(learner)
        return 0.5 * self.lambda_ * (self.fishers * (theta.unsqueeze(0) - self.means).pow(2)).sum()

    @torch.no_grad()
    def after_task(self, learner: Learner, task_id: int, data: Any) -> None:
        fisher = self._fisher(learner, task_id, data).unsqueeze(0)
        mean = self.weights(learner).detach().clone().unsqueeze(0)
        self.means = mean if self.means is None else torch.cat([self.means, mean])
        self.fishers = fisher if self.fishers is None else torch.cat([self.fishers, fisher])
        self.task_ids.append(int(task_id))

    def state_dict(self) -> dict:
        return {"task_ids": list(self.task_ids), "means": self.means, "fishers": self.fishers}

    def load_state_dict(self, state: dict) -> None:
        self.task_ids = [int(t) for t in state.get("task_ids", [])]
        self.means = state.get("means")
        self.fishers = state.get("fishers")


class OnlineEWC(_FisherBaseline):
    """Online EWC: ONE anchor at the latest weights with a running, decaying Fisher.

    After task ``t``: ``F̃ ← γ·F̃ + F_t`` (``F̃ = F_0`` after the first task) and ``θ* ← θ``
    (Schwarz et al. 2018).
    Penalty, exactly as van de Ven & Tolias' reference ``ewc_loss`` (``continual_learner.py``, repository
    GMvandeVen/continual-learning), which multiplies the stored running Fisher by ``gamma`` once more when the penalty
    is computed:

    ``penalty = λ/2 · Σ_i γ·F̃_i (θ_i − θ*_i)²``.

    With ``γ = 1`` this is ``λ/2 Σ_i F̃_i (θ_i − θ*_i)²``; for ``γ < 1`` the extra ``γ`` (equivalent to using
    ``λγ``) keeps ``λ`` and ``γ`` on the scale of the reference hyperparameters
    (:data:`hypercl.baselines.PAPER_HYPERPARAMETERS`).

    Args:
        lambda_: ``λ``.
        gamma: ``γ`` in ``[0, 1]``, how much of the older tasks' Fisher is kept.
        fisher_samples, fisher_batch_size, fisher_labels: as :class:`EWC`.
    """

    name = "online_ewc"

    def __init__(
        self,
        lambda_: float = 5000.0,
        gamma: float = 1.0,
        fisher_samples: Optional[int] = None,
        fisher_batch_size: int = 64,
        fisher_labels: str = "true",
    ) -> None:
        super().__init__(lambda_, fisher_samples, fisher_batch_size, fisher_labels)
        self.gamma = check_number("gamma", gamma, 0.0, 1.0)
        self.num_consolidated = 0
        self.mean: Optional[torch.Tensor] = None  # (N,) θ*
        self.fisher: Optional[torch.Tensor] = None  # (N,) F̃

    def config(self) -> dict:
        return {**super().config(), "gamma": self.gamma}

    def penalty(self, learner: Learner, task_id: int) -> Optional[torch.Tensor]:
        if self.mean is None or self.fisher is None or self.lambda_ == 0:
            return None
        theta = self.weights(learner)
        return 0.5 * self.lambda_ * self.gamma * (self.fisher * (theta - self.mean).pow(2)).sum()

    @torch.no_grad()
    def after_task(self, learner: Learner, task_id: int, data: Any) -> None:
        fisher = self._fisher(learner, task_id, data)
        self.fisher = fisher if self.fisher is None else self.gamma * self.fisher + fisher
        self.mean = self.weights(learner).detach().clone()
        self.num_consolidated += 1

    def state_dict(self) -> dict:
        return {"num_consolidated": self.num_consolidated, "mean": self.mean, "fisher": self.fisher}

    def load_state_dict(self, state: dict) -> None:
        self.num_consolidated = int(state.get("num_consolidated", 0))
        self.mean = state.get("mean")
        self.fisher = state.get("fisher")
