"""Shared pieces of the weight-regularisation baselines: the plain-network check, argument checks, the Fisher."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Iterator, Optional

import torch

from ..batches import inputs_to, slice_inputs, split_batch, task_source
from ..strategies.base import Strategy

if TYPE_CHECKING:  # pragma: no cover
    from ..strategies.base import Learner

FISHER_LABELS = ("true", "predicted")


def check_number(name: str, value: Any, low: float = 0.0, high: float = math.inf, low_open: bool = False) -> float:
    """``float(value)`` if it is a finite real number in ``[low, high]`` (``(low, high]`` when ``low_open``)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must be a finite number in {bracket}{low}, {high}], got {value!r}")
    return float(value)


class WeightRegularizer(Strategy):
    """Base of the plain-network baselines: they regularise the ONE weight vector shared by all tasks."""

    def attach(self, learner: Learner) -> None:
        hnet = learner.hnet
        if getattr(hnet, "task_conditioned", True) or not isinstance(getattr(hnet, "weights", None), torch.Tensor):
            raise ValueError(
                f"strategy {self.name!r} regularises the single weight vector of a plain network and needs a "
                f"hypercl.DirectWeights model, got {type(hnet).__name__}; for a hypernetwork use 'hnet', 'iwr' or "
                "'grow' (or wrap your module with hypercl.DirectWeights(model) for this baseline)"
            )

    @staticmethod
    def weights(learner: Learner) -> torch.Tensor:
        """The shared flat weight vector ``θ`` (N,) of the :class:`~hypercl.DirectWeights`."""
        return learner.hnet.weights


def _predict(learner: Learner, task_id: int, x: torch.Tensor) -> torch.Tensor:
    """The model's own label for ``x`` in the label space :meth:`ContinualLearner.task_loss` expects."""
    logits = learner.task_logits(task_id, x)
    start, stop = learner.train_units(task_id)
    shift = learner.heads.offset(task_id) - start if learner.uses_global_labels() else 0
    return logits[..., start:stop].argmax(-1) - shift


def _predicted_label_data(learner: Learner, task_id: int, data: Any) -> Any:
    """``data`` with its labels replaced by the model's predictions (eval mode, no gradients)."""
    src = task_source(data, task_id)
    was_training = learner.target.training

    @torch.no_grad()
    def predict(x: Any) -> torch.Tensor:
        learner.target.eval()
        try:
            return _predict(learner, task_id, inputs_to(x, learner.device))
        finally:
            learner.target.train(was_training)

    if src.pair is not None:  # in memory
        x, y_true = src.pair
        step = learner.eval_batch_size
        y = torch.cat([predict(slice_inputs(x, i, i + step)) for i in range(0, len(y_true), step)])
        return (x, y.to(y_true.device))

    def batches() -> Iterator[tuple[Any, torch.Tensor]]:
        for batch in src.batch_iterable():
            xb, _ = split_batch(batch, task_id)
            yield xb, predict(xb)

    return batches()


def task_fisher(
    learner: Learner,
    task_id: int,
    data: Any,
    num_samples: Optional[int],
    batch_size: int,
    labels: str,
) -> torch.Tensor:
    """Raw diagonal Fisher (N,) of the shared weights for ``task_id`` (:meth:`ContinualLearner.task_fisher`).

    ``labels="true"``: the empirical Fisher with the data's labels; ``"predicted"``: the labels the model predicts
    itself (the default of van de Ven & Tolias' reference code, ``--emp-fi`` off).
    """
    if labels == "predicted":
        data = _predicted_label_data(learner, task_id, data)
    return learner.task_fisher(task_id, data, num_samples=num_samples, batch_size=batch_size, normalize=False).detach()


def check_fisher_args(fisher_samples: Optional[int], fisher_batch_size: int, fisher_labels: str) -> None:
    if fisher_samples is not None and (isinstance(fisher_samples, bool) or int(fisher_samples) <= 0):
        raise ValueError(f"fisher_samples must be a positive int or None, got {fisher_samples!r}")
    if int(fisher_batch_size) <= 0:
        raise ValueError(f"fisher_batch_size must be positive, got {fisher_batch_size!r}")
    if fisher_labels not in FISHER_LABELS:
        raise ValueError(f"fisher_labels must be one of {list(FISHER_LABELS)}, got {fisher_labels!r}")
