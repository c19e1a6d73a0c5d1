"""A plain target network as a weight source: the same trainable weights for every task (the baselines' model).

:class:`DirectWeights` has the part of the :class:`~hypercl.HyperNetwork` interface the learner uses, so fine-tuning,
EWC, Online EWC and SI run through the same :class:`~hypercl.ContinualLearner` as the hypernetworks.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence, Union

import torch
from torch import nn

from .target import FunctionalTarget, wrap

__all__ = ["DirectWeights"]


class DirectWeights(nn.Module):
    """One flat trainable weight vector ``θ`` (initialised from the module's own init), shared by all tasks."""

    task_conditioned = False
    kind = "direct"
    #: the learner accepts any module with this flag and the HyperNetwork-like interface
    is_weight_source = True

    def __init__(self, target: Union[FunctionalTarget, nn.Module]) -> None:
        super().__init__()
        self._target = wrap(target)
        self.weights = nn.Parameter(self._target.flatten(self._target.named_parameters_dict()).clone())
        self._num_tasks = 0
        self.config = {"kind": "direct"}

    @property
    def target(self) -> FunctionalTarget:
        return self._target

    @property
    def num_tasks(self) -> int:
        return self._num_tasks

    def add_task(self) -> int:
        self._num_tasks += 1
        return self._num_tasks - 1

    def generate_flat(self, task_ids: Union[int, Sequence[int]]) -> torch.Tensor:
        n = 1 if isinstance(task_ids, int) else len(task_ids)
        return self.weights.unsqueeze(0).expand(n, -1)

    def generate(self, task_ids: Union[int, Sequence[int]]) -> OrderedDict[str, torch.Tensor]:
        return self._target.unflatten(self.generate_flat(task_ids))

    def forward(self, task_id: int) -> OrderedDict[str, torch.Tensor]:
        return self._target.unflatten(self.weights)

    @property
    def num_params(self) -> int:
        return self.weights.numel()

    @property
    def compression_ratio(self) -> float:
        return 1.0

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        self._target.module._apply(fn)
        return self

    def state_extra(self) -> dict:
        return {"num_tasks": self._num_tasks}

    def load_state_extra(self, state: dict) -> None:
        self._num_tasks = int(state.get("num_tasks", 0))
