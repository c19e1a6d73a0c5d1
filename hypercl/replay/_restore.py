"""Restore a learner built from its configuration to a saved :meth:`ContinualLearner.state` (in memory).

:meth:`ContinualLearner.load` rebuilds a learner from a checkpoint FILE; a replay run keeps several learners (the
replay model and one classifier per scenario) in one checkpoint, rebuilds each from the run's configuration and then
puts the saved state back with :func:`restore_learner` (the same steps as the tail of ``ContinualLearner.load``).
Optimizer states are not restored: a replay run checkpoints between tasks, and every task builds a new optimizer.
"""

from __future__ import annotations

from collections import OrderedDict


from ..checkpoint import CheckpointError
from ..learner import ContinualLearner, _to, restore_model_state

__all__ = ["restore_learner"]




def restore_learner(learner: ContinualLearner, state: dict) -> ContinualLearner:
    """Load ``state`` (from ``learner.state()`` of a learner built the same way) into ``learner``."""
    hnet = learner.hnet
    dev = learner.device
    try:
        while hnet.num_tasks < int(state["num_tasks"]):
            hnet.add_task()
        restore_model_state(hnet, state)
        learner.strategy.load_state_dict(_to(state["strategy"]["state"], dev))
    except (RuntimeError, KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"the saved replay-run state does not fit this model: {e}") from e
    learner.heads.num_classes = {int(k): int(v) for k, v in state["num_classes"].items()}
    learner.learned_tasks = [int(t) for t in state["learned_tasks"]]
    learner.task_buffers = {int(t): OrderedDict((n, b.to(dev)) for n, b in bufs.items())
                            for t, bufs in state["task_buffers"].items()}
    learner.history = {s: list(rows) for s, rows in state["history"].items()}
    learner.train_log = {int(k): v for k, v in state["train_log"].items()}
    learner.rng.set_state(state["rng"]["learner"])
    learner.optimizer = None
    return learner
