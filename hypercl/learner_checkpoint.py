"""Checkpoints of a continual learner: its whole state as plain data, saved atomically, loaded back into a ready
learner (:meth:`Checkpointing.load`), or restored in memory into a learner built the same way."""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any, Callable, Optional, Union, cast

import torch
from torch import nn

from .checkpoint import FORMAT, VERSION, CheckpointError, atomic_save, load_checkpoint, one_line
from .direct import DirectWeights
from .distributed import DistributedContext
from .hypernetwork import HyperNetwork
from .learner_fields import LearnerFields
from .models.registry import build_model, model_spec
from .state_check import check_learner_state
from .strategies import Strategy, get_strategy
from .target_forward import dtype_name, plain

__all__ = [
    "Checkpointing",
    "WEIGHT_SOURCES",
    "register_weight_source",
    "restore_model_state",
    "restore_progress",
    "restore_learner",
    "to_device",
]

#: a weight source: HyperNetwork, DirectWeights, IndependentWeights or another registered kind (duck-typed)
Model = Any

#: weight sources other than the HyperNetwork that checkpoints can rebuild: ``kind -> cls(model)``; each has
#: ``kind``, ``state_extra()`` and ``load_state_extra(state)``
WEIGHT_SOURCES: dict[str, Callable[[nn.Module], Any]] = {"direct": DirectWeights}


def register_weight_source(kind: str, cls: Callable[[nn.Module], Any]) -> None:
    """Let :meth:`ContinualLearner.load` rebuild a weight source of this ``kind`` from its target module."""
    WEIGHT_SOURCES[kind] = cls


class Checkpointing(LearnerFields):
    """Mixin of :class:`~hypercl.ContinualLearner`: :meth:`state`, :meth:`save` and the classmethod :meth:`load`."""

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
            # the parameters the hypernetwork does not generate (frozen layers) decide the outputs too
            "target_frozen": self.target.frozen_parameters(),
            "dtype": dtype_name(self.target.dtype),
            "task_buffers": {t: dict(b) for t, b in self.task_buffers.items()},
            "strategy": {
                "name": self.strategy.name,
                "config": self.strategy.config(),
                "state": self.strategy.state_dict(),
            },
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
                "compile_options": plain(self.compile_options),
                "autocast_dtype": dtype_name(self.autocast_dtype),
            },
            "optimizer_state": self.optimizer.state_dict() if self.optimizer is not None else None,
            "num_classes": dict(self.heads.num_classes),
            "learned_tasks": list(self.learned_tasks),
            "history": self.history,
            "train_log": self.train_log,
            "rng": {
                "learner": self.rng.get_state(),
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
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
    ) -> Any:
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
            return cls._from_state(state, path, model, hnet, device, strategy, progress, distributed)
        except CheckpointError:
            raise
        except (RuntimeError, KeyError, ValueError, TypeError, AttributeError, IndexError, ArithmeticError) as e:
            what = f"lacks the entry {e}" if isinstance(e, KeyError) else f"does not fit: {type(e).__name__}: {e}"
            raise CheckpointError(
                one_line(
                    f"{path} {what}; pass the model it was saved with (model=/hnet=), or "
                    "remove the checkpoint and train again"
                )
            ) from e

    @classmethod
    def _from_state(
        cls,
        state: dict,
        path: Union[str, os.PathLike],
        model: Optional[nn.Module],
        hnet: Optional[Model],
        device: Union[str, torch.device, None],
        strategy: Optional[Strategy],
        progress: bool,
        distributed: Optional[DistributedContext],
    ) -> Any:
        check_learner_state(state, path)
        dtype = getattr(torch, state.get("dtype") or "", None)
        dtype = dtype if isinstance(dtype, torch.dtype) else None
        if hnet is None:
            if model is None:
                spec = state["model_spec"]
                if spec is None:
                    raise CheckpointError(
                        f"{path}: the target is not a registered hypercl model; pass model= (a fresh instance "
                        "of the same architecture) to ContinualLearner.load"
                    )
                model = build_model(spec["name"], **spec["kwargs"])
            if dtype is not None:
                model = model.to(dtype)  # the target (and so its hypernetwork) comes back in the saved dtype
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
            if dtype is not None:
                hnet = hnet.to(dtype)
            while hnet.num_tasks < state["num_tasks"]:
                hnet.add_task()
        restore_model_state(hnet, state, path)
        cfg = state["learner"]
        st = strategy or get_strategy(state["strategy"]["name"], **state["strategy"]["config"])
        learner = cast(Any, cls)(
            hnet,
            strategy=st,
            scenario=cfg["scenario"],
            optimizer=cfg["optimizer"],
            lr=cfg["lr"],
            optimizer_kwargs=cfg["optimizer_kwargs"],
            output_layout=cfg["output_layout"],
            batch_size=cfg["batch_size"],
            eval_batch_size=cfg["eval_batch_size"],
            device=device,
            seed=cfg["seed"],
            progress=progress,
            check_every=cfg["check_every"],
            distributed=distributed,
            compile=cfg.get("compile", False),
            compile_options=cfg.get("compile_options"),
            autocast_dtype=cfg.get("autocast_dtype"),
        )
        st.load_state_dict(to_device(state["strategy"]["state"], learner.device))
        restore_progress(learner, state)
        torch.set_rng_state(state["rng"]["torch"])
        if state["rng"]["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["rng"]["cuda"])
        if state["optimizer_state"] is not None:
            trainable = any(p.requires_grad for p in hnet.parameters())
            learner.optimizer = learner.make_task_optimizer() if trainable else None
            if learner.optimizer is not None:
                try:
                    learner.optimizer.load_state_dict(state["optimizer_state"])
                except (ValueError, KeyError):
                    learner.optimizer = None  # parameters were frozen after the task: a new task builds a new one
        return learner


def restore_model_state(hnet: Model, state: dict, path: Union[str, os.PathLike, None] = None) -> None:
    """Put a checkpoint's model state into a weight source built with the same config and ``num_tasks`` tasks:
    GROW mode, extra state, parameters, which parameters are frozen, the target module's own buffers and the target
    parameters the hypernetwork does not generate (frozen layers). A module that does not fit (other names or
    shapes) raises :class:`CheckpointError`; so does an older checkpoint without the frozen parameters the module
    has (they would silently stay the fresh module's)."""
    where = path if path is not None else "the checkpoint"
    if state["growing"]:
        hnet.generator.enable_growth(hnet.num_tasks)
    if state["model_kind"] != "hypernetwork":
        hnet.load_state_extra(state["model_extra"])
    hnet.load_state_dict(state["model_state"])
    for n, p in hnet.named_parameters():
        p.requires_grad_(state["requires_grad"].get(n, True))
    module = hnet.target.module
    for kind, own, saved in (
        ("buffers", dict(module.named_buffers()), state["target_buffers"]),
        ("frozen parameters", hnet.target.frozen_parameters(), state.get("target_frozen")),
    ):
        if saved is None:  # an older checkpoint
            if own:
                raise CheckpointError(
                    f"{where} does not hold the target's {kind} {sorted(own)[:4]} (written by an "
                    "older hypercl): loading would keep the fresh module's values; train again"
                )
            continue
        if set(saved) != set(own):
            raise CheckpointError(
                one_line(
                    f"{where}: the target module's {kind} do not fit: the checkpoint has {sorted(saved)[:6]}, "
                    f"the module {sorted(own)[:6]}; pass a module of the architecture it was saved with (model=)"
                )
            )
        bad = [n for n in own if tuple(own[n].shape) != tuple(saved[n].shape)]
        if bad:
            n = bad[0]
            raise CheckpointError(
                f"{where}: the target's {kind[:-1]} {n!r} has shape {tuple(saved[n].shape)} in the "
                f"checkpoint, {tuple(own[n].shape)} in the module given; pass a module of the "
                "architecture it was saved with (model=)"
            )
        with torch.no_grad():
            for n, t in saved.items():
                own[n].copy_(t)


def to_device(obj: Any, device: torch.device) -> Any:
    """``obj`` (tensors in nested dicts and lists) with every tensor moved to ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_device(v, device) for v in obj]
    return obj


def restore_progress(learner: Any, state: dict) -> None:
    """Put a saved learner's progress into ``learner``: registered classes, learned tasks, per-task buffers, the
    accuracy history, the training log and the learner's own random generator."""
    dev = learner.device
    learner.heads.num_classes = {int(k): int(v) for k, v in state["num_classes"].items()}
    learner.learned_tasks = [int(t) for t in state["learned_tasks"]]
    learner.task_buffers = {
        int(t): OrderedDict((n, b.to(dev)) for n, b in bufs.items()) for t, bufs in state["task_buffers"].items()
    }
    learner.history = {s: list(rows) for s, rows in state["history"].items()}
    learner.train_log = {int(k): v for k, v in state["train_log"].items()}
    learner.rng.set_state(state["rng"]["learner"])


def restore_learner(learner: Any, state: dict) -> Any:
    """Load ``state`` (from ``learner.state()`` of a learner built the same way) into ``learner``, in memory.

    :meth:`Checkpointing.load` rebuilds a learner from a checkpoint FILE; a replay run keeps several learners (the
    replay model and one classifier per scenario) in one checkpoint, rebuilds each from the run's configuration and
    then puts the saved state back with this function. The optimizer state is not restored: a replay run checkpoints
    between tasks, and every task builds a new optimizer.
    """
    hnet = learner.hnet
    try:
        while hnet.num_tasks < int(state["num_tasks"]):
            hnet.add_task()
        restore_model_state(hnet, state)
        learner.strategy.load_state_dict(to_device(state["strategy"]["state"], learner.device))
    except (RuntimeError, KeyError, ValueError, TypeError) as e:
        raise CheckpointError(f"the saved replay-run state does not fit this model: {e}") from e
    restore_progress(learner, state)
    learner.optimizer = None
    return learner
