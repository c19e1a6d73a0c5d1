"""Speed extrapolation of the seed paper's Split CIFAR-10/100 protocol (6 tasks, 200 epochs per task, batch 32).

Speed extrapolation (:func:`cifar_speed`, ``hypercl ablation --kind cifar-speed``): the time of one training step does
not depend on the pixel values, so every method is timed on random tensors of the real shape (3×32×32, labels 0..9)
with the real configuration (ResNet-32, the method's hypernetwork and regulariser, batch 32, augmentation on). For
each task ``t`` the mean step time after a warm-up is measured with ``t`` tasks already learned (the HNET/IWR
regularisers get slower with every old task), and the protocol time is

    Σ_t epochs × ⌈n_train(t) / 32⌉ × step(t)  +  Σ_t Fisher(t) (IWR methods)  +  evaluation after every task

with ``n_train = 50000`` (CIFAR-10) and ``5000`` (each CIFAR-100 split). On a GPU, ``steps=None`` times whole epochs;
on a CPU a handful of steps per task are timed and extrapolated (the JSON says which). Fisher and evaluation are
timed on a few samples and scaled linearly to 5000 Fisher samples per task and 10000 / 1000 test images per task.
"""

from __future__ import annotations

import json
import math
import statistics
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Optional, Sequence, Union

import torch

from ..checkpoint import atomic_save_figure, atomic_write_text

__all__ = ["SyntheticCIFAR", "cifar_speed", "plot_speed", "write_json", "CIFAR_TRAIN_SIZES", "CIFAR_TEST_SIZES"]

#: training / test samples of task 0 (CIFAR-10) and of every CIFAR-100 split
CIFAR_TRAIN_SIZES = (50000, 5000)
CIFAR_TEST_SIZES = (10000, 1000)


class SyntheticCIFAR:
    """Random tensors of the Split CIFAR shape: per task a small pool of train/test images (pixel content does not
    change the time of a step) plus the REAL sizes the timings are scaled to."""

    name = "split_cifar"

    def __init__(
        self,
        num_tasks: int = 6,
        train_pool: int = 256,
        test_pool: int = 256,
        device: Union[str, torch.device] = "cpu",
        seed: int = 0,
        image_size: int = 32,
    ) -> None:
        g = torch.Generator().manual_seed(seed)
        self.input_shape = (3, image_size, image_size)
        self.input_dim = 3 * image_size * image_size
        self.classes_per_task = 10
        self.tasks = []
        for t in range(num_tasks):
            self.tasks.append(
                SimpleNamespace(
                    name=f"synthetic/{t}",
                    num_classes=10,
                    class_offset=10 * t,
                    x_train=torch.randn(train_pool, *self.input_shape, generator=g).to(device),
                    y_train=torch.randint(0, 10, (train_pool,), generator=g).to(device),
                    x_test=torch.randn(test_pool, *self.input_shape, generator=g).to(device),
                    y_test=torch.randint(0, 10, (test_pool,), generator=g).to(device),
                )
            )
        self.real_train = [CIFAR_TRAIN_SIZES[0 if t == 0 else 1] for t in range(num_tasks)]
        self.real_test = [CIFAR_TEST_SIZES[0 if t == 0 else 1] for t in range(num_tasks)]

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)

    @property
    def total_classes(self) -> int:
        return 10 * self.num_tasks

    def pad_fill(self, task: int) -> torch.Tensor:
        return torch.zeros(3)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_method(
    method: str,
    bench: SyntheticCIFAR,
    device: torch.device,
    steps: Optional[int],
    warmup: int,
    epochs: int,
    overrides: dict,
    fisher_probe: int,
    seed: int,
) -> dict:
    from .configs import method_run_config
    from .runner import build_learner

    cfg = method_run_config("split_cifar", method, **overrides)
    batch = int(cfg.training.batch_size)
    is_iwr = cfg.strategy.name == "iwr"
    fisher_real = cfg.strategy.fisher_samples if is_iwr else None
    if is_iwr:  # the Fisher pass is timed separately on a few samples and scaled
        cfg = cfg.replace(strategy=cfg.strategy.with_kwargs(fisher_samples=max(1, min(fisher_probe, 8))))
    learner = build_learner(cfg, bench, "cl1", seed, device, progress=False)
    per_task = []
    for t, task in enumerate(bench.tasks):
        spe = math.ceil(bench.real_train[t] / batch)
        n_timed = spe if steps is None else max(1, int(steps))
        stamps: list[float] = []

        def cb(it: int, loss: torch.Tensor) -> None:
            _sync(device)
            stamps.append(time.perf_counter())

        set_task = getattr(learner.train_transform, "set_task", None)
        if set_task is not None:
            set_task(t)
        learner.fit_task(t, task, iterations=warmup + n_timed, callback=cb)
        durations = [b - a for a, b in zip(stamps[warmup - 1 : -1], stamps[warmup:])] if warmup >= 1 else []
        if not durations:
            raise RuntimeError("need warmup >= 1 to time steps")
        step = statistics.fmean(durations)
        rec = {
            "task": t,
            "steps_timed": len(durations),
            "step_s": step,
            "epoch_s": step * spe,
            "steps_per_epoch": spe,
            "train_s": epochs * spe * step,
        }
        if is_iwr and fisher_real:
            n = min(fisher_probe, len(task.y_train))
            learner.task_fisher(t, task, num_samples=2)  # warm-up
            _sync(device)
            t0 = time.perf_counter()
            learner.task_fisher(t, task, num_samples=n)
            _sync(device)
            rec["fisher_s"] = (time.perf_counter() - t0) / n * int(fisher_real)
        per_task.append(rec)
    # evaluation after the last task (all tasks learned), scaled to the real test sets of every evaluation
    learner.evaluate(bench, record=False)  # warm-up
    _sync(device)
    t0 = time.perf_counter()
    learner.evaluate(bench, record=False)
    _sync(device)
    t_eval = time.perf_counter() - t0
    weight_sets = bench.num_tasks if learner.task_conditioned else 1
    pool = sum(len(task.y_test) for task in bench.tasks)
    per_image_set = t_eval / (pool * weight_sets)  # a task-conditioned model runs every learned task on each batch
    eval_s = 0.0
    for t in range(bench.num_tasks):
        sets = (t + 1) if learner.task_conditioned else 1
        eval_s += per_image_set * sets * sum(bench.real_test[: t + 1])
    train_s = sum(r["train_s"] for r in per_task)
    fisher_s = sum(r.get("fisher_s", 0.0) for r in per_task)
    total = train_s + fisher_s + eval_s
    return {
        "method": method,
        "params": {
            "model": learner.hnet.num_params,
            "target": learner.target.num_params,
            "compression_ratio": learner.hnet.num_params / learner.target.num_params,
        },
        "per_task": per_task,
        "epoch_s_cifar10": per_task[0]["epoch_s"],
        "epoch_s_cifar100_split": [r["epoch_s"] for r in per_task[1:]],
        "train_s": train_s,
        "fisher_s": fisher_s,
        "eval_s": eval_s,
        "total_s": total,
        "total_h": total / 3600.0,
    }


def cifar_speed(
    methods: Sequence[str] = ("finetune", "scratch", "hnet", "hnet_iwr", "lstm_net", "lstm_net_iwr", "lstm_net_grow"),
    device: Union[str, torch.device] = "cpu",
    steps: Optional[int] = None,
    warmup: int = 2,
    epochs: int = 200,
    num_tasks: int = 6,
    fisher_probe: int = 16,
    overrides: Optional[dict] = None,
    image_size: int = 32,
    seed: int = 0,
    pool: int = 256,
    progress: Optional[Callable[[str], None]] = None,
) -> dict:
    """Time every method's training step per task on synthetic Split CIFAR data and extrapolate the protocol.

    ``steps=None`` times one full epoch of every task (for a GPU); an int times that many steps per task after
    ``warmup`` steps (a CPU) and extrapolates. ``overrides`` go to :func:`method_config` (e.g. ``resnet_depth``,
    ``chunk_size``; tests use a tiny ResNet). Returns plain data (see ``docs/ablations.md``).
    """
    dev = torch.device(device)
    bench = SyntheticCIFAR(
        num_tasks, train_pool=pool, test_pool=min(pool, 128), device=dev, seed=seed, image_size=image_size
    )
    out: dict[str, Any] = {
        "kind": "cifar-speed",
        "protocol": {
            "num_tasks": num_tasks,
            "epochs": epochs,
            "batch_size": None,
            "train_sizes": bench.real_train,
            "test_sizes": bench.real_test,
        },
        "timing": {
            "steps": "full epoch" if steps is None else int(steps),
            "warmup": int(warmup),
            "extrapolated": steps is not None,
            "fisher_probe_samples": int(fisher_probe),
            "image_size": image_size,
            "synthetic_pool": pool,
        },
        "overrides": dict(overrides or {}),
        "methods": {},
    }
    t_all = time.perf_counter()
    for m in methods:
        if progress is not None:
            progress(m)
        res = _time_method(m, bench, dev, steps, warmup, epochs, dict(overrides or {}), fisher_probe, seed)
        out["methods"][m] = res
    from .configs import method_run_config

    first = method_run_config("split_cifar", methods[0], **(overrides or {}))
    out["protocol"]["batch_size"] = int(first.training.batch_size)
    out["wall_time_s"] = time.perf_counter() - t_all
    return out


def plot_speed(result: dict, path: Path) -> Optional[Path]:
    """Bar chart of the extrapolated protocol time (hours) per method, split into training / Fisher / evaluation."""
    from ..plotting import pyplot

    plt = pyplot()
    if plt is None:
        return None
    from .report import METHOD_LABELS

    names = list(result["methods"])
    train = [result["methods"][m]["train_s"] / 3600 for m in names]
    fisher = [result["methods"][m]["fisher_s"] / 3600 for m in names]
    ev = [result["methods"][m]["eval_s"] / 3600 for m in names]
    fig, ax = plt.subplots(figsize=(1.3 * len(names) + 2.5, 3.8))
    xs = range(len(names))
    ax.bar(xs, train, label="training steps")
    ax.bar(xs, fisher, bottom=train, label="Fisher (IWR)")
    ax.bar(xs, ev, bottom=[a + b for a, b in zip(train, fisher)], label="evaluation")
    ax.set_xticks(list(xs))
    ax.set_xticklabels([METHOD_LABELS.get(m, m) for m in names], rotation=30, ha="right")
    ax.set_ylabel("hours (extrapolated)")
    p = result["protocol"]
    timing = result["timing"]
    how = "full epochs timed" if not timing["extrapolated"] else f"{timing['steps']} steps/task timed"
    ax.set_title(
        f"Split CIFAR, {p['num_tasks']} tasks × {p['epochs']} epochs, batch {p['batch_size']} "
        f"({result.get('device', '')}; {how})",
        fontsize=8,
    )
    ax.legend(fontsize=7)
    return atomic_save_figure(fig, path)


def write_json(obj: dict, path: Path) -> Path:
    return atomic_write_text(json.dumps(obj, indent=1), path)
