"""The continual learner: trains a hypernetwork (or a plain target) on a sequence of tasks with a strategy.

Evaluation (the CL1/CL2/CL3 scenarios and the accuracy matrix) lives in :mod:`hypercl.evaluation`, checkpoints in
:mod:`hypercl.learner_checkpoint`, optimizers in :mod:`hypercl.optim`; :class:`ContinualLearner` joins them.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any, Callable, Iterator, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

from .batches import DataError, TaskSource, task_source
from .config import LR_MAX
from .distributed import DataParallelSteps, DistributedContext, check_batch_size
from .evaluation import Evaluation
from .fisher import task_fisher
from .learner_checkpoint import WEIGHT_SOURCES, Checkpointing, Model, register_weight_source, restore_model_state
from .off_task import OffTask
from .optim import FUSED_OPTIMIZERS, OPTIMIZERS, make_optimizer
from .scenarios import SCENARIOS, HeadLayout, check_scenario
from .strategies import Strategy, get_strategy
from .target import kept_modes
from .target_forward import AUTOCAST_DTYPES, TargetForward

__all__ = [
    "ContinualLearner",
    "NonFiniteLossError",
    "OPTIMIZERS",
    "FUSED_OPTIMIZERS",
    "AUTOCAST_DTYPES",
    "make_optimizer",
    "WEIGHT_SOURCES",
    "register_weight_source",
    "restore_model_state",
]

Data = Any  # (X, Y) in memory, an object with x_train/y_train, or an iterable of (x, y) batches: hypercl.batches


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the message names the task and the iteration."""


class ContinualLearner(TargetForward, DataParallelSteps, Evaluation, Checkpointing):
    """Learn tasks one after another with a hypernetwork (or a plain network) and a continual-learning strategy.

    Args:
        hnet: a :class:`~hypercl.HyperNetwork` (weights generated per task) or a :class:`~hypercl.DirectWeights`
            (one weight set for all tasks: the baselines).
        strategy: ``"none"``, ``"hnet"``, ``"iwr"``, ``"grow"`` (or a baseline name) or a Strategy instance;
            ``strategy_kwargs`` go to its constructor when given by name.
        scenario: ``"cl1"``, ``"cl2"`` or ``"cl3"``: the default evaluation scenario. For a hypernetwork training does
            not depend on it (weights are per task); for a plain network it picks the heads (CL1 per-task heads,
            CL2 one shared head, CL3 one expanding head over all classes seen so far).
        optimizer, lr, optimizer_kwargs: a fresh optimizer of this kind is built for every task over the parameters
            that are trainable then (frozen ones — old task embeddings, GROW's shared weights — are left out).
        output_layout: for a hypernetwork, ``"shared"`` (task ``t`` uses output units ``0..k_t-1``) or ``"per_task"``
            (multi-head: units ``offset_t..offset_t+k_t-1``).
        batch_size, eval_batch_size: training / evaluation batch sizes for ``(X, Y)`` data.
        device: where the model and batches live (default: the model's device).
        seed: seeds the learner's own generator (batch shuffling, Fisher subsets).
        progress: show a tqdm progress bar per task.
        check_every: NaN/inf check interval in iterations (one host sync per interval, none per step).
        off_task: an :class:`~hypercl.off_task.OffTask`: each training step also pushes the task's network towards
            the uniform distribution on synthetic off-task inputs made from the batch (for entropy task inference;
            not with BatchNorm targets or ``distributed``).
        train_transform: applied to every training batch ``x`` on the device (e.g. random crop + flip); not to the
            Fisher or evaluation batches.
        distributed: a :class:`~hypercl.distributed.DistributedContext` (from
            :func:`~hypercl.distributed.init_distributed`) to train data-parallel under ``torchrun``: every rank draws
            the same global batch (same ``seed``) and trains on its contiguous shard, gradients are averaged by
            ``DistributedDataParallel`` (with the lookahead, the task-loss gradients of the candidate step are
            all-reduced first). ``batch_size`` must be a multiple of the world size. Everything else (evaluation,
            Fisher, checkpoints) runs identically on every rank; only rank 0 should write files.
        compile: run the target network's forward (the functional call on the generated weights) through
            ``torch.compile`` with ``compile_options`` (e.g. ``{"backend": "aot_eager"}``, ``{"mode":
            "max-autotune"}``); if compilation fails the learner warns once and runs it eagerly
            (``compile_error`` holds the reason).
        autocast_dtype: ``torch.bfloat16`` (or ``"bf16"``) runs the target's training forward under
            ``torch.autocast``; the generator, the loss and the regulariser stay in float32. Evaluation and the Fisher
            are not affected. Meant for CUDA; on CPU it trains but is rarely faster.
    """

    def __init__(
        self,
        hnet: Model,
        strategy: Union[str, Strategy] = "none",
        scenario: str = "cl1",
        optimizer: str = "adam",
        lr: float = 1e-3,
        optimizer_kwargs: Optional[dict] = None,
        output_layout: str = "shared",
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        device: Union[str, torch.device, None] = None,
        seed: int = 0,
        progress: bool = False,
        check_every: int = 50,
        strategy_kwargs: Optional[dict] = None,
        train_transform: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        off_task: Optional[OffTask] = None,
        distributed: Optional[DistributedContext] = None,
        compile: bool = False,
        compile_options: Optional[dict] = None,
        autocast_dtype: Union[str, torch.dtype, None] = None,
    ) -> None:
        if not getattr(hnet, "is_weight_source", False):
            raise TypeError(
                f"ContinualLearner needs a HyperNetwork or DirectWeights, got {type(hnet).__name__}; "
                "wrap a plain model with hypercl.HyperNetwork(hypercl.wrap(model)) or hypercl.DirectWeights(model)"
            )
        self.scenario = check_scenario(scenario)
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; valid: {sorted(OPTIMIZERS)}")
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and 0 < lr <= LR_MAX):
            raise ValueError(f"lr must be a finite number in (0, {LR_MAX:g}], got {lr!r}")
        if int(batch_size) <= 0 or int(eval_batch_size) <= 0:
            raise ValueError(f"batch sizes must be positive, got {batch_size}, {eval_batch_size}")
        if distributed is not None:
            if device is None:
                device = distributed.device
            elif torch.device(device).type != distributed.device.type:
                raise ValueError(f"device {device} does not match the distributed context's {distributed.device}")
            distributed.check_batch_size(int(batch_size))
        if device is None:
            first = next(iter(list(hnet.parameters()) + list(hnet.buffers())), None)
            device = first.device if first is not None else "cpu"
        self.device = torch.device(device)
        self.hnet = hnet.to(self.device)
        self.task_conditioned = bool(hnet.task_conditioned)
        if not self.task_conditioned:
            output_layout = "shared" if scenario == "cl2" else "per_task"
        self.heads = HeadLayout(output_layout)
        self.optimizer_name = optimizer
        self.lr = float(lr)
        self.optimizer_kwargs = dict(optimizer_kwargs or {})
        self.optimizer: Optional[torch.optim.Optimizer] = None
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size)
        self.seed = int(seed)
        self.rng = torch.Generator().manual_seed(self.seed)
        self._cast_warned: set = set()  # dtype pairs of input data already warned about (cast to the target's)
        self.progress = bool(progress)
        self.check_every = max(1, int(check_every))
        self.train_transform = train_transform
        if off_task is not None:
            if not isinstance(off_task, OffTask):
                raise TypeError(f"off_task must be a hypercl.off_task.OffTask, got {type(off_task).__name__}")
            if distributed is not None:
                raise ValueError("the off-task term runs in one process: drop it or the distributed context")
        self.off_task = off_task
        self.distributed = distributed
        self._ddp: Optional[nn.Module] = None  # DistributedDataParallel over the training objective
        self._ddp_key: Optional[tuple] = None  # (optimizer, task id) it was built for
        self.compile = bool(compile)
        self.compile_options = dict(compile_options or {})
        self.compile_error: Optional[str] = None
        self._compiled: Optional[tuple[str, Callable]] = None
        self.autocast_dtype = autocast_dtype  # validated by the property setter
        self.learned_tasks: list[int] = []
        self.task_buffers: dict[int, OrderedDict[str, torch.Tensor]] = {}
        self.history: dict[str, list[dict]] = {s: [] for s in SCENARIOS}
        self.train_log: dict[int, dict] = {}
        self.strategy = get_strategy(strategy, **(strategy_kwargs or {}))
        self.strategy.attach(self)

    def register_task(self, task_id: int, num_classes: int) -> None:
        """Register a new task (in order) with ``num_classes`` classes: heads, a task embedding, per-task buffers."""
        if task_id in self.learned_tasks:
            raise ValueError(f"task {task_id} was already learned; tasks are learned once, in order")
        missing = [t for t in range(task_id) if t not in self.heads.num_classes]
        if task_id not in self.heads.num_classes and missing:
            raise ValueError(f"tasks are registered in order: learn task(s) {missing} before task {task_id}")
        self.heads.register(task_id, num_classes)
        while self.hnet.num_tasks <= task_id:
            self.hnet.add_task()
        if self.target.buffer_names and task_id not in self.task_buffers:
            self.task_buffers[task_id] = OrderedDict(
                (n, b.to(self.device)) for n, b in self.target.init_buffers().items()
            )

    #: whether the ``y`` of the data are class indices (checked); a VAE's targets are its inputs
    class_labels = True

    def data_source(self, data: Any, task_id: Any = "?", split: str = "train") -> TaskSource:
        """A task's data as this learner reads it (labels checked, float inputs cast to the target's dtype)."""
        src = task_source(data, task_id, split)
        src.labels = self.class_labels
        src.float_dtype = self.target.dtype
        src.cast_warned = self._cast_warned
        return src

    def infer_num_classes(self, data: Any, num_classes: Optional[int], task_id: Any = "?") -> int:
        """``num_classes`` if given, else the data's own count (a benchmark task's), else inferred (logged once)."""
        if num_classes is not None:
            return int(num_classes)
        return self.data_source(data, task_id).infer_num_classes()

    # ------------------------------------------------------------------ batches
    def task_batches(
        self, data: Any, batch_size: int, shuffle: bool = True, task_id: Any = "?"
    ) -> Iterator[tuple[Any, torch.Tensor]]:
        """Endless device batches (:meth:`hypercl.batches.TaskSource.endless`): shuffled passes over ``(X, Y)`` by
        index, or passes over an iterable of batches, labels checked against the task's registered classes."""
        return self.data_source(data, task_id).endless(
            batch_size, self.rng, self.device, shuffle, self.heads.num_classes.get(task_id)
        )

    def steps_per_epoch(self, data: Any, batch_size: int) -> int:
        """Optimisation steps of one pass over ``data`` in batches of ``batch_size``."""
        return self.data_source(data).steps_per_epoch(batch_size)

    # ------------------------------------------------------------------ training
    def task_loss(self, task_id: int, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the task's local labels over the task's output units (see :class:`HeadLayout`)."""
        start, stop = self.train_units(task_id)
        if logits.dim() != 2 or stop > logits.shape[-1]:
            self._bad_logits(task_id, logits, start, stop)
        shift = self.heads.offset(task_id) - start if self.uses_global_labels() else 0
        return F.cross_entropy(logits[..., start:stop], y + shift)

    def _bad_logits(self, task_id: int, logits: Any, start: int, stop: int) -> None:
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise DataError(
                f"task {task_id}: the target's logits have shape {shape}, expected (batch, outputs): "
                "pick per-sample class scores with wrap(model, output=...), e.g. "
                "output=lambda out: out.logits[:, -1]"
            )
        layout = (
            "one head over all classes (CL3)"
            if self.uses_global_labels()
            else f"output_layout={self.heads.output_layout!r}"
        )
        shared_hint = self.heads.output_layout == "shared" or not self.task_conditioned
        raise DataError(
            f"task {task_id} needs output units [{start}, {stop}) ({self.heads.num_classes[task_id]} "
            f"classes, {layout}), but the target has {logits.shape[-1]} outputs: give the model at "
            f"least {stop} outputs" + ("" if shared_hint else ", or use output_layout='shared'")
        )

    def uses_global_labels(self) -> bool:
        """Whether labels are global class ids (a plain network in CL3: one head over every class seen so far)."""
        return not self.task_conditioned and self.scenario == "cl3"

    def train_units(self, task_id: int) -> tuple[int, int]:
        """The output units ``[start, stop)`` the task loss of ``task_id`` is computed over."""
        if self.uses_global_labels():  # CL3 baseline: one head expanding over every class seen so far
            return 0, self.heads.offset(task_id) + self.heads.num_classes[task_id]
        return self.heads.units(task_id)

    def task_logits(self, task_id: int, x: Any) -> torch.Tensor:
        """The target's output on ``x`` under task ``task_id``'s weights and BatchNorm statistics (the training
        forward: with gradients, in the target's current train/eval mode)."""
        params = self.hnet(task_id)
        return self._target_forward(params, x, self.task_buffers.get(task_id))

    def train_step(self, task_id: int, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One optimizer step on a batch: task loss (+ the strategy's penalty), backward, step.

        Returns the total loss as a detached device tensor (no host synchronisation). With a lookahead strategy the
        task loss is backpropagated first, so the penalty can use the candidate step ``ΔΘ_h`` of eq. 2/3.

        Distributed (``distributed=``): ``x, y`` is the GLOBAL batch, the same on every rank; each rank trains on its
        shard and the returned loss is the global one (averaged over the ranks).
        """
        if self.distributed is not None:
            return self._distributed_step(task_id, x, y)
        if self.train_transform is not None:
            x = self.train_transform(x)
        optimizer = self.task_optimizer()
        optimizer.zero_grad(set_to_none=True)
        if self.off_task is not None:
            loss = self._loss_with_off_task(task_id, x, y)
        else:
            loss = self.task_loss(task_id, self.task_logits(task_id, x), y)
        if self.strategy.uses_lookahead:
            loss.backward()
            reg = self.strategy.penalty(self, task_id)
            if reg is not None:
                reg.backward()
            total = loss.detach() + (reg.detach() if reg is not None else 0.0)
        else:
            reg = self.strategy.penalty(self, task_id)
            total = loss + reg if reg is not None else loss
            total.backward()
            total = total.detach()
        optimizer.step()
        self.strategy.after_step(self, task_id)
        return total

    def _loss_with_off_task(self, task_id: int, x: Any, y: torch.Tensor) -> torch.Tensor:
        """Task loss plus the off-task term (:mod:`hypercl.off_task`): the batch and its off-task copy in ONE target
        forward under the task's generated weights; the term covers the task's training units."""
        assert self.off_task is not None
        if not isinstance(x, torch.Tensor):
            raise DataError(
                f"task {task_id}: the off-task term makes its inputs from a tensor batch, got a {type(x).__name__}"
            )
        if self.target.buffer_names:
            raise DataError(
                f"task {task_id}: the off-task term shares the training forward, which would put its inputs into "
                "the target's BatchNorm statistics; use it with a target without BatchNorm"
            )
        n = x.shape[0]
        logits = self.task_logits(task_id, torch.cat([x, self.off_task.make(x, self.rng)]))
        start, stop = self.train_units(task_id)
        return self.task_loss(task_id, logits[:n], y) + self.off_task.loss(logits[n:, start:stop])

    def make_task_optimizer(self) -> torch.optim.Optimizer:
        """A fresh optimizer over the parameters trainable now (built at the start of every task)."""
        params = [p for p in self.hnet.parameters() if p.requires_grad]
        if not params:
            raise RuntimeError("no trainable parameters left in the model")
        return make_optimizer(self.optimizer_name, params, self.lr, self.optimizer_kwargs)

    def fit_task(
        self,
        task_id: int,
        data: Data,
        iterations: Optional[int] = None,
        epochs: Optional[int] = None,
        num_classes: Optional[int] = None,
        batch_size: Optional[int] = None,
        callback: Optional[Callable[[int, torch.Tensor], None]] = None,
    ) -> dict:
        """Learn one task. ``data``: ``(X, Y)`` in memory (batched and shuffled here by index; ``X`` a tensor, a
        tuple or a dict of tensors), an object with ``x_train`` / ``y_train`` (a benchmark task), or an iterable of
        ``(x, y)`` batches (a DataLoader; see :mod:`hypercl.batches`). Give exactly one of
        ``iterations`` (optimizer steps) or ``epochs`` (passes over the data). A new ``task_id`` registers the task.
        Returns the task's training log (mean loss of the last check window, steps, penalty used).
        """
        if (iterations is None) == (epochs is None):
            raise ValueError("give exactly one of iterations= or epochs=")
        bs = int(batch_size or self.batch_size)
        if self.distributed is not None:
            check_batch_size(bs, self.distributed.world_size)
        source = self.data_source(data, task_id)
        steps = int(iterations) if iterations is not None else int(epochs or 0) * source.steps_per_epoch(bs)
        if steps <= 0:
            raise ValueError(f"the number of steps must be positive, got {steps}")
        if not isinstance(task_id, int) or task_id < 0:
            raise ValueError(f"task_id must be an int >= 0, got {task_id!r}")
        k = self.infer_num_classes(source, num_classes)
        source.check(k)
        with kept_modes(self.hnet, self.target):  # the user's modes, every submodule's, restored when learned
            self.begin_task(task_id, k)
            return self._fit_steps(task_id, data, source, steps, bs, k, callback)

    def _fit_steps(
        self,
        task_id: int,
        data: Data,
        source: TaskSource,
        steps: int,
        bs: int,
        k: int,
        callback: Optional[Callable[[int, torch.Tensor], None]],
    ) -> dict:
        self.hnet.train()
        self.target.train()
        losses = torch.zeros(self.check_every, device=self.device)
        batches = source.endless(bs, self.rng, self.device, True, k)
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=steps, desc=f"task {task_id}", leave=False)
        window_mean = float("nan")
        for it in range(steps):
            x, y = next(batches)
            total = self.train_step(task_id, x, y)
            losses[it % self.check_every] = total
            if callback is not None:
                callback(it, total)
            if (it + 1) % self.check_every == 0 or it + 1 == steps:
                window = losses[: (it % self.check_every) + 1]
                finite = torch.isfinite(window)
                if not bool(finite.all()):  # one host sync per window, none per step
                    first = int((~finite).nonzero()[0]) + it - (it % self.check_every)
                    raise NonFiniteLossError(
                        f"non-finite loss ({float(window[~finite][0])}) at task {task_id}, iteration {first}: "
                        "either the learning rate or beta is too high (lower them) or the input data holds NaN/inf "
                        "(check it); this in-memory learner is now unusable: reload it from the last checkpoint "
                        "(ContinualLearner.load), which is unchanged"
                    )
                window_mean = float(window.mean())
                if bar is not None:
                    bar.update(len(window))
                    bar.set_postfix(loss=f"{window_mean:.4f}")
        if bar is not None:
            bar.close()
        if self.distributed is not None:
            self._release_distributed()  # the next task wraps its own trainable parameters
            self._sync_task_buffers(task_id)
        self.end_task(task_id, data)
        log = {"task": task_id, "steps": steps, "final_loss": window_mean}
        self.train_log[task_id] = log
        return log

    def begin_task(self, task_id: int, num_classes: int) -> torch.optim.Optimizer:
        """What :meth:`fit_task` does before its first step, for a training loop run elsewhere (e.g.
        :class:`hypercl.avalanche.HyperCLStrategy`): register the task (its output units, a new task embedding,
        fresh per-task buffers), run the strategy's ``before_task`` and build the task's optimizer (returned)."""
        self.register_task(task_id, int(num_classes))
        self.strategy.before_task(self, task_id)
        self.optimizer = self.make_task_optimizer()
        return self.optimizer

    def end_task(self, task_id: int, data: Data) -> None:
        """What :meth:`fit_task` does after its last step: freeze the task's embedding, run the strategy's
        ``after_task`` with the task's training data (IWR's Fisher reads it) and mark the task learned."""
        if self.task_conditioned:
            self.hnet.task_embeddings[task_id].requires_grad_(False)  # old embeddings stay fixed
        self.strategy.after_task(self, task_id, data)
        self.learned_tasks.append(task_id)

    # ------------------------------------------------------------------ Fisher (eq. 4) for IWR
    def task_fisher(
        self,
        task_id: int,
        data: Data,
        num_samples: Optional[int] = None,
        batch_size: int = 64,
        normalize: bool = True,
    ) -> torch.Tensor:
        """Diagonal empirical Fisher (eq. 4) of the weights used for ``task_id`` (generated, or the plain weights of
        a :class:`DirectWeights`), flat ``(N,)``; scaled to mean 1 when ``normalize`` (IWR), raw otherwise (EWC).

        Uses a random subset of ``num_samples`` training samples (all when ``None``), target in eval mode.
        """
        batches = self.data_source(data, task_id).subset(num_samples, self.rng, int(batch_size), self.device)
        with torch.no_grad():
            params = self.hnet(task_id)
        return task_fisher(
            self.target,
            params,
            batches,
            lambda out, yy: self.task_loss(task_id, out, yy),
            buffers=self.task_buffers.get(task_id),
            normalize=normalize,
        )
