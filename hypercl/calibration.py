"""Per-task temperature scaling for entropy task inference (beyond the paper; Guo et al. 2017's temperature scaling).

CL2/CL3 pick, per sample, the task whose softmax over its own output units has the lowest entropy (seed paper 4.1).
Tasks whose networks are more or less confident than the others bias that choice. Calibration fits one temperature
``T_t`` per task on a VALIDATION split carved from that task's training data (never the test data), right after the
task is learned, and the entropy is then taken on ``softmax(logits_t / T_t)``
(:meth:`hypercl.ContinualLearner.evaluate` with ``temperatures=``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["fit_temperature", "task_logits", "task_temperature", "task_temperatures"]

#: the search interval of log T (T in [e^-4, e^4] ≈ [0.018, 55])
_LOG_T_BOUNDS = (-4.0, 4.0)


@torch.no_grad()
def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, iters: int = 60) -> float:
    """The ``T > 0`` minimising the mean NLL of ``softmax(logits / T)`` at ``labels`` (deterministic).

    The NLL is convex in ``1/T``, hence unimodal in ``log T``: a golden-section search over
    ``log T ∈ [-4, 4]`` finds its minimum to ~1e-12 in 60 steps, without gradients or random restarts.
    """
    if logits.ndim != 2 or labels.ndim != 1 or len(logits) != len(labels) or len(labels) == 0:
        raise ValueError(
            f"fit_temperature needs (N, K) logits and (N,) labels, N > 0; got {tuple(logits.shape)} "
            f"and {tuple(labels.shape)}"
        )
    z, y = logits.double(), labels.long()

    def nll(log_t: float) -> float:
        return F.cross_entropy(z / math.exp(log_t), y).item()

    lo, hi = _LOG_T_BOUNDS
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = nll(a), nll(b)
    for _ in range(iters):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = nll(b)
    return math.exp((lo + hi) / 2)


@torch.no_grad()
def task_logits(learner: Any, task_id: int, x: Any, batch_size: int = 1000) -> torch.Tensor:
    """Task ``task_id``'s logits over ITS OWN output units (its head), from its generated weights, ``(N, k_t)``."""
    from .batches import batch_len, inputs_to, slice_inputs

    was = learner.hnet.training, learner.target.training
    learner.hnet.eval()
    learner.target.eval()
    try:
        params = learner.hnet(task_id)
        buffers = learner.task_buffers.get(task_id) if getattr(learner, "task_buffers", None) else None
        a, b = learner.heads.units(task_id)
        n = batch_len(x)
        out = []
        for i in range(0, n, batch_size):
            xb = inputs_to(slice_inputs(x, i, min(i + batch_size, n)), learner.device)
            logits = learner.target(params, xb, buffers=buffers) if buffers else learner.target(params, xb)
            out.append(logits[:, a:b].float())
        return torch.cat(out)
    finally:
        learner.hnet.train(was[0])
        learner.target.train(was[1])


def task_temperature(learner: Any, task_id: int, val_data: Any) -> float:
    """``T_t`` fitted on task ``task_id``'s validation pair ``(X, Y)`` (local labels), carved from its TRAINING data.

    ``val_data`` is the pair, or a benchmark task with a ``.val`` pair (only ``.val`` is read, never ``x_test``)."""
    if not isinstance(val_data, (tuple, list)) and hasattr(val_data, "val"):
        val_data = val_data.val
    if not isinstance(val_data, (tuple, list)) or len(val_data) != 2:
        raise ValueError(
            f"task_temperature needs a validation pair (X, Y) or a task with .val, got {type(val_data).__name__}"
        )
    x, y = val_data
    return fit_temperature(task_logits(learner, task_id, x), torch.as_tensor(y).to(learner.device))


def task_temperatures(learner: Any, val_sets: Any) -> list[float]:
    """``[T_0, T_1, ...]`` for every learned task, for ``evaluate(..., temperatures=)``; ``val_sets`` indexed by task
    id (a list, or a dict ``{task: val}``), each entry as :func:`task_temperature` takes it."""
    return [task_temperature(learner, t, val_sets[t]) for t in sorted(learner.learned_tasks)]
