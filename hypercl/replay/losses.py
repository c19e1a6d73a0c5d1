"""Replay losses on masked output units: knowledge distillation (soft targets) and hard labels.

Every replayed sample carries two unit masks over the classifier's outputs: ``student_mask`` (the units the new
classifier is trained on for it) and ``teacher_mask ⊆ student_mask`` (the units of the previous classifier whose
predictions are the target). They express all three heads of van de Ven & Tolias 2019 with one code path:

* CL1 (multi-head): both masks are the head of the sample's task;
* CL2 (shared head): both masks are the shared units;
* CL3 (one expanding head): the student mask is every class seen so far including the current task's, the teacher
  mask the classes of the earlier tasks only (the current task's units get target probability 0, as the zero padding
  of ``utils.loss_fn_kd`` in van de Ven & Tolias' code).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["masked_distillation_loss", "masked_hard_label_loss", "hard_labels"]


def _check(
    student: torch.Tensor, teacher: torch.Tensor, student_mask: torch.Tensor, teacher_mask: torch.Tensor, validate: bool
) -> None:
    if student.shape != teacher.shape or student.dim() != 2:
        raise ValueError(
            f"student and teacher logits must both be (N, O), got {tuple(student.shape)} and {tuple(teacher.shape)}"
        )
    if student_mask.shape != student.shape or teacher_mask.shape != student.shape:
        raise ValueError(
            f"masks must be (N, O) = {tuple(student.shape)}, got {tuple(student_mask.shape)} and "
            f"{tuple(teacher_mask.shape)}"
        )
    if not validate:  # the value checks cost a host sync each; callers that build the masks themselves skip them
        return
    if bool((teacher_mask & ~student_mask).any()):
        raise ValueError("the teacher's units must be a subset of the student's units")
    if not bool(teacher_mask.any(-1).all()):
        raise ValueError("every replayed sample needs at least one teacher unit")


def masked_distillation_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    student_mask: torch.Tensor,
    teacher_mask: torch.Tensor,
    temperature: float = 2.0,
    validate: bool = True,
) -> torch.Tensor:
    """Knowledge distillation (Hinton et al. 2015) restricted to each sample's units, averaged over samples:

    ``T² · mean_n Σ_{u ∈ S_n} −softmax_{T_n}(teacher_n / T)_u · log softmax_{S_n}(student_n / T)_u``

    where ``S_n`` / ``T_n`` are the student / teacher units of sample ``n`` and the teacher's softmax is 0 on
    ``S_n \\ T_n``. This is ``Classifier.knowledge_distillation_loss`` of von Oswald et al.'s code and
    ``utils.loss_fn_kd`` of van de Ven & Tolias' code (both with ``T = 2``), with the units selected by masks.
    ``teacher`` is used as a constant (detached here). ``validate=False`` skips the mask value checks (host syncs).
    """
    _check(student, teacher, student_mask, teacher_mask, validate)
    t = float(temperature)
    if not t > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    log_p = torch.log_softmax(student.masked_fill(~student_mask, float("-inf")) / t, dim=-1)
    q = torch.softmax(teacher.detach().masked_fill(~teacher_mask, float("-inf")) / t, dim=-1)
    per_sample = -(q * log_p.masked_fill(~student_mask, 0.0)).sum(-1)
    return per_sample.mean() * t * t


def hard_labels(teacher: torch.Tensor, teacher_mask: torch.Tensor) -> torch.Tensor:
    """The previous classifier's predicted unit (argmax over the teacher units) of every sample, ``(N,)``."""
    return teacher.detach().masked_fill(~teacher_mask, float("-inf")).argmax(-1)


def masked_hard_label_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    student_mask: torch.Tensor,
    teacher_mask: torch.Tensor,
    validate: bool = True,
) -> torch.Tensor:
    """Cross-entropy over the student units with the teacher's argmax as the label (DGR, Shin et al. 2017)."""
    _check(student, teacher, student_mask, teacher_mask, validate)
    return F.cross_entropy(student.masked_fill(~student_mask, float("-inf")), hard_labels(teacher, teacher_mask))
