"""Data-parallel training of ONE continual-learning run across processes (``torchrun`` + DistributedDataParallel).

Every process (rank) holds the whole model, draws the SAME global batch from the learner's seeded generator and
trains on its own contiguous shard of it; the gradients are averaged by
:class:`torch.nn.parallel.DistributedDataParallel`. So the ranks stay identical, and a run on ``W`` processes with
global batch ``b`` follows the run on one process with batch ``b`` (up to floating-point summation order). See
``docs/distributed.md``.

Use::

    ctx = init_distributed()          # None unless launched by torchrun with WORLD_SIZE > 1
    learner = ContinualLearner(hnet, ..., device=ctx.device if ctx else device, distributed=ctx)
    ...                               # train / evaluate on every rank; write files only where is_main_process()
    shutdown()
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

import torch
import torch.distributed as dist
from torch import nn

from .batches import slice_inputs
from .learner_fields import LearnerFields

__all__ = [
    "DistributedContext",
    "init_distributed",
    "is_main_process",
    "shutdown",
    "shard_bounds",
    "check_batch_size",
    "all_reduce_mean_",
    "check_same_on_all_ranks",
    "DataParallelSteps",
]

#: environment variables torchrun sets for every worker
TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in a data-parallel run.

    Attributes:
        rank: this process's index ``0..world_size-1`` (rank 0 is the one that writes files).
        world_size: the number of processes ``W``.
        device: this process's device (``cuda:LOCAL_RANK`` with NCCL, ``cpu`` with gloo).
        backend: ``"gloo"`` or ``"nccl"``.
        local_rank: the index of the process on its machine.
    """

    rank: int
    world_size: int
    device: torch.device
    backend: str
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """True on rank 0."""
        return self.rank == 0

    def shard(self, n: int) -> tuple[int, int]:
        """This rank's contiguous slice ``[lo, hi)`` of a global batch of ``n`` samples (:func:`shard_bounds`)."""
        return shard_bounds(n, self.rank, self.world_size)

    def check_batch_size(self, batch_size: int) -> None:
        """Raise a clear ValueError unless ``batch_size`` is a multiple of the world size."""
        check_batch_size(batch_size, self.world_size)


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """The contiguous slice ``[lo, hi)`` of a global batch of ``n`` samples that ``rank`` trains on.

    When ``world_size`` divides ``n`` this is ``[rank·n/W, (rank+1)·n/W)``; otherwise (the last, smaller batch of an
    epoch) the first ``n mod W`` ranks get one sample more (as :func:`torch.tensor_split`), and the learner weights
    each rank's mean loss by its share so the average over ranks is still the global mean.
    """
    n, rank, world_size = int(n), int(rank), int(world_size)
    if world_size <= 0 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
    if n < 0:
        raise ValueError(f"a batch cannot have {n} samples")
    base, extra = divmod(n, world_size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def check_batch_size(batch_size: int, world_size: int) -> None:
    """The global batch is split evenly over the processes: ``batch_size`` must be a multiple of ``world_size``."""
    if int(batch_size) % int(world_size) != 0:
        lower = (int(batch_size) // int(world_size)) * int(world_size)
        upper = lower + int(world_size)
        hint = f"{lower} or {upper}" if lower > 0 else f"{upper}"
        raise ValueError(
            f"batch size {batch_size} is not divisible by the world size {world_size}: every process trains on "
            f"batch_size / world_size samples of the same global batch; use a multiple of {world_size} (e.g. {hint})"
        )


def _env_int(name: str) -> int:
    value = os.environ.get(name)
    try:
        return int(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise RuntimeError(f"environment variable {name}={value!r} is not an integer (set by torchrun)") from None


def init_distributed(
    backend: Optional[str] = None,
    device: Union[str, torch.device, None] = None,
    timeout_s: Optional[float] = None,
) -> Optional[DistributedContext]:
    """Join the process group torchrun set up; ``None`` when not launched by torchrun (``WORLD_SIZE`` unset or 1).

    Reads ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` and calls
    :func:`torch.distributed.init_process_group`. ``device``: ``None`` picks ``cuda:LOCAL_RANK`` when CUDA is
    available, else the CPU; ``"cuda"`` without an index means ``cuda:LOCAL_RANK``. ``backend``: ``None`` picks
    ``"nccl"`` for a CUDA device and ``"gloo"`` for the CPU. If the default process group already exists it is
    reused (and not re-initialised).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1") or "1")
    if world_size <= 1:
        return None
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1, but this torch build has no torch.distributed support")
    missing = [k for k in TORCHRUN_ENV if k not in os.environ]
    if missing:
        raise RuntimeError(
            f"WORLD_SIZE={world_size} but {missing} are not set: launch with "
            "`torchrun --nproc_per_node=N -m hypercl ...` (or set all of " + ", ".join(TORCHRUN_ENV) + ")"
        )
    rank, local_rank = _env_int("RANK"), _env_int("LOCAL_RANK")
    if not 0 <= rank < world_size:
        raise RuntimeError(f"RANK={rank} is not in 0..{world_size - 1}")
    if device is None:
        device = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("a CUDA device was asked for, but torch sees no CUDA device here")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        if device.index >= torch.cuda.device_count():
            raise RuntimeError(
                f"LOCAL_RANK={local_rank} needs device {device}, but only {torch.cuda.device_count()} CUDA device(s) "
                "are visible: start at most that many processes per node (--nproc_per_node)"
            )
        torch.cuda.set_device(device)
    if backend is None:
        backend = "nccl" if device.type == "cuda" else "gloo"
    backend = str(backend).lower()
    if backend == "nccl" and device.type != "cuda":
        raise ValueError(f"the nccl backend needs CUDA devices, the device is {device}; use backend='gloo' on CPU")
    if backend == "nccl" and not dist.is_nccl_available():
        raise RuntimeError("backend 'nccl' asked for, but this torch build has no NCCL; use backend='gloo'")
    if backend == "gloo" and not dist.is_gloo_available():
        raise RuntimeError("backend 'gloo' asked for, but this torch build has no gloo")
    if dist.is_initialized():
        if dist.get_world_size() != world_size or dist.get_rank() != rank:
            raise RuntimeError(
                f"a process group already exists with rank {dist.get_rank()} of {dist.get_world_size()}, "
                f"but the environment says rank {rank} of {world_size}"
            )
        return DistributedContext(rank, world_size, device, dist.get_backend(), local_rank)
    kwargs: dict = {"backend": backend, "init_method": "env://", "rank": rank, "world_size": world_size}
    if timeout_s is not None:
        kwargs["timeout"] = datetime.timedelta(seconds=float(timeout_s))
    if backend == "nccl":
        kwargs["device_id"] = device  # binds the communicator to this rank's GPU (no guessing, no warning)
    dist.init_process_group(**kwargs)
    return DistributedContext(rank, world_size, device, backend, local_rank)


def is_main_process() -> bool:
    """True in a single-process run and on rank 0 of a distributed one: the process that writes results."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def shutdown() -> None:
    """Leave and destroy the default process group (a no-op when there is none)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@torch.no_grad()
def all_reduce_mean_(tensors: Sequence[torch.Tensor]) -> None:
    """Average the tensors over all ranks, in place, with ONE all-reduce of their concatenation."""
    tensors = list(tensors)
    if not tensors:
        return
    world = dist.get_world_size()
    if len(tensors) == 1:
        dist.all_reduce(tensors[0])
        tensors[0].div_(world)
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat.div_(world)
    for t, piece in zip(tensors, flat.split([t.numel() for t in tensors])):
        t.copy_(piece.view_as(t))


@torch.no_grad()
def check_same_on_all_ranks(values: Sequence[float], names: Sequence[str], device: torch.device) -> None:
    """Raise a clear RuntimeError (on every rank) when any of ``values`` differs between the ranks.

    One all-reduce of ``[v, -v]`` with MAX gives every rank the maximum and the minimum of each value.
    """
    v = torch.tensor([float(x) for x in values], dtype=torch.float64, device=device)
    both = torch.cat([v, -v])
    dist.all_reduce(both, op=dist.ReduceOp.MAX)
    hi, lo = both[: len(v)].tolist(), (-both[len(v) :]).tolist()
    bad = [f"{n} (from {a!r} to {b!r})" for n, a, b in zip(names, lo, hi) if a != b]
    if bad:
        raise RuntimeError(
            "the processes of this distributed run disagree on " + ", ".join(bad) + ": every rank must build the "
            "same model (same seed), the same learner (same seed and batch size) and learn the same task"
        )


# ---------------------------------------------------------------------- the learner's data-parallel step
class _TrainingObjective(nn.Module):
    """One training step's loss as ONE forward (task loss on this rank's shard + the strategy's penalty), so that
    :class:`~torch.nn.parallel.DistributedDataParallel` sees one graph per backward. Its parameters are the weight
    source's; the learner is held without being registered as a submodule."""

    def __init__(self, learner: Any) -> None:
        super().__init__()
        self.model = learner.hnet
        self.__dict__["learner"] = learner

    def forward(self, task_id: int, x: torch.Tensor, y: torch.Tensor, weight: float) -> torch.Tensor:
        return self.__dict__["learner"]._shard_objective(task_id, x, y, weight)


class DataParallelSteps(LearnerFields):
    """Mixin of :class:`~hypercl.ContinualLearner`: its training step when ``distributed`` is set (see the module
    docstring). Needs the learner's ``distributed``, ``optimizer``, ``strategy``, ``hnet``, ``seed``,
    ``batch_size``, ``device``, ``task_buffers``, ``_ddp`` and ``_ddp_key``."""

    def _distributed_step(self, task_id: int, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ctx = self.distributed
        if self.train_transform is not None:  # on the global batch: the same random draws as one process
            x = self.train_transform(x)
        n = len(y)
        lo, hi = ctx.shard(n)
        # each rank's mean loss weighted by its share, so the average over the ranks is the global mean
        weight = 1.0 if (hi - lo) * ctx.world_size == n else (hi - lo) * ctx.world_size / n
        objective = self._distributed_objective(task_id)
        optimizer = self.task_optimizer()
        optimizer.zero_grad(set_to_none=True)
        with self._compile_config():
            total = objective(task_id, slice_inputs(x, lo, hi), y[lo:hi], weight)
            total.backward()  # DistributedDataParallel averages the gradients over the ranks
        optimizer.step()
        self.strategy.after_step(self, task_id)
        total = total.detach().clone()
        torch.distributed.all_reduce(total)
        return total.div_(ctx.world_size)

    def _shard_objective(self, task_id: int, x: torch.Tensor, y: torch.Tensor, weight: float) -> torch.Tensor:
        """This rank's task loss (weighted mean over its shard) + the penalty, as one graph (the DDP forward)."""
        logits = self.task_logits(task_id, x)
        if len(y) == 0:  # a last batch smaller than the world size: nothing here, but the same graph
            loss = logits.sum() * 0.0
        else:
            loss = self.task_loss(task_id, logits, y)
            if weight != 1.0:
                loss = loss * weight
        if self.strategy.uses_lookahead:
            reg = self._lookahead_penalty(task_id, loss)
        else:
            reg = self.strategy.penalty(self, task_id)
        return loss + reg if reg is not None else loss

    def _lookahead_penalty(self, task_id: int, loss: torch.Tensor) -> Optional[torch.Tensor]:
        """The penalty at ``Θ_h + ΔΘ_h`` with the candidate step of the GLOBAL task-loss gradient: this rank's
        gradients (``autograd.grad``, outside DDP's reducer) are all-reduced and put where ``candidate_step`` reads
        them, then removed again so that the DDP backward starts from empty gradients."""
        params = [p for g in self.task_optimizer().param_groups for p in g["params"] if p.requires_grad]
        grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
        used = [(p, g) for p, g in zip(params, grads) if g is not None]
        all_reduce_mean_([g for _, g in used])
        for p, g in used:
            p.grad = g
        try:
            return self.strategy.penalty(self, task_id)
        finally:
            for p, _ in used:
                p.grad = None

    def _distributed_objective(self, task_id: int) -> nn.Module:
        """A DistributedDataParallel wrapper of the training objective, rebuilt for every task (new optimizer): the
        set of trainable parameters changes between tasks (old task embeddings and GROW weights get frozen).

        ``static_graph=True``: within a task every step has the same graph, so DDP finds the trainable parameters
        the step does not use (registered future task embeddings, other tasks' GROW weights) in the first step and
        leaves their gradients ``None`` (Adam skips them, as in one process), without ``find_unused_parameters``'s
        graph traversal every step."""
        if self._ddp is not None and self._ddp_key == (self.optimizer, task_id):
            return self._ddp
        from torch.nn.parallel import DistributedDataParallel

        ctx = self.distributed
        with torch.no_grad():
            params = list(self.hnet.parameters())
            checksum = torch.stack([p.detach().double().sum() for p in params]).sum().item() if params else 0.0
        trainable = sum(p.numel() for p in params if p.requires_grad)
        check_same_on_all_ranks(
            [self.seed, self.batch_size, task_id, trainable, checksum],
            [
                "the learner seed",
                "the batch size",
                "the task id",
                "the number of trainable parameters",
                "the model parameters (checksum)",
            ],
            self.device,
        )
        kwargs: dict = {"static_graph": True}
        if self.device.type == "cuda":
            kwargs["device_ids"] = [self.device.index if self.device.index is not None else ctx.local_rank]
        self._ddp = DistributedDataParallel(_TrainingObjective(self), **kwargs)
        self._ddp_key = (self.optimizer, task_id)
        return self._ddp

    def _release_distributed(self) -> None:
        self._ddp = None
        self._ddp_key = None

    @torch.no_grad()
    def _sync_task_buffers(self, task_id: int) -> None:
        """Average the task's floating-point buffers (BatchNorm running statistics, computed per shard) over the
        ranks, so every rank evaluates and saves the same state."""
        bufs = [b for b in self.task_buffers.get(task_id, {}).values() if b.is_floating_point()]
        if bufs:
            all_reduce_mean_(bufs)
