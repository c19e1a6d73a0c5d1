"""The strategy interface: three hooks around each task, plus a penalty added to the task loss."""

from __future__ import annotations

from typing import Any, Optional, Protocol

import torch

from ..scenarios import HeadLayout

__all__ = ["Strategy", "NoRegularizer", "Learner"]


class Learner(Protocol):
    """What a strategy uses of the learner it is attached to (:class:`hypercl.ContinualLearner` is one); the
    strategies receive it in every hook instead of importing the learner's module."""

    hnet: Any
    device: torch.device
    heads: HeadLayout
    learned_tasks: list[int]
    eval_batch_size: int
    optimizer: Optional[torch.optim.Optimizer]
    #: the learner's own generator (batch order, Fisher subsets, the old tasks a stochastic regulariser draws)
    rng: torch.Generator

    @property
    def target(self) -> Any: ...

    def task_fisher(
        self, task_id: int, data: Any, num_samples: Optional[int] = None, batch_size: int = 64, normalize: bool = True
    ) -> torch.Tensor: ...

    def task_logits(self, task_id: int, x: torch.Tensor) -> torch.Tensor: ...

    def train_units(self, task_id: int) -> tuple[int, int]: ...

    def uses_global_labels(self) -> bool: ...


class Strategy:
    """Base class. Subclasses override what they need; every hook is a no-op by default.

    Order per task: ``before_task`` → per step [task loss, ``penalty`` (and, with ``uses_lookahead``, the penalty is
    computed after the task loss's gradients exist), ``after_step``] → ``after_task``.
    """

    name: str = "base"
    #: the penalty needs the task loss's gradients first (lookahead ΔΘ_h of eq. 2/3)
    uses_lookahead: bool = False
    #: the strategy needs per-task generated weights (a hypernetwork), not one shared weight vector
    needs_hypernetwork: bool = False

    def attach(self, learner: Learner) -> None:
        """Check the learner's model is one this strategy can protect (clear error otherwise)."""
        if self.needs_hypernetwork and not getattr(learner.hnet, "task_conditioned", False):
            raise ValueError(f"strategy {self.name!r} needs a HyperNetwork, got {type(learner.hnet).__name__}")

    def before_task(self, learner: Learner, task_id: int) -> None:
        """Called before the first step of a task."""

    def penalty(self, learner: Learner, task_id: int) -> Optional[torch.Tensor]:
        """A scalar added to the task loss (``None`` for none)."""
        return None

    def after_step(self, learner: Learner, task_id: int) -> None:
        """Called after each optimizer step."""

    def after_task(self, learner: Learner, task_id: int, data: Any) -> None:
        """Called after the last step of a task, with the task's training data."""

    # ------------------------------------------------------------------ persistence (plain data only)
    def config(self) -> dict:
        """Constructor arguments (plain types) to rebuild the strategy from a checkpoint."""
        return {}

    def state_dict(self) -> dict:
        """Learned state (tensors and plain types) to save in a checkpoint."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


class NoRegularizer(Strategy):
    """Plain hypernetwork fine-tuning: nothing protects old tasks (shows forgetting)."""

    name = "none"
