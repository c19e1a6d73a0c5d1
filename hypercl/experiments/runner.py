"""Run a method on a benchmark for several seeds: train, evaluate CL1/CL2/CL3 after every task, checkpoint, summarise.

A hypernetwork method is trained ONCE per seed: its weights are task-specific already, and the three scenarios differ
only in evaluation. A baseline (one shared weight vector) is trained once per scenario, because the scenario decides
its output heads.

Every function takes a :class:`~hypercl.config.RunConfig` (or its JSON form, read once with
:func:`~hypercl.config.as_config`). Split CIFAR (``cfg.target.model == "resnet"``): the target is a CIFAR ResNet
(ResNet-32), training is by epochs (``cfg.training.epochs``), every training batch is augmented on the device
(``cfg.augment``, see :mod:`hypercl.experiments.cifar`), and "scratch" trains one
:class:`~hypercl.independent.IndependentWeights` network
per task.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import torch

from ..checkpoint import CheckpointError, atomic_save, load_checkpoint
from ..config import AnyRunConfig, RunConfig, TargetConfig, as_config
from ..direct import DirectWeights
from ..distributed import is_main_process
from ..hypernetwork import HyperNetwork
from ..independent import IndependentWeights
from ..learner import ContinualLearner
from ..models import mlp
from ..off_task import OffTask
from ..scenarios import SCENARIOS, check_scenario
from .configs import HNET_METHODS
from .identity import identity_diff, run_identity
from .summary import summarize

__all__ = [
    "build_benchmark",
    "build_learner",
    "run_seed",
    "run_seeds_parallel",
    "summarize",
    "is_hnet_method",
    "run_tags",
    "checkpoint_path",
    "check_checkpoint",
    "ResumeError",
    "after_fit_task",
    "val_sets",
    "val_summary",
]


class ResumeError(ValueError):
    """A checkpoint that ``--resume`` must not continue (another run's identity), or one in the way of a new run."""


def run_tags(method: str, scenarios: Sequence[str]) -> list[tuple[list[str], str]]:
    """(scenarios, tag) per trained learner: a hypernetwork method is trained once for all its evaluation scenarios
    (tag ``"cl1+cl2+cl3"``), a baseline once per scenario (its output heads depend on it)."""
    scenarios = [check_scenario(s) for s in scenarios]
    if is_hnet_method(method):
        return [(scenarios, "+".join(scenarios))]
    return [([s], s) for s in scenarios]


Config = Union[AnyRunConfig, Mapping[str, Any]]


def checkpoint_path(cfg: Config, tag: str, seed: int, checkpoint_dir: Path) -> Path:
    """``<benchmark>_<method>_<tag>_<fingerprint>_seed<seed>.pt``: different runs never share a file."""
    cfg = as_config(cfg)
    ident = run_identity(cfg, tag, seed)
    return Path(checkpoint_dir) / f"{cfg.benchmark.name}_{cfg.method}_{tag}_{ident['fingerprint']}_seed{seed}.pt"


def check_checkpoint(cfg: Config, tag: str, seed: int, checkpoint_dir: Path, resume: bool) -> Optional[Path]:
    """Before any training: the checkpoint to continue (``--resume`` and the same identity), ``None`` to start fresh;
    :class:`ResumeError` for a finished/started run without ``--resume`` (nothing is overwritten silently), or for
    ``--resume`` when only checkpoints of another identity exist (the message names the fields that differ)."""
    cfg = as_config(cfg)
    path = checkpoint_path(cfg, tag, seed, checkpoint_dir)
    ident = run_identity(cfg, tag, seed)
    if path.exists():
        if not resume:
            try:
                load_checkpoint(path, map_location="cpu")
            except CheckpointError as e:  # damaged: say so, rather than "already holds this run"
                raise ResumeError(f"{e} (it is in the way of this run; --resume cannot continue it)") from None
            raise ResumeError(
                f"{path} already holds this run (same configuration and seed); pass --resume to "
                "continue it (a finished run is not retrained), or remove it to train again"
            )
        stored = load_checkpoint(path, map_location="cpu").get("run")
        if stored is None or stored.get("id") != ident["id"]:
            diff = identity_diff(stored or {}, ident)
            raise ResumeError(f"{path} is not a checkpoint of this run (differs in {'; '.join(diff) or 'identity'})")
        return path
    if resume:
        prefix = f"{cfg.benchmark.name}_{cfg.method}_"
        others = (
            sorted(p for p in Path(checkpoint_dir).glob(f"{prefix}*_seed{seed}.pt"))
            if Path(checkpoint_dir).is_dir()
            else []
        )
        others = [p for p in others if p.name[len(prefix) :].startswith(tag + "_")]
        if others:
            try:
                stored = load_checkpoint(others[-1], map_location="cpu").get("run") or {}
            except CheckpointError as e:
                raise ResumeError(str(e)) from None
            diff = identity_diff(stored, ident)
            raise ResumeError(
                f"--resume: no checkpoint of this run in {checkpoint_dir}; {others[-1].name} is another "
                f"run (differs in {'; '.join(diff[:6]) or 'identity'}); run without --resume to start "
                "this one, or repeat the other run's settings"
            )
    return None


def _save(
    learner: ContinualLearner, path: Path, cfg: RunConfig, tag: str, seed: int, val_history: Optional[dict] = None
) -> None:
    """:meth:`ContinualLearner.save` plus the run identity (``state["run"]``) and the validation-split rows
    (``state["val_history"]``, when ``--val-size`` > 0), atomic and digest-stamped."""
    state = {**learner.state(), "run": run_identity(cfg, tag, seed)}
    if val_history:
        state["val_history"] = val_history
    atomic_save(state, path)


def after_fit_task(learner: ContinualLearner, task_id: int, task: Any) -> None:
    """The hook the runner calls right after each task's ``fit_task`` (before that task's evaluation and checkpoint):
    ``(learner, task_id, task)``, ``task`` being the benchmark task (``task.val`` holds its validation split when
    ``--val-size`` > 0). Does nothing; per-task calibration plugs in here (pass ``after_fit=`` to :func:`run_seed`,
    or replace this function). Whatever it stores must live in the learner's state to survive ``--resume``."""


def val_sets(bench: Any) -> Optional[list]:
    """Each task's validation split ``(X, Y)`` (``--val-size`` > 0), or ``None`` when the benchmark holds none."""
    vals = [getattr(t, "val", None) for t in bench.tasks]
    return vals if vals and all(v is not None for v in vals) else None


def val_summary(rows: list) -> dict:
    """The validation-split accuracy matrix of one scenario (rows as :meth:`ContinualLearner.evaluate` gives them,
    one per learned task) and its final average (all tasks after the last) and during average (each task right after
    learning it), plus the CL2/CL3 task-inference accuracy of the last row where it exists."""
    out: dict[str, Any] = {"rows": rows}
    if rows:
        last = rows[-1]["accuracy"]
        out["final_average"] = sum(last.values()) / len(last)
        during = [
            r["accuracy"][str(r["after_task"])]
            if str(r["after_task"]) in r["accuracy"]
            else r["accuracy"][r["after_task"]]
            for r in rows
        ]
        out["during_average"] = sum(during) / len(during)
        ti = rows[-1].get("task_inference") or {}
        ti = [v for v in ti.values() if v is not None]
        if ti:
            out["final_task_inference"] = sum(ti) / len(ti)
    return out


def task_inference_of(cfg: Config) -> Optional[str]:
    """The CL2/CL3 task-inference criterion of a run (``hypercl run --task-inference``; ``None``: entropy)."""
    run = as_config(cfg)
    evaluation = run.evaluation if isinstance(run, RunConfig) else None
    return evaluation.task_inference if evaluation is not None else None


def is_hnet_method(method: str) -> bool:
    return method in HNET_METHODS


def build_benchmark(cfg: Config, data_root: Optional[str] = None, device: Optional[torch.device] = None) -> Any:
    """The benchmark of a config, its tasks moved to ``device`` once (batches are then drawn by index)."""
    from ..data import get_benchmark

    b = as_config(cfg).benchmark
    bench = get_benchmark(b.name, root=data_root, **b.options())
    if device is not None and torch.device(device).type != "cpu":
        bench.tasks = [t.to(device) for t in bench.tasks]
    return bench


def _input_dim(bench: Any) -> int:
    return int(bench.input_dim)


def target_module(target: TargetConfig, bench: Any, num_outputs: int) -> torch.nn.Module:
    """The target network of a config: an MLP (MNIST) or a CIFAR ResNet (``target.model == "resnet"``)."""
    if target.is_resnet:
        from .cifar import resnet_target

        return resnet_target(target, num_outputs, in_channels=int(getattr(bench, "input_shape", (3,))[0]))
    return mlp(_input_dim(bench), list(target.hidden or ()), num_outputs, target.activation or "relu")


def _train_transform(cfg: RunConfig, bench: Any, seed: int, device: Any) -> Optional[Callable]:
    if cfg.augment is None:
        return None
    from .cifar import make_train_transform

    return make_train_transform(cfg.augment, bench, seed, device)


def build_learner(
    cfg: Config,
    bench: Any,
    scenario: str,
    seed: int,
    device: Any,
    progress: bool,
    learner_kwargs: Optional[dict] = None,
) -> ContinualLearner:
    """The learner (hypernetwork or plain network, with its strategy) a config describes. ``learner_kwargs`` go to
    :class:`ContinualLearner` as they are (``distributed``, ``compile``, ``autocast_dtype``)."""
    cfg = as_config(cfg)
    if not isinstance(cfg, RunConfig):
        raise TypeError(
            f"build_learner builds a classifier run's learner; {cfg.method!r} is a replay run "
            "(hypercl.replay.build_replay_classifier)"
        )
    torch.manual_seed(seed)
    train = cfg.training
    common: dict[str, Any] = dict(
        optimizer=train.optimizer,
        lr=train.lr,
        batch_size=train.batch_size,
        device=device,
        seed=seed,
        progress=progress,
        **(learner_kwargs or {}),
    )
    if train.eval_batch_size is not None:
        common["eval_batch_size"] = train.eval_batch_size
    transform = _train_transform(cfg, bench, seed, device)
    if transform is not None:
        common["train_transform"] = transform
    if cfg.off_task is not None:
        common["off_task"] = OffTask(**cfg.off_task.to_json())
    strategy = cfg.strategy
    if cfg.method == "scratch":
        model = target_module(cfg.target, bench, bench.classes_per_task)
        return ContinualLearner(
            IndependentWeights(model, seed=seed),
            strategy=strategy.name,
            strategy_kwargs=strategy.kwargs_for(None),
            scenario=scenario,
            output_layout=cfg.output_layout or "shared",
            **common,
        )
    if is_hnet_method(cfg.method):
        if cfg.hypernetwork is None:
            raise ValueError(f"method {cfg.method!r} needs a hypernetwork entry in its config")
        out = bench.total_classes if cfg.output_layout == "per_task" else bench.classes_per_task
        h = cfg.hypernetwork
        hnet = HyperNetwork(target_module(cfg.target, bench, out), generator=h.generator, **h.kwargs())
        return ContinualLearner(
            hnet,
            strategy=strategy.name,
            strategy_kwargs=strategy.kwargs_for(None),
            scenario=scenario,
            output_layout=cfg.output_layout or "shared",
            **common,
        )
    out = bench.classes_per_task if scenario == "cl2" else bench.total_classes
    # the MNIST baselines take van de Ven & Tolias' per-scenario hyper-parameters; the CIFAR ones the common kwargs
    kwargs = strategy.kwargs_for(None if cfg.target.is_resnet else scenario)
    return ContinualLearner(
        DirectWeights(target_module(cfg.target, bench, out)),
        strategy=strategy.name,
        strategy_kwargs=kwargs,
        scenario=scenario,
        **common,
    )


def _run_config(cfg: Config) -> RunConfig:
    run = as_config(cfg)
    if not isinstance(run, RunConfig):
        raise TypeError(f"{run.method!r} is a replay run: train it with hypercl.replay.run_replay_seed")
    return run


def _task_length(cfg: RunConfig) -> tuple[Optional[int], Optional[int]]:
    """``(epochs, iterations)`` of a task: training by epochs when the config gives them, else by iterations."""
    if cfg.training.epochs is not None:
        return int(cfg.training.epochs), None
    if cfg.training.iterations is None:
        raise ValueError("the config's training gives neither iterations nor epochs")
    return None, int(cfg.training.iterations)


def _train_sequence(
    learner: ContinualLearner,
    bench: Any,
    iterations: Optional[int],
    scenarios: Sequence[str],
    checkpoint: Optional[Path],
    on_task: Optional[Callable[[int], None]] = None,
    epochs: Optional[int] = None,
    save: Optional[Callable[[ContinualLearner, Path], None]] = None,
    after_fit: Optional[Callable[[ContinualLearner, int, Any], None]] = None,
    val_history: Optional[dict] = None,
    task_inference: Optional[str] = None,
) -> ContinualLearner:
    start = len(learner.learned_tasks)
    vals = val_sets(bench) if val_history is not None else None
    for t in range(start, bench.num_tasks):
        set_task = getattr(learner.train_transform, "set_task", None)
        if set_task is not None:
            set_task(t)  # e.g. the per-task padding colour of the CIFAR augmentation
        if epochs is not None:
            learner.fit_task(t, bench.tasks[t], epochs=epochs)
        else:
            learner.fit_task(t, bench.tasks[t], iterations=iterations)
        (after_fit or after_fit_task)(learner, t, bench.tasks[t])
        learner.evaluate(bench.tasks, scenarios=list(scenarios), task_inference=task_inference)
        if vals is not None and val_history is not None:  # validation splits: model selection, not the test matrix
            res = learner.evaluate(vals, scenarios=list(scenarios), record=False, task_inference=task_inference)
            for s in scenarios:
                val_history.setdefault(s, []).append(
                    {
                        "after_task": t,
                        "accuracy": {str(k): v for k, v in res[s]["accuracy"].items()},
                        "task_inference": {str(k): v for k, v in res[s]["task_inference"].items()},
                    }
                )
        if checkpoint is not None and is_main_process():
            # atomic: a crash keeps the previous task's checkpoint (rank 0 writes)
            (save or (lambda lrn, p: lrn.save(p)))(learner, checkpoint)
        if on_task is not None:
            on_task(t)
    return learner


def _param_counts(learner: ContinualLearner) -> dict:
    """The results JSON's ``params``: target weights, model (hypernetwork or network) parameters, their ratio."""
    return {
        "target": learner.target.num_params,
        "model": learner.hnet.num_params,
        "compression_ratio": learner.hnet.num_params / learner.target.num_params,
    }


def run_seed(
    cfg: Config,
    bench: Any,
    seed: int,
    scenarios: Sequence[str] = SCENARIOS,
    device: Any = "cpu",
    progress: bool = False,
    checkpoint_dir: Optional[Path] = None,
    resume: bool = False,
    on_task: Optional[Callable[[int], None]] = None,
    learner_kwargs: Optional[dict] = None,
    after_fit: Optional[Callable[[ContinualLearner, int, Any], None]] = None,
) -> dict:
    """One seed of one method: returns per-scenario results, parameter counts and wall time (plain data).

    ``learner_kwargs`` (``distributed``, ``compile``, ``autocast_dtype``) go to every learner, also a resumed one.
    ``after_fit(learner, task_id, task)`` runs after each task's ``fit_task`` (default :func:`after_fit_task`).
    With validation splits (``--val-size`` > 0) the result holds ``"val"``: per scenario the validation-split
    accuracy rows and their final/during averages (:func:`val_summary`)."""
    cfg = _run_config(cfg)
    learner_kwargs = dict(learner_kwargs or {})
    scenarios = [check_scenario(s) for s in scenarios]
    t0 = time.perf_counter()
    epochs, iterations = _task_length(cfg)
    runs = run_tags(cfg.method, scenarios)
    out: dict[str, Any] = {"seed": seed, "scenarios": {}, "train_log": {}, "identity": {}}
    for scen_list, tag in runs:
        ckpt = None
        if checkpoint_dir is not None:
            ckpt = checkpoint_path(cfg, tag, seed, checkpoint_dir)
        out["identity"][tag] = run_identity(cfg, tag, seed)["id"]
        val_history: Optional[dict] = {} if val_sets(bench) is not None else None
        if resume and ckpt is not None and ckpt.exists():
            check_checkpoint(cfg, tag, seed, ckpt.parent, resume=True)  # same identity, else ResumeError
            if val_history is not None:
                val_history.update(load_checkpoint(ckpt, map_location="cpu").get("val_history") or {})
            try:
                learner = ContinualLearner.load(
                    ckpt, device=device, progress=progress, distributed=learner_kwargs.get("distributed")
                )
            except KeyError as e:  # digest-valid but not a complete learner state (another tool, an older layout)
                raise CheckpointError(f"{ckpt} lacks the entry {e}; remove it to train this seed again") from None
            for flag in ("compile", "compile_options", "autocast_dtype"):
                if flag in learner_kwargs:
                    setattr(learner, flag, learner_kwargs[flag])
            if cfg.augment is not None:  # the transform is code, not checkpoint state: rebuilt (its RNG restarts)
                learner.train_transform = _train_transform(cfg, bench, seed + 7919 * len(learner.learned_tasks), device)
        else:
            learner = build_learner(cfg, bench, scen_list[0], seed, device, progress, learner_kwargs)
        save = partial(_save, cfg=cfg, tag=tag, seed=seed, val_history=val_history)
        _train_sequence(
            learner,
            bench,
            iterations,
            scen_list,
            ckpt,
            on_task,
            epochs=epochs,
            save=save,
            after_fit=after_fit,
            val_history=val_history,
            task_inference=task_inference_of(cfg),
        )
        for s in scen_list:
            out["scenarios"][s] = learner.results(s)
            if val_history is not None:
                out.setdefault("val", {})[s] = val_summary(val_history.get(s, []))
        out["train_log"][tag] = {str(k): v for k, v in learner.train_log.items()}
        out["params"] = _param_counts(learner)
    out["wall_time_s"] = time.perf_counter() - t0
    return out


def run_seeds_parallel(
    cfg: Config,
    bench: Any,
    seeds: Sequence[int],
    scenarios: Sequence[str] = SCENARIOS,
    device: Any = "cpu",
    progress: bool = False,
    checkpoint_dir: Optional[Path] = None,
    resume: bool = False,
) -> list[dict]:
    """All seeds of one hypernetwork method trained as ONE ensemble (:class:`~hypercl.ensemble.SeedEnsemble`).

    Each seed's result, checkpoint file and JSON entry are those :func:`run_seed` writes (the same numbers up to
    floating-point summation order); ``wall_time_s`` of every seed is the ensemble's wall time.
    """
    from ..ensemble import SeedEnsemble

    cfg = _run_config(cfg)
    if not is_hnet_method(cfg.method):
        raise ValueError(f"--parallel-seeds trains hypernetworks; {cfg.method!r} is a baseline")
    scenarios = [check_scenario(s) for s in scenarios]
    t0 = time.perf_counter()
    epochs, iterations = _task_length(cfg)
    tag = run_tags(cfg.method, scenarios)[0][1]
    ckpts = (
        {seed: checkpoint_path(cfg, tag, seed, checkpoint_dir) for seed in seeds} if checkpoint_dir is not None else {}
    )
    resuming = resume and bool(ckpts) and all(c.exists() for c in ckpts.values())
    if resuming:
        for seed in seeds:
            check_checkpoint(cfg, tag, seed, ckpts[seed].parent, resume=True)

    def make(seed: int) -> ContinualLearner:
        if resuming:
            return ContinualLearner.load(ckpts[seed], device=device)
        return build_learner(cfg, bench, scenarios[0], seed, device, progress=False)

    ens = SeedEnsemble.build(make, seeds)
    done = {len(m.learned_tasks) for m in ens.members}
    if len(done) != 1:
        raise ValueError(
            f"the checkpoints in {checkpoint_dir} are at different tasks ({sorted(done)}); resume "
            "without --parallel-seeds, or remove them to start over"
        )
    for t in range(done.pop(), bench.num_tasks):
        if epochs is not None:
            ens.fit_task(t, bench.tasks[t], epochs=epochs, progress=progress)
        else:
            ens.fit_task(t, bench.tasks[t], iterations=iterations, progress=progress)
        ens.evaluate(bench.tasks, scenarios=list(scenarios))
        for seed, m in zip(seeds, ens.members):
            if seed in ckpts:
                _save(m, ckpts[seed], cfg, tag, seed)  # atomic, per seed: the files a sequential run writes
    wall = time.perf_counter() - t0
    outs = []
    for seed, m in zip(seeds, ens.members):
        outs.append(
            {
                "seed": seed,
                "scenarios": {s: m.results(s) for s in scenarios},
                "train_log": {tag: {str(k): v for k, v in m.train_log.items()}},
                "identity": {tag: run_identity(cfg, tag, seed)["id"]},
                "params": _param_counts(m),
                "wall_time_s": wall,
                "parallel_seeds": len(seeds),
            }
        )
    return outs
