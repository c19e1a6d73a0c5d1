"""Fine-tuning: a plain network trained task after task with nothing protecting old tasks (the lower bound)."""

from __future__ import annotations

from ..strategies.base import NoRegularizer
from ._common import WeightRegularizer

__all__ = ["Finetune"]


class Finetune(WeightRegularizer, NoRegularizer):
    """No penalty, no state: the shared weights simply move to each new task (catastrophic forgetting).

    Needs a :class:`~hypercl.DirectWeights` model (for a hypernetwork, plain fine-tuning is ``"none"``).
    """

    name = "finetune"
