"""HNET (eq. 2) and IWR (eq. 3) output regularisers of the hypernetwork, with the optional lookahead ΔΘ_h."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..config import BETA_MAX
from ..regularizers import hnet_output_regularizer, importance_weighted_regularizer
from .base import Strategy

if TYPE_CHECKING:  # pragma: no cover
    from ..hypernetwork import HyperNetwork
    from .base import Learner

__all__ = [
    "TARGET_MODES",
    "RawGeneration",
    "HNETRegularizer",
    "IWRegularizer",
    "candidate_step",
    "check_reg_tasks_per_step",
    "draw_old_tasks",
]

#: where the targets ``f_h(e_t, c, Θ*_h)`` of eq. 2/3 come from: stored once per task as a ``(T−1, N)`` tensor, or
#: generated on the fly from a frozen copy of the hypernetwork's parameters ``Θ*_h`` for the tasks drawn this step
TARGET_MODES = ("stored", "online")


def check_reg_tasks_per_step(value: Optional[int]) -> Optional[int]:
    """``reg_tasks_per_step`` as an int >= 1 or None (all old tasks); a clear error otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"reg_tasks_per_step must be an int >= 1 or None (all old tasks), got {value!r}")
    return int(value)


def draw_old_tasks(num_old: int, k: Optional[int], generator: torch.Generator) -> Optional[torch.Tensor]:
    """Positions of the old tasks regularised this step: ``k`` of ``num_old`` drawn WITHOUT replacement from
    ``generator`` (``randperm``), or ``None`` = all of them (``k`` None or ``k >= num_old``; nothing is drawn then,
    so the generator's stream is untouched).

    Averaging eq. 2/3 over the ``k`` drawn tasks instead of all ``num_old`` (``β/k Σ_drawn`` instead of
    ``β/(T−1) Σ_all``) is the full sum scaled by ``(T−1)/k``: each old task is drawn with probability
    ``k/(T−1)``, so the expectation is exactly eq. 2/3. hypnettorch's ``calc_fix_target_reg`` does the same with
    its ``batch_size`` argument (numpy's global RNG, ``replace=False``, the sum divided by the batch size;
    ``hypnettorch/utils/hnet_regularizer.py`` lines 183-189 and 278, GitHub chrhenning/hypnettorch at 12133c0).
    """
    if k is None or k >= num_old:
        return None
    return torch.randperm(num_old, generator=generator)[:k]


@torch.no_grad()
def candidate_step(optimizer: torch.optim.Optimizer) -> dict[nn.Parameter, torch.Tensor]:
    """The step ``ΔΘ_h`` the optimizer would take with the current gradients (the lookahead of eq. 2/3).

    Adam/AdamW: the bias-corrected Adam update from the optimizer's moments and the new gradient (no weight
    decay); any other optimizer: the SGD step ``-lr · grad``. Parameters without a gradient get no entry.
    """
    steps: dict[nn.Parameter, torch.Tensor] = {}
    adam = isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW))
    for group in optimizer.param_groups:
        lr = float(group["lr"])
        for p in group["params"]:
            if p.grad is None:
                continue
            g = p.grad
            if not adam:
                steps[p] = -lr * g
                continue
            b1, b2 = group["betas"]
            state = optimizer.state.get(p, {})
            # the step count stays where the optimizer keeps it (a device tensor for fused/capturable Adam): no host
            # synchronisation per step
            t = state["step"] + 1 if "step" in state else 1.0
            bc1 = 1 - b1**t
            bc2_sqrt = (1 - b2**t).sqrt() if torch.is_tensor(t) else math.sqrt(1 - b2**t)
            # in place on two fresh temporaries: m = lerp(m, g, 1-β1), v = β2 v + (1-β2) g², step = -lr m̂ / (√v̂ + ε)
            m = state["exp_avg"].lerp(g, 1 - b1) if "exp_avg" in state else g * (1 - b1)
            v = state["exp_avg_sq"] * b2 if "exp_avg_sq" in state else torch.zeros_like(g)
            v.addcmul_(g, g, value=1 - b2).sqrt_().div_(bc2_sqrt).add_(group["eps"])
            steps[p] = m.div_(v).mul_(-lr).div_(bc1)
    return steps


class RawGeneration(nn.Module):
    """Adaptor so ``functional_call`` can evaluate ``hnet.generate_raw`` at shifted parameters Θ_h + ΔΘ_h."""

    def __init__(self, hnet: HyperNetwork) -> None:
        super().__init__()
        self.hnet = hnet

    def forward(self, task_ids: list[int]) -> torch.Tensor:
        return self.hnet.generate_raw(task_ids)


class HNETRegularizer(Strategy):
    """Eq. 2 (von Oswald et al. 2020): keep the weights generated for old tasks where they were.

    Before task ``T`` the weights ``f_h(e_t, c, Θ*_h)`` of every learned task ``t < T`` are generated in ONE call and
    stored (detached) as one ``(T−1, N)`` tensor; each step adds :func:`~hypercl.regularizers.hnet_output_regularizer`
    of the weights generated now for all old tasks, again in ONE batched generator call. Old task embeddings are
    frozen by the learner; the new task's embedding only sees the task loss.

    The penalty is evaluated on the generator's raw outputs (:meth:`~hypercl.HyperNetwork.to_raw_space`: targets
    mapped back through the fixed init-scale map, weight ``gain²``), which is the same value without the map's and
    the chunk padding's forward and backward passes over ``(T−1) × N`` values every step.

    Args:
        beta: ``β`` of eq. 2.
        lookahead: evaluate the old tasks' weights at ``Θ_h + ΔΘ_h``, ``ΔΘ_h`` the optimizer's candidate step on the
            task loss (:func:`candidate_step`), treated as a constant (as in the reference implementation).
        reg_tasks_per_step: ``K``: each step regularises ``K`` old tasks drawn without replacement from the learner's
            own seeded generator (:func:`draw_old_tasks`; the draw is part of the checkpoint's RNG state), averaged
            over the ``K`` drawn, an unbiased estimate of eq. 2 whose step cost does not grow with ``T``; only the
            drawn tasks' weights are generated (one batched call). ``None`` (default): all old tasks, as the paper.
        targets: ``"stored"`` (default): the old tasks' targets are generated once per task and kept, ``(T−1) × N``
            floats; ``"online"``: a frozen copy of the hypernetwork's parameters ``Θ*_h`` is taken before the task
            and the targets of the drawn tasks are generated from it every step (memory ``|Θ_h|`` instead of
            ``(T−1) × N``, one more generator pass for the drawn tasks, without gradient).
    """

    name = "hnet"
    needs_hypernetwork = True

    def __init__(
        self,
        beta: float = 0.01,
        lookahead: bool = False,
        reg_tasks_per_step: Optional[int] = None,
        targets: str = "stored",
    ) -> None:
        if not (isinstance(beta, (int, float)) and math.isfinite(beta) and 0 <= beta <= BETA_MAX):
            raise ValueError(f"beta must be a finite number in [0, {BETA_MAX:g}], got {beta!r}")
        if targets not in TARGET_MODES:
            raise ValueError(f"targets must be one of {list(TARGET_MODES)}, got {targets!r}")
        self.beta = float(beta)
        self.lookahead = bool(lookahead)
        self.uses_lookahead = self.lookahead
        self.reg_tasks_per_step = check_reg_tasks_per_step(reg_tasks_per_step)
        self.target_mode = targets
        self.old_ids: list[int] = []
        self.targets: Optional[torch.Tensor] = None  # (T-1, N), targets="stored"
        self.snapshot: Optional[dict[str, torch.Tensor]] = None  # Θ*_h by parameter name, targets="online"
        self._raw: Optional[tuple[torch.Tensor, torch.Tensor]] = None  # (raw targets, raw weight), padded

    def config(self) -> dict:
        cfg: dict[str, Any] = {"beta": self.beta, "lookahead": self.lookahead}
        # the new options only when set, so that the configs (and checkpoints) of existing runs stay as they were
        if self.reg_tasks_per_step is not None:
            cfg["reg_tasks_per_step"] = self.reg_tasks_per_step
        if self.target_mode != "stored":
            cfg["targets"] = self.target_mode
        return cfg

    @torch.no_grad()
    def before_task(self, learner: Learner, task_id: int) -> None:
        self.old_ids = [t for t in learner.learned_tasks if t != task_id]
        self.targets, self.snapshot = None, None
        if self.old_ids and self.target_mode == "stored":
            self.targets = learner.hnet.generate_flat(self.old_ids).detach().clone()
        elif self.old_ids:
            self.snapshot = {n: p.detach().clone() for n, p in learner.hnet.named_parameters()}
        self._raw = None

    def importance(self) -> Optional[torch.Tensor]:
        """Per-weight importance of the old tasks' weights, ``(T−1, N)``; ``None`` = uniform (eq. 2)."""
        return None

    def raw_space(self, learner: Learner) -> tuple[torch.Tensor, torch.Tensor]:
        if self._raw is None:
            self._raw = learner.hnet.to_raw_space(self.targets, self.importance())
        return self._raw

    def draw(self, learner: Learner) -> Optional[torch.Tensor]:
        """Positions (into ``old_ids``) of the old tasks regularised this step; ``None`` = all."""
        return draw_old_tasks(len(self.old_ids), self.reg_tasks_per_step, learner.rng)

    def step_targets(self, learner: Learner, pos: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw-space targets ``(K, padded)`` and per-weight weights of the regularised old tasks (rows ``pos``, all
        if None): rows of the stored tensors, or generated now from the frozen copy ``Θ*_h``. The weights are
        ``(K, padded)`` for eq. 3, ``(1, padded)`` (shared, broadcast) for eq. 2."""
        if self.target_mode == "stored":
            raw_targets, weight = self.raw_space(learner)
            if pos is None:
                return raw_targets, weight
            rows = pos.to(raw_targets.device)
            return raw_targets[rows], weight if weight.shape[0] == 1 else weight[rows]  # (1, P): shared by all
        hnet: HyperNetwork = learner.hnet  # attach() checked it is task-conditioned
        if self.snapshot is None:
            raise RuntimeError("targets='online' needs the frozen copy taken by before_task(); call it first")
        ids = self.old_ids if pos is None else [self.old_ids[i] for i in pos.tolist()]
        pad = hnet.plan.padding
        with torch.no_grad():
            raw_targets = functional_call(
                RawGeneration(hnet), {f"hnet.{n}": v for n, v in self.snapshot.items()}, (ids,)
            )
            sq_gain = F.pad(hnet.weight_gain.square(), (0, pad))
            imp = self.importance_of(ids)
            weight = sq_gain.unsqueeze(0) if imp is None else F.pad(imp, (0, pad)) * sq_gain
        return raw_targets, weight

    def importance_of(self, ids: list[int]) -> Optional[torch.Tensor]:
        """Per-weight importance of the given old tasks, ``(len(ids), N)``; ``None`` = uniform (eq. 2)."""
        return None

    def current_old_raw(self, learner: Learner, ids: Optional[list[int]] = None) -> torch.Tensor:
        """Raw generator outputs for the old tasks ``ids`` (default: all) now, ``(len(ids), padded)``, one generator
        call (lookahead applied if on)."""
        hnet = learner.hnet
        ids = self.old_ids if ids is None else ids
        if not self.lookahead:
            return hnet.generate_raw(ids)
        if learner.optimizer is None:
            raise RuntimeError("the lookahead needs the task's optimizer: begin the task first")
        steps = candidate_step(learner.optimizer)
        shifted = {f"hnet.{n}": p + steps[p] for n, p in hnet.named_parameters() if p in steps}
        return functional_call(RawGeneration(hnet), shifted, (ids,))

    def _step_terms(self, learner: Learner) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(current, targets, weight) of this step's regularised old tasks in raw space, ``(K, padded)`` each."""
        pos = self.draw(learner)
        ids = self.old_ids if pos is None else [self.old_ids[i] for i in pos.tolist()]
        raw_targets, weight = self.step_targets(learner, pos)
        return self.current_old_raw(learner, ids), raw_targets, weight

    def penalty(self, learner: Learner, task_id: int) -> Optional[torch.Tensor]:
        if not self.old_ids or self.beta == 0:
            return None
        current, raw_targets, scale_sq = self._step_terms(learner)
        return hnet_output_regularizer(current, raw_targets, self.beta, scale_sq)

    def held_tensors(self) -> list[torch.Tensor]:
        """The tensors this regulariser keeps between steps (targets, their raw-space copies, the frozen copy)."""
        out = [] if self.targets is None else [self.targets]
        out += list(self._raw or ()) + list((self.snapshot or {}).values())
        return out

    def held_bytes(self) -> int:
        """Bytes of :meth:`held_tensors` (distinct storages counted once): the memory the regulariser adds."""
        seen: dict[int, int] = {}
        for t in self.held_tensors():
            st = t.untyped_storage()
            seen[st.data_ptr()] = st.nbytes()
        return sum(seen.values())

    def state_dict(self) -> dict:
        state: dict[str, Any] = {"old_ids": list(self.old_ids), "targets": self.targets}
        if self.snapshot is not None:
            state["snapshot"] = self.snapshot
        return state

    def load_state_dict(self, state: dict) -> None:
        self.old_ids = list(state.get("old_ids", []))
        self.targets = state.get("targets")
        self.snapshot = state.get("snapshot")
        self._raw = None


class IWRegularizer(HNETRegularizer):
    """Eq. 3 (IWR): eq. 2 weighted per target weight by the diagonal Fisher information of eq. 4.

    After each task the empirical Fisher of the weights GENERATED for it is computed
    (:func:`~hypercl.fisher.diagonal_empirical_fisher`, per-sample gradients by ``vmap(grad)``, target in eval
    mode) and normalised to mean 1 (:func:`~hypercl.fisher.normalize_fisher`), so that ``β`` means the same
    as in eq. 2: a uniform Fisher gives exactly eq. 2.

    The Fisher vectors are kept per task under either ``targets`` mode (eq. 4 needs the task's data, which is gone
    later): IWR's memory keeps a ``T × N`` term that online targets do not remove.

    Args:
        beta, lookahead, reg_tasks_per_step, targets: as :class:`HNETRegularizer`.
        fisher_samples: at most this many training samples of the task enter eq. 4 (``None``: all of them).
        fisher_batch_size: samples per ``vmap`` batch (memory: this many copies of the target's gradient).
    """

    name = "iwr"

    def __init__(
        self,
        beta: float = 0.01,
        lookahead: bool = False,
        fisher_samples: Optional[int] = None,
        fisher_batch_size: int = 64,
        reg_tasks_per_step: Optional[int] = None,
        targets: str = "stored",
    ) -> None:
        super().__init__(beta, lookahead, reg_tasks_per_step, targets)
        if fisher_samples is not None and int(fisher_samples) <= 0:
            raise ValueError(f"fisher_samples must be positive or None, got {fisher_samples}")
        self.fisher_samples = None if fisher_samples is None else int(fisher_samples)
        self.fisher_batch_size = int(fisher_batch_size)
        self.fisher: dict[int, torch.Tensor] = {}  # task id -> (N,) normalised
        self.old_fisher: Optional[torch.Tensor] = None

    def config(self) -> dict:
        return {**super().config(), "fisher_samples": self.fisher_samples, "fisher_batch_size": self.fisher_batch_size}

    def before_task(self, learner: Learner, task_id: int) -> None:
        super().before_task(learner, task_id)
        self.old_fisher = self._stack_old_fisher()

    def _stack_old_fisher(self) -> Optional[torch.Tensor]:
        # online targets read each drawn task's Fisher vector when needed: no second (T−1, N) copy
        if not self.old_ids or self.target_mode == "online":
            return None
        return torch.stack([self.fisher[t] for t in self.old_ids])

    def importance(self) -> Optional[torch.Tensor]:
        return self.old_fisher

    def importance_of(self, ids: list[int]) -> Optional[torch.Tensor]:
        return torch.stack([self.fisher[t] for t in ids])

    def held_tensors(self) -> list[torch.Tensor]:
        extra = [] if self.old_fisher is None else [self.old_fisher]
        return super().held_tensors() + extra + list(self.fisher.values())

    def penalty(self, learner: Learner, task_id: int) -> Optional[torch.Tensor]:
        if not self.old_ids or self.beta == 0:
            return None
        current, raw_targets, raw_fisher = self._step_terms(learner)  # FI ⊙ gain² on the raw outputs: eq. 3
        return importance_weighted_regularizer(current, raw_targets, raw_fisher, self.beta)

    def after_task(self, learner: Learner, task_id: int, data: Any) -> None:
        self.fisher[task_id] = learner.task_fisher(task_id, data, self.fisher_samples, self.fisher_batch_size)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "fisher": dict(self.fisher)}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.fisher = {int(k): v for k, v in state.get("fisher", {}).items()}
        self.old_fisher = self._stack_old_fisher()
        self._raw = None
