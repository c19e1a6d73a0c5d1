"""GROW (LSTM_NET_GROW, seed paper section 3.3): shared frozen hidden weights, per-task input and output weights."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Strategy

if TYPE_CHECKING:  # pragma: no cover
    from .base import Learner

__all__ = ["Grow"]


class Grow(Strategy):
    """Network growth without a regulariser.

    Growth is switched on before the first task (:meth:`~hypercl.RecurrentGenerator.enable_growth`): the hidden-to-
    hidden weights ``u_f, u_i, u_o, u_g`` (and their bias) are shared, every task has its own input weights ``w^t``
    (all gates, with bias) and output layer ``W^t``. After the first task the shared weights and the chunk embeddings
    are frozen; after every task its own ``w^t``, ``W^t`` and embedding are frozen. So training a new task leaves every
    earlier task's generated weights bit-identical. Works for the LSTM and the GRU backends.
    """

    name = "grow"
    needs_hypernetwork = True

    def __init__(self, new_task_weights: str = "copy") -> None:
        """``new_task_weights``: ``"copy"`` (a new task's ``w^t``, ``W^t`` start as the previous task's) or
        ``"fresh"`` (a new draw of the first task's initial distribution); the paper does not say which."""
        from ..generators.recurrent import NEW_TASK_WEIGHTS

        if new_task_weights not in NEW_TASK_WEIGHTS:
            raise ValueError(f"unknown new_task_weights {new_task_weights!r}; valid: {list(NEW_TASK_WEIGHTS)}")
        self.new_task_weights = new_task_weights

    def attach(self, learner: Learner) -> None:
        super().attach(learner)
        if not getattr(learner.hnet.generator, "supports_growth", False):
            raise ValueError(
                f"strategy 'grow' needs a recurrent generator (generator='lstm' or 'gru'), got "
                f"{type(learner.hnet.generator).__name__}"
            )
        gen = learner.hnet.generator
        gen.new_task_weights = self.new_task_weights
        # "fresh" draws follow the hypernetwork's init scheme: its config when it has one (a built-in generator),
        # else what the hypernetwork set on the generator, else the default scheme
        builtin = getattr(learner.hnet, "builtin_init", None)
        gen.init_scheme = builtin or getattr(gen, "init_scheme", None) or "target_scale"

    def config(self) -> dict:
        return {"new_task_weights": self.new_task_weights}

    def before_task(self, learner: Learner, task_id: int) -> None:
        gen = learner.hnet.generator
        if not gen.growing:
            gen.enable_growth(learner.hnet.num_tasks, new_task_weights=self.new_task_weights)

    def after_task(self, learner: Learner, task_id: int, data: Any) -> None:
        gen = learner.hnet.generator
        for p in gen.shared_parameters():  # frozen after the first task, shared by all later ones
            p.requires_grad_(False)
        for p in gen.task_parameters(task_id):
            p.requires_grad_(False)
