"""CL1 / CL2 / CL3 (seed paper section 4.1, van de Ven & Tolias 2019): output heads and per-sample task inference.

Labels handed to the learner are LOCAL (``0..k_t-1`` within task ``t``); the global class of a sample is
``class_offset[t] + local`` with ``class_offset[t]`` the number of classes of all earlier tasks.

Task inference is PER SAMPLE: every learned task's weights classify the sample (one ``vmap`` call over tasks), the
task whose output distribution has the lowest entropy is picked for that sample, and its weights give the class.
This is also what von Oswald et al.'s code does with ``--infer_with_entropy``: test batch size 1 ("for every x we
have to do that", ``mnist/train_splitMNIST.py`` lines 180-187 of github.com/chrhenning/hypercl at e325678), the
entropy of each candidate task's softmax over its own output units, argmin over the candidates (lines 274-294).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

import torch

__all__ = [
    "SCENARIOS",
    "check_scenario",
    "HeadLayout",
    "masked_entropy",
    "infer_task_by_entropy",
    "score_batch",
    "evaluate_task",
    "row_temperatures",
    "confusion_matrix",
    "scale_logits",
]

SCENARIOS = ("cl1", "cl2", "cl3")
OUTPUT_LAYOUTS = ("shared", "per_task")


def check_scenario(name: str) -> str:
    """``name`` if it is a scenario, else a ``ValueError`` listing the valid ones."""
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; valid: {list(SCENARIOS)}")
    return name


@dataclass
class HeadLayout:
    """Which output units each task uses, and how local labels map to global classes.

    ``output_layout="shared"``: every task uses units ``[0, k_t)`` (the usual layout for a hypernetwork, whose weights
    are task-specific anyway); ``"per_task"``: task ``t`` uses ``[offset_t, offset_t + k_t)`` (a multi-head layout).
    """

    output_layout: str = "shared"
    num_classes: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.output_layout not in OUTPUT_LAYOUTS:
            raise ValueError(f"unknown output_layout {self.output_layout!r}; valid: {list(OUTPUT_LAYOUTS)}")

    def register(self, task_id: int, num_classes: int) -> None:
        if num_classes <= 0:
            raise ValueError(f"task {task_id} must have at least one class, got {num_classes}")
        known = self.num_classes.get(task_id)
        if known is not None and known != num_classes:
            raise ValueError(f"task {task_id} was registered with {known} classes, now {num_classes}")
        missing = [t for t in range(task_id) if t not in self.num_classes]
        if known is None and missing:
            raise ValueError(f"tasks are registered in order: task {task_id} comes before tasks {missing}")
        self.num_classes[task_id] = int(num_classes)

    def offset(self, task_id: int) -> int:
        """Global class index of the task's first class."""
        return sum(self.num_classes[t] for t in range(task_id))

    def units(self, task_id: int) -> tuple[int, int]:
        """``[start, stop)`` of the output units the task uses in this layout."""
        start = self.offset(task_id) if self.output_layout == "per_task" else 0
        return start, start + self.num_classes[task_id]

    def unit_mask(self, task_ids: list[int], num_outputs: int, device: torch.device) -> torch.Tensor:
        """``(len(task_ids), num_outputs)`` bool mask of each task's units."""
        mask = torch.zeros(len(task_ids), num_outputs, dtype=torch.bool, device=device)
        for row, t in enumerate(task_ids):
            a, b = self.units(t)
            if b > num_outputs:
                raise ValueError(
                    f"task {t} needs output units [{a}, {b}) but the target has {num_outputs} outputs; "
                    "give the target more outputs or use output_layout='shared'"
                )
            mask[row, a:b] = True
        return mask


def scale_logits(logits: torch.Tensor, temperatures: Optional[torch.Tensor]) -> torch.Tensor:
    """``logits (T, B, O)`` of row ``t`` divided by ``temperatures[t]`` (``None``: unchanged)."""
    if temperatures is None:
        return logits
    temps = torch.as_tensor(temperatures, dtype=logits.dtype, device=logits.device).reshape(-1)
    if temps.numel() != logits.shape[0]:
        raise ValueError(
            f"temperatures has {temps.numel()} values, but there are {logits.shape[0]} candidate tasks: "
            "give one temperature per learned task"
        )
    return logits / temps.view(-1, *([1] * (logits.dim() - 1)))


def masked_entropy(
    logits: torch.Tensor, mask: torch.Tensor, temperatures: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Entropy of the softmax over the masked units: ``logits (T, B, O)``, ``mask (T, O)`` → ``(T, B)``; with
    ``temperatures`` (``(T,)``) row ``t``'s logits are divided by ``T_t`` first."""
    masked = scale_logits(logits, temperatures).masked_fill(~mask.unsqueeze(1), float("-inf"))
    logp = torch.log_softmax(masked, dim=-1)
    p = logp.exp()
    return -(p * logp.masked_fill(~mask.unsqueeze(1), 0.0)).sum(-1)


def infer_task_by_entropy(
    logits: torch.Tensor, mask: torch.Tensor, temperatures: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """Per-sample task inference: the row (task) with the lowest predictive entropy, ``(T, B, O)`` → ``(B,)``
    (each row's logits divided by its temperature first, when ``temperatures`` is given)."""
    return masked_entropy(logits, mask, temperatures).argmin(dim=0)


def confusion_matrix(true_rows: torch.Tensor, inferred_rows: torch.Tensor, num_tasks: int) -> torch.Tensor:
    """``(T, T)`` counts: ``[i, j]`` = samples of task row ``i`` whose task was inferred as row ``j`` (rows are
    positions in the learned tasks; one ``bincount``)."""
    true_rows, inferred_rows = torch.as_tensor(true_rows).long(), torch.as_tensor(inferred_rows).long()
    if true_rows.shape != inferred_rows.shape:
        raise ValueError(
            f"true and inferred tasks differ in shape: {tuple(true_rows.shape)} vs {tuple(inferred_rows.shape)}"
        )
    flat = true_rows.reshape(-1) * num_tasks + inferred_rows.reshape(-1)
    return torch.bincount(flat, minlength=num_tasks * num_tasks).reshape(num_tasks, num_tasks)


def score_batch(
    logits: torch.Tensor,
    mask: torch.Tensor,
    starts: torch.Tensor,
    offsets: torch.Tensor,
    true_row: int,
    y: torch.Tensor,
    task_conditioned: bool,
    scenario: str,
    temperatures: Optional[torch.Tensor] = None,
    rows: Optional[torch.Tensor] = None,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Correct predictions (count) and task-inference hits (count or ``None``) of one test batch of ONE task.

    For a hypernetwork (``task_conditioned``) ``logits`` is ``(T, B, O)``: every learned task's weights on the batch;
    ``mask``/``starts``/``offsets`` describe each row's units and class offset; ``true_row`` is the row of the
    batch's real task (used for CL1 only, where the task identity is given).
    For one shared weight set ``logits`` is ``(B, O)`` and the scenario picks the units: CL1 the task's own units,
    CL2 the shared units of the task, CL3 all units of the learned classes (global labels).
    ``temperatures`` (``(T,)``, task-conditioned CL2/CL3 only): row ``t``'s logits divided by ``T_t`` before the
    softmax of the entropy and of the prediction (``None``: unchanged). ``rows`` (``(B,)``, task-conditioned CL2/CL3):
    each sample's inferred row, from a criterion of :mod:`hypercl.task_inference` (``None``: lowest entropy).
    """
    check_scenario(scenario)
    if task_conditioned:
        if scenario == "cl1":
            row = logits[true_row].masked_fill(~mask[true_row], float("-inf"))
            return (row.argmax(-1) - starts[true_row] == y).sum(), None
        logits = scale_logits(logits, temperatures)
        if rows is None:
            rows = infer_task_by_entropy(logits, mask)  # (B,)
        picked = logits[rows, torch.arange(y.shape[0], device=y.device)]  # (B, O)
        local = picked.masked_fill(~mask[rows], float("-inf")).argmax(-1) - starts[rows]
        if scenario == "cl2":
            correct = (local == y).sum()
        else:
            correct = (offsets[rows] + local == offsets[true_row] + y).sum()
        return correct, (rows == true_row).sum()
    if scenario == "cl3":
        # one expanding head: all units of the learned classes, global labels
        allowed = mask.any(0)
        pred = logits.masked_fill(~allowed, float("-inf")).argmax(-1)
        return (pred == offsets[true_row] + y).sum(), None
    row = logits.masked_fill(~mask[true_row], float("-inf"))
    return (row.argmax(-1) - starts[true_row] == y).sum(), None


def evaluate_task(
    logits_of: Callable[[Any], torch.Tensor],
    batches: Iterable[tuple[Any, torch.Tensor]],
    heads: HeadLayout,
    learned: Sequence[int],
    task: int,
    task_conditioned: bool,
    scenarios: Sequence[str],
    temperatures: Optional[torch.Tensor] = None,
    infer: Optional[Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]] = None,
    inferred: Optional[list] = None,
) -> dict[str, tuple[float, Optional[float]]]:
    """``{scenario: (accuracy, task-inference accuracy or None)}`` of ONE task's test batches.

    ``logits_of(x)`` gives ``(T, B, O)`` logits of every learned task's weights (task-conditioned) or ``(B, O)``
    of one shared weight set; counts stay on the device, one host synchronisation per task and scenario.
    Task-conditioned CL2/CL3: ``infer(logits, mask, x)`` gives each sample's inferred row ``(B,)`` from the
    (temperature-scaled) logits and the inputs only (default: lowest entropy); it runs once per batch for CL2 and CL3
    together, and the rows are appended to ``inferred`` (a list of ``(B,)`` tensors) when given.
    """
    learned = list(learned)
    row = learned.index(task)
    counts: dict[str, list[torch.Tensor]] = {}
    mask: Optional[torch.Tensor] = None
    starts = offsets = torch.empty(0)
    n = 0
    for xb, yb in batches:
        logits = logits_of(xb)
        if mask is None:
            dev = logits.device
            mask = heads.unit_mask(learned, logits.shape[-1], dev)
            starts = torch.tensor([heads.units(t)[0] for t in learned], device=dev)
            offsets = torch.tensor([heads.offset(t) for t in learned], device=dev)
            counts = {s: [torch.zeros((), device=dev, dtype=torch.long) for _ in range(2)] for s in scenarios}
        rows = None
        if task_conditioned and any(s != "cl1" for s in scenarios):
            scaled = scale_logits(logits, temperatures)
            rows = infer(scaled, mask, xb) if infer is not None else infer_task_by_entropy(scaled, mask)
            if inferred is not None:
                inferred.append(rows)
        for s in scenarios:
            correct, hits = score_batch(logits, mask, starts, offsets, row, yb, task_conditioned, s, temperatures, rows)
            counts[s][0] += correct
            if hits is not None:
                counts[s][1] += hits
        n += len(yb)
    if n == 0 or not counts:
        raise ValueError(f"task {task} has no test samples: give evaluate() at least one (x, y) per learned task")
    out = {}
    for s in scenarios:
        has_ti = task_conditioned and s != "cl1"
        out[s] = (counts[s][0].item() / n, counts[s][1].item() / n if has_ti else None)
    return out


def row_temperatures(temperatures: Any, learned: Sequence[int], device: Any = "cpu") -> Optional[torch.Tensor]:
    """``(T,)`` temperatures of the learned tasks' rows from a per-task sequence/tensor or ``{task: T}``."""
    if temperatures is None:
        return None
    if isinstance(temperatures, Mapping):
        missing = [t for t in learned if t not in temperatures]
        if missing:
            raise ValueError(f"temperatures has no value for the learned tasks {missing}")
        values = [float(temperatures[t]) for t in learned]
    else:
        flat = torch.as_tensor(temperatures, dtype=torch.float32).reshape(-1)
        if flat.numel() <= max(learned):
            raise ValueError(
                f"temperatures has {flat.numel()} values, but tasks up to {max(learned)} are "
                "learned: give one temperature per task id"
            )
        values = flat[learned].tolist()
    if not all(v > 0 and v < float("inf") for v in values):
        raise ValueError(f"temperatures must be finite and > 0, got {values}")
    return torch.tensor(values, dtype=torch.float32, device=device)
