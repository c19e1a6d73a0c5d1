"""The continual learner: trains a hypernetwork (or a plain target) on a sequence of tasks with a strategy, evaluates
the CL1/CL2/CL3 scenarios, keeps the accuracy matrix, and saves/loads checkpoints.
"""

from __future__ import annotations

import math
import os
from collections import OrderedDict
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import FORMAT, VERSION, CheckpointError, atomic_save, load_checkpoint
from .direct import DirectWeights
from .distributed import DataParallelSteps, DistributedContext, check_batch_size
from .hypernetwork import HyperNetwork
from .models.registry import build_model, model_spec
from .regularizers import diagonal_empirical_fisher, normalize_fisher
from .scenarios import SCENARIOS, HeadLayout, check_scenario, score_batch
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
Data = Any  # (X, Y) tensors, an object with x_train/y_train, or an iterable of (x, y) batches


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


def _is_pair(data: Any) -> bool:
    return isinstance(data, (tuple, list)) and len(data) == 2 and hasattr(data[0], "__getitem__") and isinstance(
        data[1], torch.Tensor
    )


def _train_pair(data: Any) -> Any:
    """``(X, Y)`` from a pair or a task object with ``x_train``/``y_train``; anything else is returned as is."""
    if hasattr(data, "x_train") and hasattr(data, "y_train"):
        return (data.x_train, data.y_train)
    return data


def _test_pair(data: Any) -> Any:
    if hasattr(data, "x_test") and hasattr(data, "y_test"):
        return (data.x_test, data.y_test)
    return data


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
        self.heads.register(task_id, num_classes)
        while self.hnet.num_tasks <= task_id:
            self.hnet.add_task()
        if self.target.buffer_names and task_id not in self.task_buffers:
            self.task_buffers[task_id] = OrderedDict(
                (n, b.to(self.device)) for n, b in self.target.init_buffers().items()
            )

    def _infer_num_classes(self, data: Any, num_classes: Optional[int]) -> int:
        if num_classes is not None:
            return int(num_classes)
        if hasattr(data, "num_classes"):
            return int(data.num_classes)
        pair = _train_pair(data)
        if _is_pair(pair):
            return int(pair[1].max().item()) + 1
        raise ValueError("num_classes is needed when data is an iterable of batches")

    # ------------------------------------------------------------------ batches
    def _batches(self, data: Any, batch_size: int, shuffle: bool = True) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless batches: shuffled passes over ``(X, Y)`` by index, or passes over an iterable of batches."""
        pair = _train_pair(data)
        if _is_pair(pair):
            x, y = pair
            n = len(x)
            if n == 0:
                raise ValueError("the task has no training samples")
            while True:
                order = torch.randperm(n, generator=self.rng) if shuffle else torch.arange(n)
                for i in range(0, n, batch_size):
                    idx = order[i : i + batch_size]
                    yield self._to_device(x[idx.to(getattr(x, "device", "cpu"))], y[idx.to(y.device)])
        else:
            while True:
                empty = True
                for xb, yb in pair:
                    empty = False
                    yield self._to_device(xb, yb)
                if empty:
                    raise ValueError("the data iterable yielded no batches")

    def _to_device(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def _steps_per_epoch(self, data: Any, batch_size: int) -> int:
        pair = _train_pair(data)
        if _is_pair(pair):
            return math.ceil(len(pair[0]) / batch_size)
        try:
            return len(pair)
        except TypeError:
            raise ValueError("epochs= needs data with a length; give iterations= for a plain iterable") from None

    # ------------------------------------------------------------------ training
    def task_loss(self, task_id: int, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the task's local labels over the task's output units (see :class:`HeadLayout`)."""
        start, stop = self._train_units(task_id)
        shift = self.heads.offset(task_id) - start if self._uses_global_labels() else 0
        return F.cross_entropy(logits[..., start:stop], y + shift)

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
        """Learn one task. ``data``: ``(X, Y)`` tensors (batched and shuffled here), an object with ``x_train`` /
        ``y_train`` (a benchmark task), or an iterable of ``(x, y)`` batches (a DataLoader). Give exactly one of
        ``iterations`` (optimizer steps) or ``epochs`` (passes over the data). A new ``task_id`` registers the task.
        Returns the task's training log (mean loss of the last check window, steps, penalty used).
        """
        if (iterations is None) == (epochs is None):
            raise ValueError("give exactly one of iterations= or epochs=")
        bs = int(batch_size or self.batch_size)
        if self.distributed is not None:
            check_batch_size(bs, self.distributed.world_size)
        steps = int(iterations) if iterations is not None else int(epochs) * self._steps_per_epoch(data, bs)
        if steps <= 0:
            raise ValueError(f"the number of steps must be positive, got {steps}")
        if not isinstance(task_id, int) or task_id < 0:
            raise ValueError(f"task_id must be an int >= 0, got {task_id!r}")
        self._register_task(task_id, self._infer_num_classes(data, num_classes))
        self.strategy.before_task(self, task_id)
        self.optimizer = self._make_optimizer()
        self.hnet.train()
        self.target.train()
        losses = torch.zeros(self.check_every, device=self.device)
        batches = self._batches(data, bs)
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
                        "lower the learning rate or beta; the last saved checkpoint is unchanged"
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
        if self.task_conditioned:
            self.hnet.task_embeddings[task_id].requires_grad_(False)  # old embeddings stay fixed
        self.strategy.after_task(self, task_id, data)
        self.learned_tasks.append(task_id)
        log = {"task": task_id, "steps": steps, "final_loss": window_mean}
        self.train_log[task_id] = log
        return log

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
        pair = _train_pair(data)
        batches: Iterable[tuple[torch.Tensor, torch.Tensor]]
        if _is_pair(pair):
            x, y = pair
            n = len(x) if num_samples is None else min(len(x), int(num_samples))
            idx = torch.randperm(len(x), generator=self.rng)[:n]
            batches = (
                self._to_device(x[i.to(getattr(x, "device", "cpu"))], y[i.to(y.device)])
                for i in idx.split(batch_size)
            )
        else:
            batches = self._limited(pair, num_samples)
        was_training = self.target.training
        self.target.eval()
        try:
            with torch.no_grad():
                params = self.hnet(task_id)
            fisher = diagonal_empirical_fisher(
                self.target,
                params,
                batches,
                lambda out, yy: self.task_loss(task_id, out, yy),
                buffers=self.task_buffers.get(task_id),
            )
        finally:
            self.target.train(was_training)
        flat = self.target.flatten(fisher)
        return normalize_fisher(flat) if normalize else flat

    def _limited(self, iterable: Iterable, num_samples: Optional[int]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        seen = 0
        for xb, yb in iterable:
            if num_samples is not None and seen >= num_samples:
                return
            if num_samples is not None:
                xb, yb = xb[: num_samples - seen], yb[: num_samples - seen]
            seen += len(yb)
            yield self._to_device(xb, yb)

    # ------------------------------------------------------------------ evaluation
    def _task_test_sets(self, tasks_data: Any) -> dict[int, Any]:
        if isinstance(tasks_data, Mapping):
            items = {int(k): v for k, v in tasks_data.items()}
        elif hasattr(tasks_data, "tasks"):
            items = dict(enumerate(tasks_data.tasks))
        else:
            items = dict(enumerate(tasks_data))
        return {t: _test_pair(d) for t, d in items.items() if t in self.learned_tasks}

    @torch.no_grad()
    def evaluate(
        self, tasks_data: Any, scenarios: Optional[Sequence[str]] = None, record: bool = True
    ) -> dict[str, dict]:
        """Test accuracy of every LEARNED task, in each scenario (default: the learner's ``scenario``).

        ``tasks_data``: a benchmark (``.tasks``), a list indexed by task id, or a dict ``{task_id: data}``; each task
        as ``(X, Y)`` (local labels) or an object with ``x_test``/``y_test``. For a hypernetwork all learned tasks'
        weights are generated in one call and applied to each test batch in one ``vmap`` call; CL2/CL3 infer the task
        per sample by entropy, and the task-inference accuracy is reported. With ``record`` the row is appended to
        the accuracy matrix (as "after learning the last learned task").
        """
        scen = [check_scenario(s) for s in (scenarios or [self.scenario])]
        if not self.learned_tasks:
            raise RuntimeError("no task has been learned yet")
        sets = self._task_test_sets(tasks_data)
        learned = list(self.learned_tasks)
        was_training = self.target.training
        self.target.eval()
        self.hnet.eval()
        try:
            if self.task_conditioned:
                stacked = self.hnet.generate(learned)
                bufs = None
                if self.task_buffers:
                    names = list(self.task_buffers[learned[0]])
                    bufs = {n: torch.stack([self.task_buffers[t][n] for t in learned]) for n in names}
            else:
                single = self.hnet(learned[-1])
            out: dict[str, dict] = {s: {"accuracy": {}, "task_inference": {}} for s in scen}
            mask = starts = offsets = None
            for task, (x, y) in sets.items():
                counts = {s: [torch.zeros((), device=self.device, dtype=torch.long) for _ in range(2)] for s in scen}
                n = len(y)
                for i in range(0, n, self.eval_batch_size):
                    xb, yb = self._to_device(x[i : i + self.eval_batch_size], y[i : i + self.eval_batch_size])
                    if self.task_conditioned:
                        logits = self.target.batched(stacked, xb, buffers=bufs, buffers_per_task=bufs is not None)
                    else:
                        logits = self.target(single, xb)
                    if mask is None:
                        mask = self.heads.unit_mask(learned, logits.shape[-1], self.device)
                        starts = torch.tensor([self.heads.units(t)[0] for t in learned], device=self.device)
                        offsets = torch.tensor([self.heads.offset(t) for t in learned], device=self.device)
                    row = learned.index(task)
                    for s in scen:
                        correct, hits = score_batch(logits, mask, starts, offsets, row, yb, self.task_conditioned, s)
                        counts[s][0] += correct
                        if hits is not None:
                            counts[s][1] += hits
                for s in scen:
                    out[s]["accuracy"][task] = counts[s][0].item() / max(n, 1)
                    has_ti = self.task_conditioned and s != "cl1"
                    out[s]["task_inference"][task] = counts[s][1].item() / max(n, 1) if has_ti else None
        finally:
            self.target.train(was_training)
            self.hnet.train(was_training)
        for s in scen:
            accs = list(out[s]["accuracy"].values())
            out[s]["average"] = sum(accs) / len(accs) if accs else float("nan")
            if record:
                self.history[s].append(
                    {"after_task": learned[-1], "accuracy": dict(out[s]["accuracy"]),
                     "task_inference": dict(out[s]["task_inference"])}
                )
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
