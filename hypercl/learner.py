"""The continual learner: trains a hypernetwork (or a plain target) on a sequence of tasks with a strategy, evaluates
the CL1/CL2/CL3 scenarios, keeps the accuracy matrix, and saves/loads checkpoints.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from .batches import DataError, TaskSource, task_source
from .checkpoint import FORMAT, VERSION, CheckpointError, atomic_save, load_checkpoint
from .direct import DirectWeights
from .distributed import DataParallelSteps, DistributedContext, check_batch_size
from .hypernetwork import HyperNetwork
from .models.registry import build_model, model_spec
from .fisher import task_fisher
from .scenarios import SCENARIOS, HeadLayout, check_scenario, evaluate_task, row_temperatures
from .task_inference import confusion_matrix, get_criterion, make_candidates
from .strategies import Strategy, get_strategy
from .target_forward import AUTOCAST_DTYPES, TargetForward, _dtype_name, _plain

__all__ = ["ContinualLearner", "NonFiniteLossError", "OPTIMIZERS", "AUTOCAST_DTYPES"]

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "rmsprop": torch.optim.RMSprop,
}

#: optimizers run with their fused single-kernel implementation unless ``optimizer_kwargs`` says otherwise (on CPU
#: fused Adam's step takes 0.6 ms against 1.7 ms for the default loop at the Split MNIST HNET config)
FUSED_OPTIMIZERS = ("adam", "adamw")

Model = Union[HyperNetwork, DirectWeights]
Data = Any  # (X, Y) in memory, an object with x_train/y_train, or an iterable of (x, y) batches: hypercl.batches


#: weight sources other than the HyperNetwork that checkpoints can rebuild: ``kind -> cls(model)``; each has
#: ``kind``, ``state_extra()`` and ``load_state_extra(state)``
WEIGHT_SOURCES: dict[str, Callable[[nn.Module], Any]] = {"direct": DirectWeights}


def register_weight_source(kind: str, cls: Callable[[nn.Module], Any]) -> None:
    """Let :meth:`ContinualLearner.load` rebuild a weight source of this ``kind`` from its target module."""
    WEIGHT_SOURCES[kind] = cls


def make_optimizer(name: str, params: list[torch.Tensor], lr: float, kwargs: Optional[dict] = None
                   ) -> torch.optim.Optimizer:
    """The optimizer ``name`` over ``params``; Adam/AdamW run fused (one kernel) unless ``kwargs`` choose
    ``fused`` or ``foreach`` themselves, wherever every parameter is a float tensor on the CPU or CUDA."""
    kw = dict(kwargs or {})
    if name in FUSED_OPTIMIZERS and not {"fused", "foreach"} & set(kw):
        kw["fused"] = all(p.dtype.is_floating_point and p.device.type in ("cpu", "cuda") for p in params)
    return OPTIMIZERS[name](params, lr=lr, **kw)


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite; the message names the task and the iteration."""


class ContinualLearner(TargetForward, DataParallelSteps):
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
        distributed: Optional[DistributedContext] = None,
        compile: bool = False,
        compile_options: Optional[dict] = None,
        autocast_dtype: Union[None, str, torch.dtype] = None,
    ) -> None:
        if not getattr(hnet, "is_weight_source", False):
            raise TypeError(
                f"ContinualLearner needs a HyperNetwork or DirectWeights, got {type(hnet).__name__}; "
                "wrap a plain model with hypercl.HyperNetwork(hypercl.wrap(model)) or hypercl.DirectWeights(model)"
            )
        self.scenario = check_scenario(scenario)
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}; valid: {sorted(OPTIMIZERS)}")
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
        self.progress = bool(progress)
        self.check_every = max(1, int(check_every))
        self.train_transform = train_transform
        self.distributed = distributed
        self._ddp: Optional[nn.Module] = None  # DistributedDataParallel over the training objective
        self._ddp_key: Optional[tuple] = None  # (optimizer, task id) it was built for
        self.compile = bool(compile)
        self.compile_options = dict(compile_options or {})
        self.compile_error: Optional[str] = None
        self._compiled: Optional[tuple[str, Callable]] = None
        self.autocast_dtype = autocast_dtype  # validated by the property setter
        self.learned_tasks: list[int] = []
        self.task_buffers: dict[int, "OrderedDict[str, torch.Tensor]"] = {}
        self.history: dict[str, list[dict]] = {s: [] for s in SCENARIOS}
        self.train_log: dict[int, dict] = {}
        self.strategy = get_strategy(strategy, **(strategy_kwargs or {}))
        self.strategy.attach(self)

    # ------------------------------------------------------------------ properties
    @property
    def target(self):  # noqa: ANN201 - FunctionalTarget
        return self.hnet.target

    def _register_task(self, task_id: int, num_classes: int) -> None:
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

    def _source(self, data: Any, task_id: Any = "?", split: str = "train") -> TaskSource:
        src = task_source(data, task_id, split)
        src.labels = self.class_labels
        return src

    def _infer_num_classes(self, data: Any, num_classes: Optional[int], task_id: Any = "?") -> int:
        """``num_classes`` if given, else the data's own count (a benchmark task's), else inferred (logged once)."""
        if num_classes is not None:
            return int(num_classes)
        return self._source(data, task_id).infer_num_classes()

    # ------------------------------------------------------------------ batches
    def _batches(self, data: Any, batch_size: int, shuffle: bool = True, task_id: Any = "?"
                 ) -> Iterator[tuple[Any, torch.Tensor]]:
        """Endless device batches (:meth:`hypercl.batches.TaskSource.endless`): shuffled passes over ``(X, Y)`` by
        index, or passes over an iterable of batches, labels checked against the task's registered classes."""
        return self._source(data, task_id).endless(batch_size, self.rng, self.device, shuffle,
                                                   self.heads.num_classes.get(task_id))

    def _steps_per_epoch(self, data: Any, batch_size: int) -> int:
        return self._source(data).steps_per_epoch(batch_size)

    # ------------------------------------------------------------------ training
    def task_loss(self, task_id: int, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the task's local labels over the task's output units (see :class:`HeadLayout`)."""
        start, stop = self._train_units(task_id)
        if logits.dim() != 2 or stop > logits.shape[-1]:
            self._bad_logits(task_id, logits, start, stop)
        shift = self.heads.offset(task_id) - start if self._uses_global_labels() else 0
        return F.cross_entropy(logits[..., start:stop], y + shift)

    def _bad_logits(self, task_id: int, logits: Any, start: int, stop: int) -> None:
        if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
            raise DataError(f"task {task_id}: the target's logits have shape {shape}, expected (batch, outputs): "
                            "pick per-sample class scores with wrap(model, output=...), e.g. "
                            "output=lambda out: out.logits[:, -1]")
        layout = "one head over all classes (CL3)" if self._uses_global_labels() else \
            f"output_layout={self.heads.output_layout!r}"
        raise DataError(f"task {task_id} needs output units [{start}, {stop}) ({self.heads.num_classes[task_id]} "
                        f"classes, {layout}), but the target has {logits.shape[-1]} outputs: give the model at "
                        f"least {stop} outputs" + ("" if self.heads.output_layout == "shared" or not self.task_conditioned
                                                   else ", or use output_layout='shared'"))

    def _uses_global_labels(self) -> bool:
        return not self.task_conditioned and self.scenario == "cl3"

    def _train_units(self, task_id: int) -> tuple[int, int]:
        if self._uses_global_labels():  # CL3 baseline: one head expanding over every class seen so far
            return 0, self.heads.offset(task_id) + self.heads.num_classes[task_id]
        return self.heads.units(task_id)

    def _forward(self, task_id: int, x: torch.Tensor) -> torch.Tensor:
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
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.task_loss(task_id, self._forward(task_id, x), y)
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
        self.optimizer.step()
        self.strategy.after_step(self, task_id)
        return total

    def _make_optimizer(self) -> torch.optim.Optimizer:
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
        source = self._source(data, task_id)
        steps = int(iterations) if iterations is not None else int(epochs) * source.steps_per_epoch(bs)
        if steps <= 0:
            raise ValueError(f"the number of steps must be positive, got {steps}")
        if not isinstance(task_id, int) or task_id < 0:
            raise ValueError(f"task_id must be an int >= 0, got {task_id!r}")
        k = self._infer_num_classes(source, num_classes)
        source.check(k)
        self.begin_task(task_id, k)
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
        self._register_task(task_id, int(num_classes))
        self.strategy.before_task(self, task_id)
        self.optimizer = self._make_optimizer()
        return self.optimizer

    def end_task(self, task_id: int, data: Data) -> None:
        """What :meth:`fit_task` does after its last step: freeze the task's embedding, run the strategy's
        ``after_task`` with the task's training data (IWR's Fisher reads it) and mark the task learned."""
        if self.task_conditioned:
            self.hnet.task_embeddings[task_id].requires_grad_(False)  # old embeddings stay fixed
        self.strategy.after_task(self, task_id, data)
        self.learned_tasks.append(task_id)

    def task_logits(self, task_id: int, x: Any) -> torch.Tensor:
        """The target's output on ``x`` under task ``task_id``'s weights and BatchNorm statistics (the training
        forward: with gradients, in the target's current train/eval mode)."""
        return self._forward(task_id, x)

    def task_weights(self, task_ids: Sequence[int]) -> tuple[dict, Optional[dict]]:
        """The weights of ``task_ids`` generated in one call, stacked ``(T, ...)``, and their per-task buffers
        stacked the same way (``None`` without buffers); for a plain network the one weight set, ``T = 1``."""
        ids = list(task_ids)
        if not self.task_conditioned:
            single = self.hnet(ids[-1])
            return {n: w.unsqueeze(0) for n, w in single.items()}, None
        stacked = self.hnet.generate(ids)
        if not self.task_buffers:
            return stacked, None
        names = list(self.task_buffers[ids[0]])
        return stacked, {n: torch.stack([self.task_buffers[t][n] for t in ids]) for n in names}

    def batched_logits(self, weights: tuple[dict, Optional[dict]], x: Any) -> torch.Tensor:
        """``(T, B, O)``: each weight set of :meth:`task_weights` applied to the batch ``x`` in one ``vmap`` call."""
        stacked, bufs = weights
        return self.target.batched(stacked, x, buffers=bufs, buffers_per_task=bufs is not None)

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
        batches = self._source(data, task_id).subset(num_samples, self.rng, int(batch_size), self.device)
        with torch.no_grad():
            params = self.hnet(task_id)
        return task_fisher(self.target, params, batches, lambda out, yy: self.task_loss(task_id, out, yy),
                           buffers=self.task_buffers.get(task_id), normalize=normalize)

    # ------------------------------------------------------------------ evaluation
    def _task_test_sets(self, tasks_data: Any) -> dict[int, TaskSource]:
        if isinstance(tasks_data, Mapping):
            items = {int(k): v for k, v in tasks_data.items()}
        elif hasattr(tasks_data, "tasks"):
            items = dict(enumerate(tasks_data.tasks))
        else:
            items = dict(enumerate(tasks_data))
        return {t: self._source(d, t, "test") for t, d in items.items() if t in self.learned_tasks}

    @torch.no_grad()
    def evaluate(
        self, tasks_data: Any, scenarios: Optional[Sequence[str]] = None, record: bool = True,
        temperatures: Any = None, task_inference: Any = None,
    ) -> dict[str, dict]:
        """Test accuracy of every LEARNED task, in each scenario (default: the learner's ``scenario``).

        ``tasks_data``: a benchmark (``.tasks``), a list indexed by task id, or a dict ``{task_id: data}``; each task
        as :meth:`fit_task` takes it: ``(X, Y)`` (local labels), an object with ``x_test``/``y_test``, or an iterable
        of ``(x, y)`` batches (a DataLoader). For a hypernetwork all learned tasks' weights are generated in one call
        and applied to each test batch in one ``vmap`` call (a loop over the tasks where vmap cannot run the target);
        CL2/CL3 infer the task per sample by entropy, and the task-inference accuracy is reported.
        ``temperatures`` (per task id: a sequence, tensor or ``{task: T}``): each candidate task's logits are divided
        by its ``T_t`` before the softmax of the entropy and of the prediction (``None``: unchanged). With ``record``
        the row is appended to the accuracy matrix (as "after learning the last learned task").
        ``task_inference``: the CL2/CL3 criterion, a name of :mod:`hypercl.task_inference` (``"entropy"`` by default,
        ``"energy"``, ``"max_logit"``, ``"entropy_gradient"``, ``"ensemble:samples=8,scale=0.5"``, ...) or a
        :class:`~hypercl.task_inference.Criterion`; the hypernetwork is called once for all tasks. For CL2/CL3 of a
        hypernetwork each scenario's result also holds ``inferred`` (``{task: [inferred task id per test sample]}``),
        ``confusion`` (``{"tasks": learned ids, "counts": true task × inferred task}``) and ``task_inference_method``.
        """
        scen = [check_scenario(s) for s in (scenarios or [self.scenario])]
        if not self.learned_tasks:
            raise RuntimeError("no task has been learned yet")
        sets = self._task_test_sets(tasks_data)
        learned = list(self.learned_tasks)
        temps = row_temperatures(temperatures, learned, self.device)
        criterion = get_criterion(task_inference)
        infers = self.task_conditioned and any(s != "cl1" for s in scen)
        was_training = self.target.training
        self.target.eval()
        self.hnet.eval()
        infer = None
        inferred: dict[int, list] = {}
        try:
            if self.task_conditioned:
                bufs = None
                if self.task_buffers:
                    names = list(self.task_buffers[learned[0]])
                    bufs = {n: torch.stack([self.task_buffers[t][n] for t in learned]) for n in names}
                cands = make_candidates(self.hnet, self.target, learned, criterion if infers else get_criterion(None),
                                        bufs, temps)
                logits_of = cands.logits

                def infer(logits: torch.Tensor, mask: torch.Tensor, xb: Any) -> torch.Tensor:
                    return criterion.infer(logits, mask, xb, cands)
            else:
                single = self.hnet(learned[-1])

                def logits_of(xb: Any) -> torch.Tensor:
                    return self.target(single, xb)
            out: dict[str, dict] = {s: {"accuracy": {}, "task_inference": {}} for s in scen}
            for task, src in sets.items():
                k = self.heads.num_classes[task]
                src.check(k)
                inferred[task] = []
                res = evaluate_task(logits_of, src.iterate(self.device, k, self.eval_batch_size), self.heads,
                                    learned, task, self.task_conditioned, scen, temps, infer, inferred[task])
                for s in scen:
                    out[s]["accuracy"][task], out[s]["task_inference"][task] = res[s]
        finally:
            self.target.train(was_training)
            self.hnet.train(was_training)
        ids = torch.tensor(learned)
        per_task = {t: torch.cat(r).cpu() for t, r in inferred.items() if r}  # rows: positions in `learned`
        confusion = None
        if per_task:
            true = torch.cat([torch.full_like(v, learned.index(t)) for t, v in per_task.items()])
            counts = confusion_matrix(true, torch.cat(list(per_task.values())), len(learned))
            confusion = {"tasks": learned, "counts": counts.tolist()}
        for s in scen:
            accs = list(out[s]["accuracy"].values())
            out[s]["average"] = sum(accs) / len(accs) if accs else float("nan")
            row = {"after_task": learned[-1], "accuracy": dict(out[s]["accuracy"]),
                   "task_inference": dict(out[s]["task_inference"])}
            if confusion is not None and s != "cl1":
                out[s]["inferred"] = {t: ids[v].tolist() for t, v in per_task.items()}
                out[s]["confusion"] = confusion
                out[s]["task_inference_method"] = row["task_inference_method"] = criterion.spec()
                row["confusion"] = confusion
            if record:
                self.history[s].append(row)
        return out

    def results(self, scenario: Optional[str] = None) -> dict:
        """The recorded accuracy matrix and its summaries for one scenario (plain data, JSON-ready).

        ``matrix[i][j]``: accuracy on task ``j`` after learning task ``rows[i]`` (``None`` where not evaluated);
        ``final_average``: mean of the last row; ``during``: each task right after it was learned;
        ``backward_transfer``: mean over all but the last task of (final − during) (negative = forgetting).
        """
        s = check_scenario(scenario or self.scenario)
        rows = self.history[s]
        tasks = sorted({t for r in rows for t in r["accuracy"]})
        matrix = [[r["accuracy"].get(t) for t in tasks] for r in rows]
        ti = [[r["task_inference"].get(t) for t in tasks] for r in rows]
        confusion = [r.get("confusion") for r in rows]
        methods = {r["task_inference_method"] for r in rows if r.get("task_inference_method")}
        during = {}
        for r in rows:
            t = r["after_task"]
            if t in r["accuracy"]:
                during[t] = r["accuracy"][t]
        final = rows[-1]["accuracy"] if rows else {}
        final_avg = sum(final.values()) / len(final) if final else None
        during_avg = sum(during.values()) / len(during) if during else None
        last = rows[-1]["after_task"] if rows else None
        bwt_terms = [final[t] - during[t] for t in final if t in during and t != last]
        return {
            "scenario": s,
            "tasks": tasks,
            "rows": [r["after_task"] for r in rows],
            "matrix": matrix,
            "task_inference_matrix": ti,
            "task_inference_confusion": confusion,
            "task_inference_method": ", ".join(sorted(methods)) or None,
            "final_average": final_avg,
            "during": [during.get(t) for t in tasks],
            "during_average": during_avg,
            "backward_transfer": sum(bwt_terms) / len(bwt_terms) if bwt_terms else None,
        }

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict:
        """Everything needed to go on, as plain data (see :meth:`save`)."""
        hnet = self.hnet
        is_hnet = isinstance(hnet, HyperNetwork)
        if is_hnet and hnet.config is None:
            config = None
        else:
            config = dict(hnet.config)
        return {
            "format": FORMAT,
            "version": VERSION,
            "model_kind": "hypernetwork" if is_hnet else hnet.kind,
            "model_config": config,
            "model_spec": model_spec(self.target.module),
            "num_tasks": hnet.num_tasks,
            "growing": bool(getattr(hnet.generator, "growing", False)) if is_hnet else False,
            "model_state": hnet.state_dict(),
            "model_extra": {} if is_hnet else hnet.state_extra(),
            "requires_grad": {n: p.requires_grad for n, p in hnet.named_parameters()},
            "target_buffers": OrderedDict((n, b) for n, b in self.target.module.named_buffers()),
            "task_buffers": {t: dict(b) for t, b in self.task_buffers.items()},
            "strategy": {"name": self.strategy.name, "config": self.strategy.config(),
                         "state": self.strategy.state_dict()},
            "learner": {
                "scenario": self.scenario,
                "optimizer": self.optimizer_name,
                "lr": self.lr,
                "optimizer_kwargs": self.optimizer_kwargs,
                "output_layout": self.heads.output_layout,
                "batch_size": self.batch_size,
                "eval_batch_size": self.eval_batch_size,
                "seed": self.seed,
                "check_every": self.check_every,
                "compile": self.compile,
                "compile_options": _plain(self.compile_options),
                "autocast_dtype": _dtype_name(self.autocast_dtype),
            },
            "optimizer_state": self.optimizer.state_dict() if self.optimizer is not None else None,
            "num_classes": dict(self.heads.num_classes),
            "learned_tasks": list(self.learned_tasks),
            "history": self.history,
            "train_log": self.train_log,
            "rng": {"learner": self.rng.get_state(), "torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
        }

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Write a checkpoint atomically (temp file + rename): hypernetwork, task embeddings, GROW weights,
        strategy state (targets, Fisher vectors), per-task BatchNorm statistics, optimizer, RNG states, results."""
        atomic_save(self.state(), path)

    @classmethod
    def load(
        cls,
        path: Union[str, os.PathLike],
        model: Optional[nn.Module] = None,
        hnet: Optional[Model] = None,
        device: Union[str, torch.device, None] = None,
        strategy: Optional[Strategy] = None,
        progress: bool = False,
        distributed: Optional[DistributedContext] = None,
    ) -> "ContinualLearner":
        """A ready learner from a checkpoint.

        The target network is rebuilt from its registered spec (``hypercl.models``); for your own module class pass
        ``model=`` (a fresh instance of the same architecture), and for a hypernetwork built around a custom
        Generator instance pass ``hnet=``. A custom Strategy instance is passed as ``strategy=``. ``distributed``
        (not stored) resumes a data-parallel run: every rank loads the same checkpoint. ``compile``,
        ``compile_options`` and ``autocast_dtype`` come from the checkpoint (off for older ones); set the
        attributes of the returned learner to change them.
        """
        state = load_checkpoint(path, map_location="cpu")
        try:
            if hnet is None:
                if model is None:
                    spec = state["model_spec"]
                    if spec is None:
                        raise CheckpointError(
                            f"{path}: the target is not a registered hypercl model; pass model= (a fresh instance "
                            "of the same architecture) to ContinualLearner.load"
                        )
                    model = build_model(spec["name"], **spec["kwargs"])
                kind = state["model_kind"]
                if kind != "hypernetwork":
                    if kind not in WEIGHT_SOURCES:
                        raise CheckpointError(f"{path}: unknown model kind {kind!r}; known: {sorted(WEIGHT_SOURCES)}")
                    hnet = WEIGHT_SOURCES[kind](model)
                else:
                    if state["model_config"] is None:
                        raise CheckpointError(f"{path}: the hypernetwork used a custom Generator; pass hnet=")
                    cfg = dict(state["model_config"])
                    kind = cfg.pop("generator")
                    hnet = HyperNetwork(model, generator=kind, num_tasks=state["num_tasks"], **cfg)
            else:
                while hnet.num_tasks < state["num_tasks"]:
                    hnet.add_task()
            restore_model_state(hnet, state)
        except CheckpointError:
            raise
        except (RuntimeError, KeyError, ValueError, TypeError) as e:
            raise CheckpointError(f"{path} does not fit this model: {e}") from e
        cfg = state["learner"]
        st = strategy or get_strategy(state["strategy"]["name"], **state["strategy"]["config"])
        learner = cls(
            hnet, strategy=st, scenario=cfg["scenario"], optimizer=cfg["optimizer"], lr=cfg["lr"],
            optimizer_kwargs=cfg["optimizer_kwargs"], output_layout=cfg["output_layout"],
            batch_size=cfg["batch_size"], eval_batch_size=cfg["eval_batch_size"], device=device,
            seed=cfg["seed"], progress=progress, check_every=cfg["check_every"], distributed=distributed,
            compile=cfg.get("compile", False), compile_options=cfg.get("compile_options"),
            autocast_dtype=cfg.get("autocast_dtype"),
        )
        dev = learner.device
        st.load_state_dict(_to(state["strategy"]["state"], dev))
        learner.heads.num_classes = {int(k): int(v) for k, v in state["num_classes"].items()}
        learner.learned_tasks = [int(t) for t in state["learned_tasks"]]
        learner.task_buffers = {int(t): OrderedDict((n, b.to(dev)) for n, b in bufs.items())
                                for t, bufs in state["task_buffers"].items()}
        learner.history = {s: list(rows) for s, rows in state["history"].items()}
        learner.train_log = dict(state["train_log"])
        learner.rng.set_state(state["rng"]["learner"])
        torch.set_rng_state(state["rng"]["torch"])
        if state["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        if state["optimizer_state"] is not None:
            learner.optimizer = learner._make_optimizer() if any(p.requires_grad for p in hnet.parameters()) else None
            if learner.optimizer is not None:
                try:
                    learner.optimizer.load_state_dict(state["optimizer_state"])
                except (ValueError, KeyError):
                    learner.optimizer = None  # parameters were frozen after the task: a new task builds a new one
        return learner


def restore_model_state(hnet: Model, state: dict) -> None:
    """Put a checkpoint's model state into a weight source built with the same config and ``num_tasks`` tasks:
    GROW mode, extra state, parameters, which parameters are frozen, and the target module's own buffers."""
    if state["growing"]:
        hnet.generator.enable_growth(hnet.num_tasks)
    if state["model_kind"] != "hypernetwork":
        hnet.load_state_extra(state["model_extra"])
    hnet.load_state_dict(state["model_state"])
    for n, p in hnet.named_parameters():
        p.requires_grad_(state["requires_grad"].get(n, True))
    own = dict(hnet.target.module.named_buffers())
    for n, b in state["target_buffers"].items():
        own[n].copy_(b)


def _to(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to(v, device) for v in obj]
    return obj
