"""hypercl's hypernetwork methods as an Avalanche 0.6 strategy: ``from hypercl.avalanche import HyperCLStrategy``.

:class:`HyperCLStrategy` subclasses Avalanche's ``SupervisedTemplate``
(``avalanche/training/templates/common_templates.py:30-141`` of ContinualAI/avalanche v0.6.0) and keeps its loop:
``train(experience)`` runs ``_before_training_exp`` → epochs of ``training_epoch`` (the template's own loop,
``training/templates/update_type/sgd_update.py:13-46``) → ``_after_training_exp``; ``eval(stream)`` runs the
template's ``eval_epoch`` (``training/templates/base_sgd.py:267-278``). It overrides only the pieces that loop calls:
``check_model_and_optimizer`` (a new hypernetwork task and its optimizer at each training experience),
``forward``, ``criterion``, ``backward`` (the regulariser of eq. 2/3, after the task loss's gradients when it uses
the lookahead) and ``optimizer_step``, so every ``_before_*`` / ``_after_*`` callback fires and Avalanche's
``EvaluationPlugin`` metrics and loggers see ``mb_output`` / ``mb_y`` as for any other strategy.

Labels and outputs: Avalanche hands GLOBAL class ids; each training experience is one hypernetwork task whose
classes (``experience.classes_in_this_experience``, sorted) become the task's local labels ``0..k-1``.
``mb_output`` is in the global class space: the chosen task's logits sit at its classes' columns, every other column
holds ``MASK_VALUE`` (-1000, the value Avalanche's own ``MultiHeadClassifier`` puts on inactive units,
``avalanche/models/dynamic_modules.py:326, 459``), so ``argmax`` is the predicted global class.

Task identity: a stream whose training experiences carry distinct task labels (task-incremental) picks each test
sample's weights by its task label, as ``MultiTaskModule.forward(x, task_labels)`` does
(``avalanche/models/dynamic_modules.py:162-191``). A stream whose task label repeats (class-incremental: every
experience is task 0) switches to per-sample entropy task inference (CL3, :mod:`hypercl.scenarios`): the test-time
task labels are then never read.
"""

from __future__ import annotations

import itertools
import logging
import os
from typing import Any, Iterator, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

try:
    from avalanche.training.plugins.evaluation import default_evaluator
    from avalanche.training.templates import SupervisedTemplate
except ImportError as _e:  # pragma: no cover - the message is the point
    raise ImportError(f'hypercl.avalanche needs Avalanche ({_e}): pip install "hypercl[avalanche]"') from None

from .avalanche_replay import REPLAY_PLUGIN_METHODS, GeneratedReplayPlugin
from .checkpoint import CheckpointError, atomic_save, load_checkpoint
from .experiments.configs import BENCHMARK_CONFIGS, GROW_NEW_TASK, HNET_INIT, HNET_METHODS, RECURRENT_INIT
from .hypernetwork import HyperNetwork
from .learner import ContinualLearner, make_optimizer
from .scenarios import infer_task_by_entropy

__all__ = [
    "HyperCLStrategy",
    "HyperCLModel",
    "GeneratedReplayPlugin",
    "MASK_VALUE",
    "METHODS",
    "REPLAY_PLUGIN_METHODS",
    "method_settings",
]

log = logging.getLogger("hypercl")

#: the logit of a class column the chosen task does not own (Avalanche's MultiHeadClassifier uses the same value)
MASK_VALUE = -1000.0
#: the methods this strategy runs (hypernetwork generator + strategy, as in ``hypercl run``)
METHODS = ("hnet", "hnet_iwr", "lstm_net", "lstm_net_iwr", "lstm_net_grow")


def method_settings(method: str) -> tuple[dict, str, dict]:
    """``(hypernetwork kwargs, strategy name, strategy kwargs)`` of a method: the generator and init of
    ``hypercl run``, the hypernetwork's size defaults for an arbitrary target (``HyperNetwork``'s own chunk size
    rule), and the Split MNIST regulariser settings (β 0.01 with lookahead; GROW copies the previous task's weights)."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {list(METHODS)}")
    generator, strategy = HNET_METHODS[method]
    hnet: dict[str, Any] = {"generator": generator, "init": HNET_INIT.get(method, RECURRENT_INIT)}
    skw: dict[str, Any] = {}
    if strategy in ("hnet", "iwr"):
        skw = dict(BENCHMARK_CONFIGS["split_mnist"]["regularizer"])
    if strategy == "grow":
        skw = {"new_task_weights": GROW_NEW_TASK}
    return hnet, strategy, skw


class HyperCLModel(nn.Module):
    """The hypernetwork as Avalanche sees it (``strategy.model``): its parameters and ``state_dict`` are the
    hypernetwork's, and ``forward(x, task_labels=None)`` gives global-class logits ``(B, num_classes)``.

    With ``task_labels`` (and a task-aware stream) each sample uses the weights of its task; without them (or for a
    label no task was trained with) each sample's task is inferred by the lowest predictive entropy over all learned
    tasks (one batched call over the tasks).
    """

    def __init__(self, learner: ContinualLearner) -> None:
        super().__init__()
        self.hnet = learner.hnet
        self.learner = learner
        #: hypernetwork task id -> its global classes (local label i is class ``classes[t][i]``)
        self.classes: dict[int, list[int]] = {}
        #: Avalanche task label -> hypernetwork task id (task-aware streams only)
        self.task_of_label: dict[int, int] = {}
        #: True: the training stream's task labels identify the tasks; False: class-incremental (labels unused)
        self.task_aware: bool = True
        self.current: Optional[int] = None  # the task being trained
        self._weights: Optional[tuple] = None  # generated weights of the candidates, cached while evaluating

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "learner":  # a plain attribute, not a submodule (the learner is not an nn.Module)
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    @property
    def num_classes(self) -> int:
        """Columns of the output: one past the largest class id seen in training."""
        return 1 + max((c for cs in self.classes.values() for c in cs), default=-1)

    def candidates(self) -> list[int]:
        """The tasks a sample can belong to: the learned ones and the one being trained."""
        tasks = list(self.learner.learned_tasks)
        if self.current is not None and self.current not in tasks:
            tasks.append(self.current)
        return tasks

    def train(self, mode: bool = True) -> HyperCLModel:
        super().train(mode)
        self.learner.target.train(mode)  # the target module is not a submodule: its BatchNorm/Dropout mode follows
        if mode:
            self._weights = None
        return self

    def unit_classes(self, tasks: Sequence[int], num_outputs: int, device: torch.device) -> torch.Tensor:
        """``(T, num_outputs)`` long: the global class of each task's output unit, ``-1`` for units it does not use."""
        out = torch.full((len(tasks), num_outputs), -1, dtype=torch.long)
        for row, t in enumerate(tasks):
            start, stop = self.learner.heads.units(t)
            out[row, start:stop] = torch.tensor(self.classes[t], dtype=torch.long)
        return out.to(device)

    def to_global(self, logits: torch.Tensor, rows: torch.Tensor, tasks: Sequence[int], width: int) -> torch.Tensor:
        """Per-sample logits ``(B, O)`` of task ``tasks[rows[b]]`` → ``(B, width)`` global-class logits, every column
        the task does not own at :data:`MASK_VALUE`."""
        cls = self.unit_classes(tasks, logits.shape[-1], logits.device)[rows]  # (B, O)
        cls = torch.where(cls >= 0, cls, torch.full_like(cls, width))  # unused units go to a spare column
        out = logits.new_full((logits.shape[0], width + 1), MASK_VALUE)
        return out.scatter(1, cls, logits)[:, :width]

    def forward(self, x: Any, task_labels: Optional[torch.Tensor] = None, width: Optional[int] = None) -> torch.Tensor:
        width = max(self.num_classes, int(width or 0))
        tasks = self.candidates()
        n = _batch_size(x)
        if not tasks:
            return torch.zeros(n, width, device=_device(x))
        rows = None
        if task_labels is not None and self.task_aware:
            labels = (
                torch.as_tensor(task_labels).reshape(-1).expand(n)
                if torch.as_tensor(task_labels).numel() == 1
                else torch.as_tensor(task_labels).reshape(-1)
            )
            lut = {lab: tasks.index(t) for lab, t in self.task_of_label.items() if t in tasks}
            known = [int(v) for v in labels.unique().tolist()]
            if all(v in lut for v in known):
                if len(known) == 1:  # one task in the batch: only its weights are run
                    t = tasks[lut[known[0]]]
                    row = torch.full((n,), lut[known[0]], dtype=torch.long, device=_device(x))
                    return self.to_global(self.learner.task_logits(t, x), row, tasks, width)
                table = torch.full((max(max(known), 0) + 1,), -1, dtype=torch.long)
                for v in known:
                    table[v] = lut[v]
                rows = table[labels.cpu()].to(_device(x))
        if self._weights is None or self.training:
            weights = self.learner.task_weights(tasks)
            if not self.training:
                self._weights = weights
        else:
            weights = self._weights
        logits = self.learner.batched_logits(weights, x)  # (T, B, O)
        if rows is None:
            mask = self.learner.heads.unit_mask(tasks, logits.shape[-1], logits.device)
            rows = infer_task_by_entropy(logits, mask)  # CL3: per sample, no task label read
        picked = logits[rows, torch.arange(n, device=logits.device)]
        return self.to_global(picked, rows, tasks, width)


def _batch_size(x: Any) -> int:
    leaf = x if isinstance(x, torch.Tensor) else next(iter(x.values() if isinstance(x, dict) else x))
    return int(leaf.shape[0])


def _device(x: Any) -> torch.device:
    leaf = x if isinstance(x, torch.Tensor) else next(iter(x.values() if isinstance(x, dict) else x))
    return leaf.device


class LocalBatches:
    """A re-iterable of ``(x, local_y)`` batches over an Avalanche dataset (shuffled with a seeded generator, so the
    first ``n`` samples that IWR's Fisher of eq. 4 reads are a random subset)."""

    def __init__(self, dataset: Any, classes: Sequence[int], batch_size: int, seed: int) -> None:
        self.dataset, self.batch_size, self.seed = dataset, int(batch_size), int(seed)
        self.lut = torch.full((max(classes) + 1,), -1, dtype=torch.long)
        self.lut[torch.tensor(list(classes))] = torch.arange(len(classes))

    def __iter__(self) -> Iterator[tuple[Any, torch.Tensor]]:
        g = torch.Generator().manual_seed(self.seed)
        loader = torch.utils.data.DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            shuffle=True,
            generator=g,
            collate_fn=getattr(self.dataset, "collate_fn", None),
        )
        for batch in loader:
            yield batch[0], self.lut[batch[1]]


class HyperCLStrategy(SupervisedTemplate):
    """An Avalanche strategy that trains a hypernetwork over ``model`` (any ``nn.Module``, wrapped with
    :func:`hypercl.wrap`) with one of hypercl's methods.

    Args:
        model: the target network; its output must have at least as many units as the largest experience has
            classes (``output_layout="shared"``, the default: every task uses units ``0..k-1`` of its own weights)
            or as the whole stream has classes (``"per_task"``).
        method: ``"hnet"``, ``"hnet_iwr"``, ``"lstm_net"``, ``"lstm_net_iwr"`` or ``"lstm_net_grow"``
            (:func:`method_settings`); ``hnet_kwargs`` / ``strategy_kwargs`` override its settings (e.g. ``beta``,
            ``chunk_size``, ``hidden_size``).
        optimizer, lr, optimizer_kwargs: a fresh optimizer of this kind over the trainable hypernetwork parameters
            for every experience (``strategy.optimizer`` is it while an experience trains).
        train_mb_size, train_epochs, eval_mb_size, device, plugins, evaluator, eval_every: as for every Avalanche
            strategy (``SupervisedTemplate``).
        train_iterations: if given, each experience trains exactly this many minibatch steps (the dataloader is
            re-iterated as needed) instead of ``train_epochs`` passes; Avalanche's epoch metrics then cover the whole
            experience as one epoch.
        task_labels: ``None`` (default): task-aware while every training experience brings a new task label,
            class-incremental (entropy task inference at test time) as soon as a label repeats; ``True``: task-aware,
            a repeated label is an error; ``False``: class-incremental from the start (test-time task labels are
            never read).
        seed: seeds the hypernetwork's initialisation and the learner's own generator.
    """

    def __init__(
        self,
        *,
        model: nn.Module,
        method: str = "hnet",
        optimizer: str = "adam",
        lr: float = 1e-3,
        optimizer_kwargs: Optional[dict] = None,
        train_mb_size: int = 128,
        train_epochs: int = 1,
        train_iterations: Optional[int] = None,
        eval_mb_size: int = 256,
        device: Union[str, torch.device] = "cpu",
        plugins: Optional[Sequence[Any]] = None,
        evaluator: Any = default_evaluator,
        eval_every: int = -1,
        output_layout: str = "shared",
        task_labels: Optional[bool] = None,
        hnet_kwargs: Optional[dict] = None,
        strategy_kwargs: Optional[dict] = None,
        seed: int = 0,
        **kwargs: Any,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be an nn.Module (the target network), got {type(model).__name__}")
        if train_iterations is not None and int(train_iterations) <= 0:
            raise ValueError(f"train_iterations must be a positive number of steps, got {train_iterations}")
        if task_labels not in (None, True, False):
            raise ValueError(f"task_labels must be None (infer from the stream), True or False, got {task_labels!r}")
        hk, strategy, skw = method_settings(method)
        hk.update(hnet_kwargs or {})
        skw.update(strategy_kwargs or {})
        torch.manual_seed(seed)
        generator = hk.pop("generator")
        hnet = HyperNetwork(model, generator=generator, **hk)
        learner = ContinualLearner(
            hnet,
            strategy=strategy,
            strategy_kwargs=skw,
            optimizer=optimizer,
            lr=lr,
            optimizer_kwargs=optimizer_kwargs,
            output_layout=output_layout,
            batch_size=train_mb_size,
            eval_batch_size=eval_mb_size,
            device=device,
            seed=seed,
        )
        self._init(
            learner,
            method,
            train_iterations,
            task_labels,
            train_mb_size,
            train_epochs,
            eval_mb_size,
            device,
            plugins,
            evaluator,
            eval_every,
            **kwargs,
        )

    def _init(
        self,
        learner: ContinualLearner,
        method: str,
        train_iterations: Optional[int],
        task_labels: Optional[bool],
        train_mb_size: int,
        train_epochs: int,
        eval_mb_size: int,
        device: Any,
        plugins: Any,
        evaluator: Any,
        eval_every: int,
        **kwargs: Any,
    ) -> None:
        self.learner = learner
        self.method = method
        self.train_iterations = None if train_iterations is None else int(train_iterations)
        self.task_labels_mode = task_labels
        hmodel = HyperCLModel(learner)
        if task_labels is False:
            hmodel.task_aware = False
        params: list[torch.Tensor] = [p for p in learner.hnet.parameters() if p.requires_grad]
        placeholder = make_optimizer(learner.optimizer_name, params, learner.lr, learner.optimizer_kwargs)
        super().__init__(
            model=hmodel,
            optimizer=placeholder,
            train_mb_size=train_mb_size,
            train_epochs=1 if self.train_iterations is not None else train_epochs,
            eval_mb_size=eval_mb_size,
            device=device,
            plugins=plugins,
            evaluator=evaluator,
            eval_every=eval_every,
            **kwargs,
        )
        self._task: Optional[int] = None
        self._target_out: Optional[torch.Tensor] = None
        self._local_lut: Optional[torch.Tensor] = None

    # ------------------------------------------------------------------ experiences
    def check_model_and_optimizer(self, reset_optimizer_state: bool = False, **kwargs: Any) -> None:
        """A new hypernetwork task for this training experience, and its optimizer (hypercl builds one per task
        over the parameters that are trainable then)."""
        exp = self.experience
        model: HyperCLModel = self.model
        classes = sorted(int(c) for c in exp.classes_in_this_experience)
        if not classes:
            raise ValueError(
                f"experience {exp.current_experience} has no classes; HyperCLStrategy trains on "
                "classification experiences"
            )
        labels = sorted({int(t) for t in exp.task_labels})
        task = len(self.learner.learned_tasks)
        if model.task_aware:
            repeated = len(labels) != 1 or labels[0] in model.task_of_label
            if repeated and self.task_labels_mode is True:
                raise ValueError(
                    f"experience {exp.current_experience} has task label(s) {labels}, which do not name "
                    "one new task; HyperCLStrategy learns each task once: use task_labels=False (or "
                    "None) for a class-incremental stream"
                )
            if repeated:
                log.info(
                    "task label(s) %s repeat: class-incremental stream, test-time task labels are not used and "
                    "each sample's task is inferred by entropy",
                    labels,
                )
                model.task_aware = False
                model.task_of_label = {}
            else:
                model.task_of_label[labels[0]] = task
        model.classes[task] = classes
        model.current = task
        self._task = task
        lut = torch.full((classes[-1] + 1,), -1, dtype=torch.long)
        lut[torch.tensor(classes)] = torch.arange(len(classes))
        self._local_lut = lut.to(self.device)
        self.optimizer = self.learner.begin_task(task, len(classes))
        self.model.train()

    def _after_training_exp(self, **kwargs: Any) -> None:
        assert self._task is not None
        classes = self.model.classes[self._task]
        self.learner.end_task(
            self._task,
            LocalBatches(self.experience.dataset.train(), classes, self.train_mb_size, self.learner.seed + self._task),
        )
        self.model.current = None
        super()._after_training_exp(**kwargs)

    def make_optimizer(self, **kwargs: Any) -> None:
        """hypercl builds the optimizer per task (:meth:`check_model_and_optimizer`); nothing to update here."""

    def model_adaptation(self, model: Optional[nn.Module] = None) -> nn.Module:
        return (model or self.model).to(self.device)

    def training_epoch(self, **kwargs: Any) -> None:
        """The template's epoch loop, or with ``train_iterations`` exactly that many steps (the same callbacks in the
        same order as ``update_type/sgd_update.py:13-46``)."""
        if self.train_iterations is None:
            return super().training_epoch(**kwargs)
        loader = self.dataloader
        for batch in itertools.islice(itertools.chain.from_iterable(itertools.repeat(loader)), self.train_iterations):
            self.mbatch = batch
            if self._stop_training:
                break
            self._unpack_minibatch()
            self._before_training_iteration(**kwargs)
            self.optimizer.zero_grad()
            self.loss = self._make_empty_loss()
            self._before_forward(**kwargs)
            self.mb_output = self.forward()
            self._after_forward(**kwargs)
            self.loss += self.criterion()
            self._before_backward(**kwargs)
            self.backward()
            self._after_backward(**kwargs)
            self._before_update(**kwargs)
            self.optimizer_step()
            self._after_update(**kwargs)
            self._after_training_iteration(**kwargs)
        return None

    # ------------------------------------------------------------------ one step
    @property
    def task(self) -> int:
        """The hypernetwork task id of the experience being trained."""
        if self._task is None:
            raise RuntimeError("no experience is being trained")
        return self._task

    def _local_y(self) -> torch.Tensor:
        y = self.mb_y
        lut = self._local_lut
        assert lut is not None
        local = lut[y.clamp(max=len(lut) - 1)]
        if bool(((y >= len(lut)) | (local < 0)).any()):
            raise ValueError(
                f"a training minibatch has labels {sorted(set(y.tolist()))} outside the experience's "
                f"classes {self.model.classes[self._task]}"
            )
        return local

    def forward(self) -> torch.Tensor:
        model: HyperCLModel = self.model
        if self.is_training:
            self._target_out = self.learner.task_logits(self.task, self.mb_x)
            rows = torch.zeros(len(self.mb_y), dtype=torch.long, device=self._target_out.device)
            return model.to_global(self._target_out, rows, [self.task], model.num_classes)
        width = int(self.mb_y.max()) + 1 if len(self.mb_y) else 0
        labels = self.mb_task_id if (model.task_aware and len(self.mbatch) >= 3) else None
        return model(self.mb_x, labels, width=width)

    def criterion(self) -> torch.Tensor:
        if self.is_training:
            assert self._target_out is not None
            return self.learner.task_loss(self.task, self._target_out, self._local_y())
        return F.cross_entropy(self.mb_output, self.mb_y)

    def backward(self) -> None:
        st = self.learner.strategy
        if st.uses_lookahead:  # eq. 2/3 with the candidate step ΔΘ_h: the task loss's gradients come first
            self.loss.backward(retain_graph=self.retain_graph)
            reg = st.penalty(self.learner, self.task)
            if reg is not None:
                reg.backward()
        else:
            reg = st.penalty(self.learner, self.task)
            (self.loss + reg if reg is not None else self.loss).backward(retain_graph=self.retain_graph)
        self.reg_loss = reg.detach() if reg is not None else None

    def optimizer_step(self) -> None:
        self.optimizer.step()
        self.learner.strategy.after_step(self.learner, self.task)

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict:
        """The learner's checkpoint (hypernetwork, per-task buffers, strategy state, RNG) plus the stream's mapping
        (each task's classes, the task labels, task-aware or not, the method)."""
        model: HyperCLModel = self.model
        state = self.learner.state()
        state["avalanche"] = {
            "method": self.method,
            "classes": {int(t): list(c) for t, c in model.classes.items()},
            "task_of_label": {int(k): int(v) for k, v in model.task_of_label.items()},
            "task_aware": bool(model.task_aware),
            "task_labels_mode": self.task_labels_mode,
            "train_iterations": self.train_iterations,
            "train_epochs": int(self.train_epochs),
        }
        return state

    def save(self, path: Union[str, os.PathLike]) -> None:
        """Write a hypercl checkpoint atomically (temp file + rename, SHA-256 digest of the content, read back with
        ``torch.load(weights_only=True)``): no pickled code, unlike a pickled strategy object."""
        atomic_save(self.state(), path)

    @classmethod
    def load(
        cls,
        path: Union[str, os.PathLike],
        model: nn.Module,
        *,
        train_mb_size: int = 128,
        eval_mb_size: int = 256,
        device: Union[str, torch.device] = "cpu",
        plugins: Optional[Sequence[Any]] = None,
        evaluator: Any = default_evaluator,
        eval_every: int = -1,
        **kwargs: Any,
    ) -> HyperCLStrategy:
        """A strategy that goes on from a checkpoint of :meth:`save`; ``model`` is a fresh instance of the target's
        architecture; the Avalanche-side objects (plugins, evaluator) are given anew."""
        state = load_checkpoint(path, map_location="cpu")
        extra = state.get("avalanche")
        if extra is None:
            raise CheckpointError(
                f"{path} is a hypercl checkpoint but not one of HyperCLStrategy.save (no stream "
                "mapping): load it with hypercl.ContinualLearner.load"
            )
        learner = ContinualLearner.load(path, model=model, device=device)
        self = cls.__new__(cls)
        self._init(
            learner,
            extra["method"],
            extra["train_iterations"],
            extra["task_labels_mode"],
            train_mb_size,
            extra["train_epochs"],
            eval_mb_size,
            device,
            plugins,
            evaluator,
            eval_every,
            **kwargs,
        )
        hm: HyperCLModel = self.model
        hm.classes = {int(t): [int(c) for c in cs] for t, cs in extra["classes"].items()}
        hm.task_of_label = {int(k): int(v) for k, v in extra["task_of_label"].items()}
        hm.task_aware = bool(extra["task_aware"])
        return self
