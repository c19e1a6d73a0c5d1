"""The classifier of the replay setting: an ordinary network (not generated) trained on the current task's data plus
replayed inputs labelled by the previous classifier (soft targets: distillation; hard targets: its argmax).

:class:`ReplayClassifier` is a :class:`~hypercl.ContinualLearner` over a :class:`~hypercl.DirectWeights` model, so
the heads of each scenario (CL1 multi-head, CL2 shared head, CL3 one expanding head; van de Ven & Tolias 2019),
the evaluation, the accuracy matrix and ``results()`` are the learner's own; one classifier is trained per scenario.
Training adds, to every step of a task ``t > 0``, a replay batch:

* ``source="generator"`` with a task-conditioned sampler (HNET+R): ``⌈R / (t)⌉`` inputs decoded under EACH earlier
  task's decoder (von Oswald et al. 2020, ``get_fake_data_loss``: ``bs_per_task = ceil(batch_size / t)``); a replayed
  sample of task ``j`` is distilled on task ``j``'s head in CL1;
* ``source="generator"`` with an unconditional sampler (DGR): ``R`` samples of the previous VAE; in CL1 every earlier
  task's head is trained on every sample and the losses are averaged over heads (van de Ven & Tolias, ``train.py``);
* ``source="current"`` (LwF, Li & Hoiem 2017): the current batch itself, labelled by the previous classifier on the
  earlier tasks' units (in CL1 each earlier head, averaged).

The loss is ``(1 − w) · L_task + w · L_replay`` with ``w = replay_weight`` (``mixing="fixed"``; von Oswald's
``l_rew = 0.5``) or ``w = 1 − 1/(t + 1)`` (``mixing="tasks"``; van de Ven & Tolias' ``rnt = 1/task``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

from ..batches import batch_len, inputs_to
from ..learner import ContinualLearner
from .losses import hard_labels, masked_distillation_loss, masked_hard_label_loss

__all__ = ["ReplayClassifier", "ReplayBatch", "TARGETS", "MIXINGS", "SOURCES"]

TARGETS = ("soft", "hard")
MIXINGS = ("fixed", "tasks")
SOURCES = ("generator", "current")


@dataclass
class ReplayBatch:
    """One step's replayed data and what the classifier is trained to say about it.

    ``inputs`` ``(N, D)``; ``owner`` ``(N,)`` the row of each input's task in the sampler's ``task_ids`` (``None``
    without task identity); ``teacher_logits`` ``(N, O)`` of the previous classifier. The loss has ``M`` rows:
    row ``m`` is input ``index[m]`` on the units ``student_mask[m]`` with targets from the units ``teacher_mask[m]``;
    ``labels[m]`` is the previous classifier's argmax there (the hard label of DGR).
    """

    inputs: torch.Tensor
    owner: Optional[torch.Tensor]
    teacher_logits: torch.Tensor
    index: torch.Tensor
    student_mask: torch.Tensor
    teacher_mask: torch.Tensor

    @property
    def labels(self) -> torch.Tensor:
        return hard_labels(self.teacher_logits[self.index], self.teacher_mask)


class ReplayClassifier(ContinualLearner):
    """A plain classifier trained with replay (see the module docstring).

    Args:
        hnet: a :class:`~hypercl.DirectWeights` (one weight set for all tasks).
        targets: ``"soft"`` (distillation with ``temperature``) or ``"hard"`` (the previous classifier's argmax).
        temperature: distillation temperature ``T`` (2 in both reference codes).
        mixing: ``"fixed"`` (weight ``replay_weight``) or ``"tasks"`` (``1 − 1/(t+1)`` at 0-based task ``t``).
        replay_weight: ``w`` of ``mixing="fixed"``.
        replay_batch_size: ``R``, replayed inputs per step (split evenly over the earlier tasks of a conditional
            sampler, rounded up).
        source: ``"generator"`` (a sampler given to :meth:`fit_task`) or ``"current"`` (LwF).
        **kwargs: :class:`ContinualLearner`'s (scenario, optimizer, lr, batch_size, device, seed, ...).
    """

    def __init__(
        self,
        hnet: Any,
        *args: Any,
        targets: str = "soft",
        temperature: float = 2.0,
        mixing: str = "fixed",
        replay_weight: float = 0.5,
        replay_batch_size: int = 128,
        source: str = "generator",
        **kwargs: Any,
    ) -> None:
        super().__init__(hnet, *args, **kwargs)
        if self.task_conditioned:
            raise TypeError("the replay classifier is an ordinary network: give a hypercl.DirectWeights")
        self.configure(targets, temperature, mixing, replay_weight, replay_batch_size, source)
        self._teacher: Optional[dict] = None
        self._sampler: Any = None
        self._pending: Optional[tuple[torch.Tensor, ReplayBatch]] = None

    def configure(
        self,
        targets: str = "soft",
        temperature: float = 2.0,
        mixing: str = "fixed",
        replay_weight: float = 0.5,
        replay_batch_size: int = 128,
        source: str = "generator",
    ) -> None:
        """Set the replay options (checked)."""
        if targets not in TARGETS:
            raise ValueError(f"targets must be one of {TARGETS}, got {targets!r}")
        if mixing not in MIXINGS:
            raise ValueError(f"mixing must be one of {MIXINGS}, got {mixing!r}")
        if source not in SOURCES:
            raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
        if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
        if not (isinstance(replay_weight, (int, float)) and 0 <= replay_weight <= 1):
            raise ValueError(f"replay_weight must be in [0, 1], got {replay_weight!r}")
        if int(replay_batch_size) <= 0:
            raise ValueError(f"replay_batch_size must be positive, got {replay_batch_size!r}")
        self.targets, self.temperature, self.mixing = targets, float(temperature), mixing
        self.replay_weight, self.replay_batch_size, self.source = float(replay_weight), int(replay_batch_size), source

    # ------------------------------------------------------------------ training
    def fit_task(
        self,
        task_id: int,
        data: Any,
        iterations: Optional[int] = None,
        epochs: Optional[int] = None,
        num_classes: Optional[int] = None,
        batch_size: Optional[int] = None,
        callback: Optional[Callable[[int, torch.Tensor], None]] = None,
        sampler: Any = None,
    ) -> dict:
        """:meth:`ContinualLearner.fit_task` with replay from ``sampler`` (``source="generator"``; ignored for
        ``"current"``). The first task, or a generator source without a sampler, trains on the task alone."""
        replay = bool(self.learned_tasks) and (self.source == "current" or sampler is not None)
        if replay:
            if sampler is not None and sampler.conditional:
                unknown = [t for t in sampler.task_ids if t not in self.learned_tasks]
                if unknown:
                    raise ValueError(f"the sampler replays tasks {unknown} the classifier has not learned")
            self._teacher = self.target.unflatten(self.hnet.weights.detach().clone())
            self._sampler = sampler if self.source == "generator" else None
        try:
            log = super().fit_task(
                task_id,
                data,
                iterations=iterations,
                epochs=epochs,
                num_classes=num_classes,
                batch_size=batch_size,
                callback=callback,
            )
        finally:
            self._teacher, self._sampler, self._pending = None, None, None
        log["replay"] = replay
        return log

    def replay_weight_for(self, task_id: int) -> float:
        """``w`` of ``(1 − w) · L_task + w · L_replay`` while learning ``task_id`` (0-based)."""
        if self.mixing == "fixed":
            return self.replay_weight
        return 1.0 - 1.0 / (len([t for t in self.learned_tasks if t != task_id]) + 1)

    @torch.no_grad()
    def _masks(
        self, task_id: int, owner: Optional[torch.Tensor], task_ids: Optional[list[int]], n: int, num_outputs: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        dev = self.device
        old = [t for t in self.learned_tasks if t != task_id]
        if self.scenario == "cl1":
            if owner is not None and task_ids is not None:  # each replayed sample on its own task's head
                heads = self.heads.unit_mask(list(task_ids), num_outputs, dev)
                mask = heads[owner]
                return torch.arange(n, device=dev), mask, mask
            heads = self.heads.unit_mask(old, num_outputs, dev)  # every earlier head on every sample
            index = torch.arange(n, device=dev).repeat(len(old))
            mask = heads.repeat_interleave(n, dim=0)
            return index, mask, mask
        index = torch.arange(n, device=dev)
        if self.scenario == "cl2":
            row = self.heads.unit_mask([task_id], num_outputs, dev)
            mask = row.expand(n, -1)
            return index, mask, mask
        # cl3: the student's units are all classes seen so far, the teacher's those of the earlier tasks
        seen = self.heads.offset(task_id) + self.heads.num_classes[task_id]
        units = torch.arange(num_outputs, device=dev)
        student = (units < seen).expand(n, -1)
        teacher = (units < self.heads.offset(task_id)).expand(n, -1)
        return index, student, teacher

    @torch.no_grad()
    def replay_batch(self, task_id: int, x: Optional[torch.Tensor] = None) -> ReplayBatch:
        """The replayed inputs of one step while learning ``task_id``, with the previous classifier's logits and the
        units of the loss (``x``: the current batch, used by ``source="current"``)."""
        if self._teacher is None:
            raise RuntimeError("replay_batch() is only available while fit_task() replays")
        owner, task_ids = None, None
        if self.source == "current":
            if x is None:
                raise ValueError("source='current' replays the current batch: pass x")
            inputs = x  # a tensor, tuple or dict of tensors (hypercl.batches)
        elif self._sampler.conditional:
            task_ids = list(self._sampler.task_ids)
            per_task = math.ceil(self.replay_batch_size / len(task_ids))
            inputs, owner = self._sampler.sample(per_task, self.rng)
        else:
            inputs, _ = self._sampler.sample(self.replay_batch_size, self.rng)
        inputs = inputs_to(inputs, self.device)
        teacher = self.target(self._teacher, inputs)
        index, s_mask, t_mask = self._masks(task_id, owner, task_ids, batch_len(inputs), teacher.shape[-1])
        return ReplayBatch(inputs, owner, teacher, index, s_mask, t_mask)

    def replay_loss(self, student_logits: torch.Tensor, batch: ReplayBatch) -> torch.Tensor:
        """Distillation (``targets="soft"``) or hard-label cross-entropy on the batch's units, mean over rows."""
        s = student_logits[batch.index]
        t = batch.teacher_logits[batch.index]
        if self.targets == "soft":
            return masked_distillation_loss(
                s, t, batch.student_mask, batch.teacher_mask, self.temperature, validate=False
            )
        return masked_hard_label_loss(s, t, batch.student_mask, batch.teacher_mask, validate=False)

    def task_logits(self, task_id: int, x: torch.Tensor) -> torch.Tensor:
        if self._teacher is None or not self.target.training:
            return super().task_logits(task_id, x)
        params = self.hnet(task_id)
        batch = self.replay_batch(task_id, x)
        if self.source == "current":
            logits = self.target(params, x)
            self._pending = (logits, batch)
            return logits
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                f"generative replay decodes tensors, so the current batch must be one tensor too, got a "
                f"{type(x).__name__}: use source='current' (LwF) for tuple/dict inputs"
            )
        both = self.target(params, torch.cat([x, batch.inputs]))  # one forward for current + replayed inputs
        self._pending = (both[len(x) :], batch)
        return both[: len(x)]

    def task_loss(self, task_id: int, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = super().task_loss(task_id, logits, y)
        if self._pending is None:
            return loss
        student, batch = self._pending
        self._pending = None
        w = self.replay_weight_for(task_id)
        return (1.0 - w) * loss + w * self.replay_loss(student, batch)

    def replay_config(self) -> dict:
        return {
            "targets": self.targets,
            "temperature": self.temperature,
            "mixing": self.mixing,
            "replay_weight": self.replay_weight,
            "replay_batch_size": self.replay_batch_size,
            "source": self.source,
        }
