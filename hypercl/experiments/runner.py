"""Run a method on a benchmark for several seeds: train, evaluate CL1/CL2/CL3 after every task, checkpoint, summarise.

A hypernetwork method is trained ONCE per seed: its weights are task-specific already, and the three scenarios differ
only in evaluation. A baseline (one shared weight vector) is trained once per scenario, because the scenario decides
its output heads.

Split CIFAR (``cfg["target"]["model"] == "resnet"``): the target is a CIFAR ResNet (ResNet-32), training is by epochs
(``cfg["train"]["epochs"]``), every training batch is augmented on the device (``cfg["augment"]``, see
:mod:`hypercl.experiments.cifar`), and "scratch" trains one :class:`~hypercl.independent.IndependentWeights` network
per task.
"""

from __future__ import annotations

import math
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

from ..direct import DirectWeights
from ..distributed import is_main_process
from ..hypernetwork import HyperNetwork
from ..independent import IndependentWeights
from ..learner import ContinualLearner
from ..models import mlp
from ..scenarios import SCENARIOS, check_scenario
from .configs import HNET_METHODS

__all__ = ["build_benchmark", "build_learner", "run_seed", "run_seeds_parallel", "summarize", "is_hnet_method"]


def is_hnet_method(method: str) -> bool:
    return method in HNET_METHODS


def build_benchmark(cfg: dict, data_root: Optional[str] = None, device: Optional[torch.device] = None) -> Any:
    """The benchmark of a config, its tasks moved to ``device`` once (batches are then drawn by index)."""
    from ..data import get_benchmark

    spec = dict(cfg["benchmark"])
    name = spec.pop("name")
    bench = get_benchmark(name, root=data_root, **spec)
    if device is not None and torch.device(device).type != "cpu":
        bench.tasks = [t.to(device) for t in bench.tasks]
    return bench


def _input_dim(bench: Any) -> int:
    return int(bench.input_dim)


def _target_module(cfg: dict, bench: Any, num_outputs: int) -> torch.nn.Module:
    """The target network of a config: an MLP (MNIST) or a CIFAR ResNet (``target.model == "resnet"``)."""
    tcfg = cfg["target"]
    if tcfg.get("model") == "resnet":
        from .cifar import resnet_target

        return resnet_target(tcfg, num_outputs, in_channels=int(getattr(bench, "input_shape", (3,))[0]))
    return mlp(_input_dim(bench), tcfg["hidden"], num_outputs, tcfg["activation"])


def _train_transform(cfg: dict, bench: Any, seed: int, device: Any) -> Optional[Callable]:
    if not cfg.get("augment"):
        return None
    from .cifar import make_train_transform

    return make_train_transform(cfg["augment"], bench, seed, device)


def build_learner(cfg: dict, bench: Any, scenario: str, seed: int, device: Any, progress: bool,
                  learner_kwargs: Optional[dict] = None) -> ContinualLearner:
    """The learner (hypernetwork or plain network, with its strategy) a config describes. ``learner_kwargs`` go to
    :class:`ContinualLearner` as they are (``distributed``, ``compile``, ``autocast_dtype``)."""
    torch.manual_seed(seed)
    tcfg = cfg["target"]
    train = cfg["train"]
    common = dict(optimizer=train["optimizer"], lr=train["lr"], batch_size=train["batch_size"], device=device,
                  seed=seed, progress=progress, **(learner_kwargs or {}))
    if "eval_batch_size" in train:
        common["eval_batch_size"] = train["eval_batch_size"]
    transform = _train_transform(cfg, bench, seed, device)
    if transform is not None:
        common["train_transform"] = transform
    if cfg["method"] == "scratch":
        model = _target_module(cfg, bench, bench.classes_per_task)
        return ContinualLearner(IndependentWeights(model, seed=seed), strategy=cfg["strategy"]["name"],
                                strategy_kwargs=cfg["strategy"]["kwargs"], scenario=scenario,
                                output_layout=cfg["output_layout"], **common)
    if tcfg.get("model") == "resnet":  # CIFAR: the hypernetwork targets and the baselines share _target_module
        if is_hnet_method(cfg["method"]):
            out = bench.total_classes if cfg["output_layout"] == "per_task" else bench.classes_per_task
            h = dict(cfg["hypernetwork"])
            hnet = HyperNetwork(_target_module(cfg, bench, out), generator=h.pop("generator"), **h)
            return ContinualLearner(hnet, strategy=cfg["strategy"]["name"], strategy_kwargs=cfg["strategy"]["kwargs"],
                                    scenario=scenario, output_layout=cfg["output_layout"], **common)
        out = bench.classes_per_task if scenario == "cl2" else bench.total_classes
        return ContinualLearner(DirectWeights(_target_module(cfg, bench, out)), strategy=cfg["strategy"]["name"],
                                strategy_kwargs=cfg["strategy"]["kwargs"], scenario=scenario, **common)
    if is_hnet_method(cfg["method"]):
        out = bench.total_classes if cfg["output_layout"] == "per_task" else bench.classes_per_task
        model = mlp(_input_dim(bench), tcfg["hidden"], out, tcfg["activation"])
        h = dict(cfg["hypernetwork"])
        hnet = HyperNetwork(model, generator=h.pop("generator"), **h)
        return ContinualLearner(hnet, strategy=cfg["strategy"]["name"], strategy_kwargs=cfg["strategy"]["kwargs"],
                                scenario=scenario, output_layout=cfg["output_layout"], **common)
    out = bench.classes_per_task if scenario == "cl2" else bench.total_classes
    model = mlp(_input_dim(bench), tcfg["hidden"], out, tcfg["activation"])
    kwargs = {**cfg["strategy"].get("per_scenario_kwargs", {}).get(scenario, {}), **cfg["strategy"]["kwargs"]}
    return ContinualLearner(DirectWeights(model), strategy=cfg["strategy"]["name"], strategy_kwargs=kwargs,
                            scenario=scenario, **common)


def _train_sequence(
    learner: ContinualLearner,
    bench: Any,
    iterations: Optional[int],
    scenarios: Sequence[str],
    checkpoint: Optional[Path],
    on_task: Optional[Callable[[int], None]] = None,
    epochs: Optional[int] = None,
) -> ContinualLearner:
    start = len(learner.learned_tasks)
    for t in range(start, bench.num_tasks):
        set_task = getattr(learner.train_transform, "set_task", None)
        if set_task is not None:
            set_task(t)  # e.g. the per-task padding colour of the CIFAR augmentation
        if epochs is not None:
            learner.fit_task(t, bench.tasks[t], epochs=epochs)
        else:
            learner.fit_task(t, bench.tasks[t], iterations=iterations)
        learner.evaluate(bench.tasks, scenarios=list(scenarios))
        if checkpoint is not None and is_main_process():
            learner.save(checkpoint)  # atomic: a crash keeps the previous task's checkpoint (rank 0 writes)
        if on_task is not None:
            on_task(t)
    return learner


def _param_counts(learner: ContinualLearner) -> dict:
    """The results JSON's ``params``: target weights, model (hypernetwork or network) parameters, their ratio."""
    return {"target": learner.target.num_params, "model": learner.hnet.num_params,
            "compression_ratio": learner.hnet.num_params / learner.target.num_params}


def run_seed(
    cfg: dict,
    bench: Any,
    seed: int,
    scenarios: Sequence[str] = SCENARIOS,
    device: Any = "cpu",
    progress: bool = False,
    checkpoint_dir: Optional[Path] = None,
    resume: bool = False,
    on_task: Optional[Callable[[int], None]] = None,
    learner_kwargs: Optional[dict] = None,
) -> dict:
    """One seed of one method: returns per-scenario results, parameter counts and wall time (plain data).

    ``learner_kwargs`` (``distributed``, ``compile``, ``autocast_dtype``) go to every learner, also a resumed one."""
    learner_kwargs = dict(learner_kwargs or {})
    scenarios = [check_scenario(s) for s in scenarios]
    t0 = time.perf_counter()
    epochs = int(cfg["train"]["epochs"]) if "epochs" in cfg["train"] else None
    iterations = None if epochs is not None else int(cfg["train"]["iterations"])
    runs: list[tuple[list[str], str]]
    if is_hnet_method(cfg["method"]):
        runs = [(scenarios, "all")]
    else:
        runs = [([s], s) for s in scenarios]
    out: dict[str, Any] = {"seed": seed, "scenarios": {}, "train_log": {}}
    for scen_list, tag in runs:
        ckpt = None
        if checkpoint_dir is not None:
            ckpt = Path(checkpoint_dir) / f"{cfg['benchmark']['name']}_{cfg['method']}_{tag}_seed{seed}.pt"
        if resume and ckpt is not None and ckpt.exists():
            learner = ContinualLearner.load(ckpt, device=device, progress=progress,
                                            distributed=learner_kwargs.get("distributed"))
            for flag in ("compile", "compile_options", "autocast_dtype"):
                if flag in learner_kwargs:
                    setattr(learner, flag, learner_kwargs[flag])
            if cfg.get("augment"):  # the transform is code, not checkpoint state: rebuilt (its RNG restarts)
                learner.train_transform = _train_transform(cfg, bench, seed + 7919 * len(learner.learned_tasks),
                                                           device)
        else:
            learner = build_learner(cfg, bench, scen_list[0], seed, device, progress, learner_kwargs)
        _train_sequence(learner, bench, iterations, scen_list, ckpt, on_task, epochs=epochs)
        for s in scen_list:
            out["scenarios"][s] = learner.results(s)
        out["train_log"][tag] = {str(k): v for k, v in learner.train_log.items()}
        out["params"] = _param_counts(learner)
    out["wall_time_s"] = time.perf_counter() - t0
    return out


def run_seeds_parallel(
    cfg: dict,
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

    if not is_hnet_method(cfg["method"]):
        raise ValueError(f"--parallel-seeds trains hypernetworks; {cfg['method']!r} is a baseline")
    scenarios = [check_scenario(s) for s in scenarios]
    t0 = time.perf_counter()
    epochs = int(cfg["train"]["epochs"]) if "epochs" in cfg["train"] else None
    iterations = None if epochs is not None else int(cfg["train"]["iterations"])
    ckpts = {seed: (Path(checkpoint_dir) / f"{cfg['benchmark']['name']}_{cfg['method']}_all_seed{seed}.pt"
                    if checkpoint_dir is not None else None) for seed in seeds}
    resuming = resume and all(c is not None and c.exists() for c in ckpts.values())

    def make(seed: int) -> ContinualLearner:
        if resuming:
            return ContinualLearner.load(ckpts[seed], device=device)
        return build_learner(cfg, bench, scenarios[0], seed, device, progress=False)

    ens = SeedEnsemble.build(make, seeds)
    done = {len(m.learned_tasks) for m in ens.members}
    if len(done) != 1:
        raise ValueError(f"the checkpoints in {checkpoint_dir} are at different tasks ({sorted(done)}); resume "
                         "without --parallel-seeds, or remove them to start over")
    for t in range(done.pop(), bench.num_tasks):
        if epochs is not None:
            ens.fit_task(t, bench.tasks[t], epochs=epochs, progress=progress)
        else:
            ens.fit_task(t, bench.tasks[t], iterations=iterations, progress=progress)
        ens.evaluate(bench.tasks, scenarios=list(scenarios))
        for seed, m in zip(seeds, ens.members):
            if ckpts[seed] is not None:
                m.save(ckpts[seed])  # atomic, per seed: the files a sequential run writes
    wall = time.perf_counter() - t0
    outs = []
    for seed, m in zip(seeds, ens.members):
        outs.append({
            "seed": seed,
            "scenarios": {s: m.results(s) for s in scenarios},
            "train_log": {"all": {str(k): v for k, v in m.train_log.items()}},
            "params": _param_counts(m),
            "wall_time_s": wall,
            "parallel_seeds": len(seeds),
        })
    return outs


def _mean_std(values: list[float]) -> tuple[Optional[float], Optional[float]]:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return None, None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def summarize(seed_runs: list[dict], scenarios: Sequence[str]) -> dict:
    """Mean ± sample std over seeds of the final and "during" averages, task inference and backward transfer."""
    summary: dict[str, Any] = {}
    for s in scenarios:
        res = [r["scenarios"][s] for r in seed_runs if s in r["scenarios"]]
        final = _mean_std([r["final_average"] for r in res])
        during = _mean_std([r["during_average"] for r in res])
        bwt = _mean_std([r["backward_transfer"] for r in res])
        ti_vals = []
        for r in res:
            last = [v for v in (r["task_inference_matrix"][-1] if r["task_inference_matrix"] else []) if v is not None]
            ti_vals.append(sum(last) / len(last) if last else None)
        ti = _mean_std(ti_vals)
        n_rows = max(len(r["matrix"]) for r in res)
        n_cols = max(len(r["tasks"]) for r in res)
        mean_matrix: list[list[Optional[float]]] = []
        for i in range(n_rows):
            row = []
            for j in range(n_cols):
                vals = [r["matrix"][i][j] for r in res if i < len(r["matrix"]) and j < len(r["matrix"][i])
                        and r["matrix"][i][j] is not None]
                row.append(statistics.fmean(vals) if vals else None)
            mean_matrix.append(row)
        summary[s] = {
            "final_mean": final[0], "final_std": final[1],
            "during_mean": during[0], "during_std": during[1],
            "bwt_mean": bwt[0], "bwt_std": bwt[1],
            "task_inference_mean": ti[0], "task_inference_std": ti[1],
            "mean_matrix": mean_matrix,
            "n_seeds": len(res),
        }
    return summary
