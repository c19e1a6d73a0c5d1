"""The state a :class:`~hypercl.ContinualLearner` holds, declared once for the mixins that make it up (training
forward, data-parallel steps, evaluation, checkpoints): each reads these fields, the learner's constructor sets them."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable, Optional

import torch
from torch import nn

from .batches import TaskSource
from .scenarios import HeadLayout

__all__ = ["LearnerFields"]


class LearnerFields:
    """Typed declarations only (no values, no behaviour)."""

    hnet: Any  # the weight source: HyperNetwork, DirectWeights, IndependentWeights, ...
    device: torch.device
    heads: HeadLayout
    task_conditioned: bool
    task_buffers: dict[int, OrderedDict[str, torch.Tensor]]
    learned_tasks: list[int]
    scenario: str
    strategy: Any  # hypercl.strategies.Strategy (a higher layer)
    optimizer: Optional[torch.optim.Optimizer]
    optimizer_name: str
    lr: float
    optimizer_kwargs: dict[str, Any]
    batch_size: int
    eval_batch_size: int
    seed: int
    rng: torch.Generator
    progress: bool
    check_every: int
    train_transform: Optional[Callable[[torch.Tensor], torch.Tensor]]
    distributed: Any  # hypercl.distributed.DistributedContext or None
    compile: bool
    compile_options: dict[str, Any]
    compile_error: Optional[str]
    autocast_dtype: Optional[torch.dtype]  # a property of TargetForward (validated on assignment)
    history: dict[str, list[dict]]
    train_log: dict[int, dict]
    _compiled: Optional[tuple[str, Callable[..., Any]]]
    _ddp: Optional[nn.Module]
    _ddp_key: Optional[tuple[Any, int]]

    @property
    def target(self) -> Any:  # the FunctionalTarget of the weight source
        return self.hnet.target

    def data_source(self, data: Any, task_id: Any = "?", split: str = "train") -> TaskSource:
        raise NotImplementedError

    def task_logits(self, task_id: int, x: Any) -> torch.Tensor:
        raise NotImplementedError

    def task_loss(self, task_id: int, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def make_task_optimizer(self) -> torch.optim.Optimizer:
        raise NotImplementedError

    def _compile_config(self) -> Any:
        raise NotImplementedError

    def task_optimizer(self) -> torch.optim.Optimizer:
        """The current task's optimizer; a clear error before the first task has begun."""
        if self.optimizer is None:
            raise RuntimeError("no optimizer yet: a training step needs a task begun by fit_task() or begin_task()")
        return self.optimizer
