"""Run a method on a benchmark for several seeds: train, evaluate CL1/CL2/CL3 after every task, checkpoint, summarise.

A hypernetwork method is trained ONCE per seed: its weights are task-specific already, and the three scenarios differ
only in evaluation. A baseline (one shared weight vector) is trained once per scenario, because the scenario decides
its output heads.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch

from ..direct import DirectWeights
from ..hypernetwork import HyperNetwork
from ..learner import ContinualLearner
from ..models import mlp
from ..scenarios import SCENARIOS, check_scenario
from .configs import HNET_METHODS

__all__ = ["build_benchmark", "build_learner", "run_seed", "summarize", "is_hnet_method"]


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


def build_learner(cfg: dict, bench: Any, scenario: str, seed: int, device: Any, progress: bool) -> ContinualLearner:
    """The learner (hypernetwork or plain network, with its strategy) a config describes."""
    torch.manual_seed(seed)
    tcfg = cfg["target"]
    train = cfg["train"]
    common = dict(optimizer=train["optimizer"], lr=train["lr"], batch_size=train["batch_size"], device=device,
                  seed=seed, progress=progress)
    if is_hnet_method(cfg["method"]):
        out = bench.total_classes if cfg["output_layout"] == "per_task" else bench.classes_per_task
        model = mlp(_input_dim(bench), tcfg["hidden"], out, tcfg["activation"])
        h = dict(cfg["hypernetwork"])
        hnet = HyperNetwork(model, generator=h.pop("generator"), **h)
        return ContinualLearner(hnet, strategy=cfg["strategy"]["name"], strategy_kwargs=cfg["strategy"]["kwargs"],
                                scenario=scenario, output_layout=cfg["output_layout"], **common)
    from .. import baselines  # noqa: F401  (registers the baseline strategies)

    out = bench.classes_per_task if scenario == "cl2" else bench.total_classes
    model = mlp(_input_dim(bench), tcfg["hidden"], out, tcfg["activation"])
    return ContinualLearner(DirectWeights(model), strategy=cfg["strategy"]["name"],
                            strategy_kwargs=cfg["strategy"]["kwargs"], scenario=scenario, **common)


def _train_sequence(
    learner: ContinualLearner,
    bench: Any,
    iterations: int,
    scenarios: Sequence[str],
    checkpoint: Optional[Path],
    on_task: Optional[Callable[[int], None]] = None,
) -> ContinualLearner:
    start = len(learner.learned_tasks)
    for t in range(start, bench.num_tasks):
        learner.fit_task(t, bench.tasks[t], iterations=iterations)
        learner.evaluate(bench.tasks, scenarios=list(scenarios))
        if checkpoint is not None:
            learner.save(checkpoint)  # atomic: a crash keeps the previous task's checkpoint
        if on_task is not None:
            on_task(t)
    return learner


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
) -> dict:
    """One seed of one method: returns per-scenario results, parameter counts and wall time (plain data)."""
    scenarios = [check_scenario(s) for s in scenarios]
    t0 = time.perf_counter()
    iterations = int(cfg["train"]["iterations"])
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
            learner = ContinualLearner.load(ckpt, device=device, progress=progress)
        else:
            learner = build_learner(cfg, bench, scen_list[0], seed, device, progress)
        _train_sequence(learner, bench, iterations, scen_list, ckpt, on_task)
        for s in scen_list:
            out["scenarios"][s] = learner.results(s)
        out["train_log"][tag] = {str(k): v for k, v in learner.train_log.items()}
        out["params"] = {
            "target": learner.target.num_params,
            "model": learner.hnet.num_params,
            "compression_ratio": learner.hnet.num_params / learner.target.num_params,
        }
    out["wall_time_s"] = time.perf_counter() - t0
    return out


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
