"""The shape of a learner checkpoint, checked before anything is built from it.

The digest (:func:`hypercl.checkpoint.payload_digest`) finds damage to a file; this finds a well-formed file whose
entries have the wrong types (another tool's file, an edited state saved again): every entry
:meth:`~hypercl.ContinualLearner.load` reads is checked here, so a wrong type is one :class:`CheckpointError` naming
the file and the entry, never a learner built from it (``list("01")`` would pass as tasks ``[0, 1]``). The strategy's
own state is the strategy's to check (its ``load_state_dict``).
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable, Union

import torch

from .checkpoint import CheckpointError, one_line

__all__ = ["check_learner_state"]


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _str(v: Any) -> bool:
    return isinstance(v, str)


def _opt(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def _dict_of(key: Callable[[Any], bool], value: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, dict) and all(key(k) and value(x) for k, x in v.items())


def _list_of(item: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, list) and all(item(x) for x in v)


def _tensor(v: Any) -> bool:
    return isinstance(v, torch.Tensor)


_tensors = _dict_of(_str, _tensor)
_row = _dict_of(_str, lambda v: True)
_accuracies = _dict_of(lambda k: _int(k) or _str(k), lambda v: v is None or (_num(v) and 0.0 <= v <= 1.0))


def _confusion(v: Any) -> bool:
    return _row(v) and _list_of(_int)(v.get("tasks")) and _list_of(_list_of(_int))(v.get("counts"))


def _history_row(v: Any) -> bool:
    """One evaluation row (:meth:`~hypercl.ContinualLearner.evaluate`): accuracies and task inference per task, the
    criterion and the CL2/CL3 confusion counts where recorded."""
    return (
        _row(v)
        and _int(v.get("after_task"))
        and _accuracies(v.get("accuracy"))
        and _accuracies(v.get("task_inference"))
        and ("task_inference_method" not in v or _str(v["task_inference_method"]))
        and ("confusion" not in v or _confusion(v["confusion"]))
    )


#: entry -> check; ``None`` marks an entry older checkpoints may lack
_TOP: dict[str, tuple[Callable[[Any], bool], bool]] = {
    "model_kind": (_str, True),
    "model_config": (_opt(_row), True),
    "model_spec": (_opt(lambda v: _row(v) and _str(v.get("name")) and _row(v.get("kwargs"))), True),
    "num_tasks": (_int, True),
    "growing": (lambda v: isinstance(v, bool), True),
    "model_state": (_tensors, True),
    "model_extra": (_row, True),
    "requires_grad": (_dict_of(_str, lambda v: isinstance(v, bool)), True),
    "target_buffers": (_tensors, True),
    "target_frozen": (_tensors, False),
    "dtype": (_opt(_str), False),
    "task_buffers": (_dict_of(_int, _tensors), True),
    "strategy": (lambda v: _row(v) and _str(v.get("name")) and _row(v.get("config")) and "state" in v, True),
    "learner": (_row, True),
    "optimizer_state": (_opt(_row), True),
    "num_classes": (_dict_of(_int, lambda v: _int(v) and v > 0), True),
    "learned_tasks": (_list_of(_int), True),
    "history": (_dict_of(_str, _list_of(_history_row)), True),
    "train_log": (_dict_of(lambda k: _int(k) or _str(k), _row), True),
    "rng": (
        lambda v: (
            _row(v) and _tensor(v.get("learner")) and _tensor(v.get("torch")) and _list_of(_tensor)(v.get("cuda"))
        ),
        True,
    ),
}

_LEARNER: dict[str, tuple[Callable[[Any], bool], bool]] = {
    "scenario": (_str, True),
    "optimizer": (_str, True),
    "lr": (lambda v: _num(v) and v > 0, True),
    "optimizer_kwargs": (_row, True),
    "output_layout": (_str, True),
    "batch_size": (lambda v: _int(v) and v > 0, True),
    "eval_batch_size": (lambda v: _int(v) and v > 0, True),
    "seed": (_int, True),
    "check_every": (lambda v: _int(v) and v > 0, True),
    "compile": (lambda v: isinstance(v, bool), False),
    "compile_options": (_opt(_row), False),
    "autocast_dtype": (_opt(_str), False),
}


def _short(v: Any) -> str:
    if isinstance(v, torch.Tensor):
        return f"a tensor of shape {tuple(v.shape)}"
    if isinstance(v, (dict, list)):
        return f"a {type(v).__name__} of {len(v)} entries with a wrong type inside"
    return one_line(f"{type(v).__name__} {v!r}", 60)


def _check(entries: dict, spec: dict, where: str, path: Union[str, os.PathLike]) -> None:
    for key, (ok, required) in spec.items():
        if key not in entries:
            if required:
                raise CheckpointError(
                    f"{path} lacks the entry {where}{key!r}; it is not a complete learner "
                    "checkpoint: remove it and train again"
                )
            continue
        if not ok(entries[key]):
            raise CheckpointError(
                f"{path}: the entry {where}{key!r} is {_short(entries[key])}, not what a learner "
                "checkpoint holds; remove it (or restore a good copy) and train again"
            )


def check_learner_state(state: dict, path: Union[str, os.PathLike]) -> None:
    """:class:`CheckpointError` (one line naming ``path`` and the entry) unless every entry a learner is built from
    has its type: tensors where tensors belong, task ids as integers, accuracies in [0, 1], ..."""
    _check(state, _TOP, "", path)
    _check(state["learner"], _LEARNER, "learner.", path)
    unknown = [t for t in state["learned_tasks"] if t not in state["num_classes"]]
    if unknown or len(set(state["learned_tasks"])) != len(state["learned_tasks"]):
        raise CheckpointError(
            f"{path}: learned tasks {state['learned_tasks']} do not match the registered tasks "
            f"{sorted(state['num_classes'])}; remove it (or restore a good copy) and train again"
        )
