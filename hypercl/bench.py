"""``hypercl bench``: speed of hypernetwork training and evaluation as RATIOS measured in one process.

Every number is a median over many steps after a warm-up; ratios compare steps timed in the same run on the same
batch, so they are meaningful on a noisy machine where absolute times are not.
"""

from __future__ import annotations

import json
import statistics
import time
import warnings
from functools import partial
from types import SimpleNamespace
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F

from .allocator import keep_freed_memory
from .checkpoint import atomic_write_text
from .devices import device_name
from .experiments.configs import method_run_config
from .experiments.runner import build_learner
from .learner import ContinualLearner
from .memory import peak_bytes
from .strategies import Grow, HNETRegularizer, IWRegularizer
from .target import wrap

__all__ = [
    "interleaved_medians",
    "median_time",
    "prepare_learner",
    "bench_training_steps",
    "bench_cl3_eval",
    "bench_task_scaling",
    "bench_long_task_scaling",
    "model_state_bytes",
    "bench_flags",
    "bench_recurrent_target",
    "main",
]

BENCH_METHODS = ("hnet", "hnet_iwr", "lstm_net", "lstm_net_iwr", "lstm_net_grow")
SHAPES = {  # benchmark -> (input dim, classes per task, total classes of the multi-head layout)
    "split_mnist": (784, 2, 10),
    "permuted_mnist": (1024, 10, 100),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_medians(
    fns: dict[str, Callable[[], Any]], steps: int, warmup: int, device: torch.device
) -> dict[str, float]:
    """Median wall time in milliseconds of each function, timed ROUND-ROBIN (a, b, c, a, b, c, ...) so that a change
    of machine load during the measurement hits every function alike and their ratios stay meaningful. The device
    is synchronised around each call."""
    return {k: statistics.median(v) for k, v in interleaved_times(fns, steps, warmup, device).items()}


def interleaved_times(
    fns: dict[str, Callable[[], Any]], steps: int, warmup: int, device: torch.device
) -> dict[str, list[float]]:
    """Every timed call's wall time in milliseconds, per function, timed round-robin as :func:`interleaved_medians`."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(steps):
        for k, fn in fns.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[k].append((time.perf_counter() - t0) * 1e3)
    return times


def median_time(fn: Callable[[], Any], steps: int, warmup: int, device: torch.device) -> float:
    """Median wall time of ``fn`` in milliseconds (device synchronised around each call)."""
    return interleaved_medians({"fn": fn}, steps, warmup, device)["fn"]


def _fake_bench(benchmark: str, num_tasks: int) -> SimpleNamespace:
    d, k, _ = SHAPES[benchmark]
    return SimpleNamespace(input_dim=d, classes_per_task=k, total_classes=k * num_tasks, num_tasks=num_tasks)


def prepare_learner(
    benchmark: str,
    method: str,
    task: int,
    device: torch.device,
    overrides: Optional[dict] = None,
    num_tasks: Optional[int] = None,
) -> ContinualLearner:
    """A learner in the state it has while learning task ``task`` (1-based): ``task - 1`` earlier tasks registered
    and finished (regulariser targets stored, IWR Fisher vectors set, GROW weights frozen) without training them.
    ``num_tasks``: the benchmark's task count (the size of a multi-head output layer; default the config's)."""
    cfg = method_run_config(benchmark, method, **(overrides or {}))
    fake = _fake_bench(benchmark, num_tasks or max(task, 5 if benchmark == "split_mnist" else 10))
    learner = build_learner(cfg, fake, "cl1", seed=0, device=device, progress=False)
    k = fake.classes_per_task
    # the output regularisers' before_task only matters for the current task (it replaces the previous targets)
    regulariser = isinstance(learner.strategy, HNETRegularizer)
    for t in range(task - 1):
        learner.register_task(t, k)
        if not regulariser:
            learner.strategy.before_task(learner, t)
        learner.hnet.task_embeddings[t].requires_grad_(False)
        if isinstance(learner.strategy, IWRegularizer):
            learner.strategy.fisher[t] = torch.rand(learner.target.num_params, device=device) * 2
        elif isinstance(learner.strategy, Grow):
            learner.strategy.after_task(learner, t, None)
        learner.learned_tasks.append(t)
    current = task - 1
    learner.register_task(current, k)
    learner.strategy.before_task(learner, current)
    learner.optimizer = learner.make_task_optimizer()
    learner.hnet.train()
    learner.target.train()
    return learner


def _batch(benchmark: str, batch: int, k: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, SHAPES[benchmark][0], generator=g).to(device)
    y = torch.randint(0, k, (batch,), generator=g).to(device)
    return x, y


def _plain_step_fn(learner: ContinualLearner, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    """The floor: a plain training step of the same target network (Adam on its own weights) on the same batch."""
    model = learner.target.module
    own = list(model.parameters())
    for p in own:
        p.requires_grad_(True)
    opt = torch.optim.Adam(own, lr=1e-3, fused=True)  # the same fused Adam the learner uses
    start, stop = learner.train_units(learner.learned_tasks[-1] + 1 if learner.learned_tasks else 0)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x)[:, start:stop], y).backward()
        opt.step()

    return step


def bench_training_steps(
    benchmark: str,
    task: int,
    device: torch.device,
    steps: int,
    warmup: int,
    batch: int = 128,
    methods: tuple[str, ...] = BENCH_METHODS,
    overrides: Optional[dict] = None,
) -> list[dict]:
    """Per method: hypernetwork training step vs plain target step, and vs the sum of its parts."""
    rows = []
    for method in methods:
        learner = prepare_learner(benchmark, method, task, device, overrides)
        t = task - 1
        x, y = _batch(benchmark, batch, learner.heads.num_classes[t], device)
        hnet = learner.hnet
        old = list(learner.learned_tasks)
        regularised = bool(old) and hasattr(learner.strategy, "targets")

        def gen_new() -> None:
            hnet.generate_flat([t]).sum().backward()

        def gen_old() -> None:
            hnet.generate_flat(old).sum().backward()

        fns = {"step": lambda: learner.train_step(t, x, y), "plain": _plain_step_fn(learner, x, y), "new": gen_new}
        if regularised:
            fns["old"] = gen_old
        ms = interleaved_medians(fns, steps, warmup, device)
        hnet_ms, plain_ms, gen_new_ms, gen_old_ms = ms["step"], ms["plain"], ms["new"], ms.get("old", 0.0)
        hnet.zero_grad(set_to_none=True)
        parts = plain_ms + gen_new_ms + gen_old_ms
        rows.append(
            {
                "benchmark": benchmark,
                "task": task,
                "method": method,
                "hnet_step_ms": hnet_ms,
                "plain_step_ms": plain_ms,
                "generator_new_ms": gen_new_ms,
                "generator_old_ms": gen_old_ms,
                "ratio_vs_plain": hnet_ms / plain_ms,
                "ratio_vs_parts": hnet_ms / parts,
                "hnet_params": hnet.num_params,
                "target_params": learner.target.num_params,
            }
        )
    return rows


def bench_cl3_eval(
    benchmark: str,
    num_tasks: int,
    device: torch.device,
    steps: int,
    warmup: int,
    batch: int = 1000,
    method: str = "lstm_net",
) -> dict:
    """CL3 evaluation of ``num_tasks`` tasks on one test batch: one batched call (generate all + vmap) vs a loop."""
    learner = prepare_learner(benchmark, method, num_tasks, device)
    learner.learned_tasks.append(num_tasks - 1)
    x, _ = _batch(benchmark, batch, 2, device)
    ids = list(range(num_tasks))
    target, hnet = learner.target, learner.hnet
    target.eval()

    @torch.no_grad()
    def batched() -> None:
        target.batched(hnet.generate(ids), x)

    @torch.no_grad()
    def looped() -> None:
        for i in ids:
            target(hnet(i), x)

    @torch.no_grad()
    def single() -> None:
        target(hnet(0), x)

    ms = interleaved_medians({"batched": batched, "loop": looped, "one": single}, steps, warmup, device)
    b, lo, one = ms["batched"], ms["loop"], ms["one"]
    return {
        "benchmark": benchmark,
        "tasks": num_tasks,
        "batched_ms": b,
        "loop_ms": lo,
        "one_task_ms": one,
        "loop_over_batched": lo / b,
        "batched_over_one_task": b / one,
    }


def bench_task_scaling(
    benchmark: str,
    max_task: int,
    device: torch.device,
    steps: int,
    warmup: int,
    methods: tuple[str, ...] = ("lstm_net", "lstm_net_iwr", "lstm_net_grow"),
) -> list[dict]:
    """Training-step time while learning task 1..max_task: flat for GROW, growing for the regularisers."""
    rows = []
    for method in methods:
        for task in range(1, max_task + 1):
            learner = prepare_learner(benchmark, method, task, device)
            x, y = _batch(benchmark, 128, learner.heads.num_classes[task - 1], device)
            ms = median_time(lambda: learner.train_step(task - 1, x, y), steps, warmup, device)
            rows.append({"method": method, "task": task, "step_ms": ms})
    return rows


#: the long task-scaling run: the tasks timed, and (label, method, config overrides) per row
SCALING_TASKS = (1, 10, 50, 100)
_K8 = {"reg_tasks_per_step": 8, "reg_targets": "online"}
SCALING_VARIANTS: tuple[tuple[str, str, dict], ...] = (
    ("hnet K=all", "hnet", {}),
    ("hnet K=8 online", "hnet", _K8),
    ("lstm_net K=all", "lstm_net", {}),
    ("lstm_net K=8 online", "lstm_net", _K8),
    ("lstm_net_iwr K=all", "lstm_net_iwr", {}),
    ("lstm_net_iwr K=8 online", "lstm_net_iwr", _K8),
    ("lstm_net_grow", "lstm_net_grow", {}),
)


def _tensor_bytes(tensors: Any) -> int:
    seen: dict[int, int] = {}
    for t in tensors:
        if torch.is_tensor(t) and t.device.type != "meta":
            st = t.untyped_storage()
            seen[st.data_ptr()] = st.nbytes()
    return sum(seen.values())


def model_state_bytes(learner: ContinualLearner) -> dict[str, int]:
    """Bytes held between steps: hypernetwork parameters and buffers, the regulariser's tensors (targets, their
    raw-space copies, the frozen copy, IWR's Fisher vectors), and the optimizer's state."""
    st = learner.strategy
    opt = learner.optimizer
    return {
        "model": _tensor_bytes(list(learner.hnet.parameters()) + list(learner.hnet.buffers())),
        "regulariser": st.held_bytes() if isinstance(st, HNETRegularizer) else 0,
        "optimizer": _tensor_bytes(v for state in (opt.state.values() if opt else ()) for v in state.values()),
    }


def bench_long_task_scaling(
    benchmark: str,
    device: torch.device,
    steps: int,
    warmup: int,
    tasks: tuple[int, ...] = SCALING_TASKS,
    variants: tuple[tuple[str, str, dict], ...] = SCALING_VARIANTS,
) -> list[dict]:
    """Training step time and memory while learning task T for each T in ``tasks``, per variant, on synthetic
    state (:func:`prepare_learner`: earlier tasks registered, targets/Fisher set, nothing trained). The steps of
    one variant at all T are timed ROUND-ROBIN, so their ratio to the task-1 step is measured in one run. The
    target has the multi-head layout of ``max(tasks)`` tasks at every T (the same N throughout).

    Memory per row: ``step_peak_mb``, the peak of the tensors one training step allocates above the held state
    (:func:`hypercl.memory.peak_bytes`); ``state_mb``, the held state (:func:`model_state_bytes`)."""
    rows = []
    for label, method, overrides in variants:
        learners = {T: prepare_learner(benchmark, method, T, device, overrides, num_tasks=max(tasks)) for T in tasks}
        fns: dict[str, Callable[[], Any]] = {}
        for T, learner in learners.items():
            x, y = _batch(benchmark, 128, learner.heads.num_classes[T - 1], device)
            fns[str(T)] = partial(learner.train_step, T - 1, x, y)
        times = interleaved_times(fns, steps, warmup, device)
        ms = {k: statistics.median(v) for k, v in times.items()}
        for T, learner in learners.items():
            peak = peak_bytes(fns[str(T)], device)
            held = model_state_bytes(learner)
            v = times[str(T)]
            std = statistics.stdev(v) if len(v) > 1 else float("nan")
            rows.append(
                {
                    "variant": label,
                    "method": method,
                    "task": T,
                    "step_ms": ms[str(T)],
                    "step_n": len(v),
                    "step_mean_ms": statistics.fmean(v),
                    "step_std_ms": std,
                    "step_se_ms": std / len(v) ** 0.5,
                    "ratio_vs_task1": ms[str(T)] / ms[str(tasks[0])],
                    "step_peak_mb": peak / 2**20,
                    "state_mb": sum(held.values()) / 2**20,
                    "regulariser_mb": held["regulariser"] / 2**20,
                    "model_mb": held["model"] / 2**20,
                    "optimizer_mb": held["optimizer"] / 2**20,
                    "target_params": learner.target.num_params,
                    "hnet_params": learner.hnet.num_params,
                    "reg_tasks_per_step": overrides.get("reg_tasks_per_step"),
                    "targets": overrides.get("reg_targets", "stored") if method != "lstm_net_grow" else None,
                }
            )
        del learners, fns
    return rows


def plot_long_task_scaling(rows: list[dict], path: Any, title: str) -> None:
    """Step time (× the task-1 step) and memory (held state + one step's peak) against T, one line per variant."""
    from .checkpoint import atomic_save_figure
    from .plotting import pyplot

    plt = pyplot()
    if plt is None:
        raise ImportError("the long-task plot needs matplotlib: pip install 'hypercl[plot]'")

    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.2))
    for label in dict.fromkeys(r["variant"] for r in rows):
        rs = [r for r in rows if r["variant"] == label]
        style = "--" if "K=8" in label else "-"
        a.plot([r["task"] for r in rs], [r["ratio_vs_task1"] for r in rs], style, marker="o", label=label)
        b.plot([r["task"] for r in rs], [r["state_mb"] + r["step_peak_mb"] for r in rs], style, marker="o", label=label)
    a.set(xlabel="task T being learned", ylabel="step time / step time at task 1", title=title)
    b.set(xlabel="task T being learned", ylabel="MB (held state + one step's peak)", yscale="log", title="memory")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_save_figure(fig, path)


def _print_long_scaling(rows: list[dict], header: str) -> None:
    print(f"\n{header}")
    print(
        _fmt_rows(
            rows,
            [
                ("variant", "variant", ""),
                ("task", "T", "d"),
                ("step_ms", "step ms", ".1f"),
                ("step_mean_ms", "mean", ".1f"),
                ("step_std_ms", "std", ".1f"),
                ("step_n", "n", "d"),
                ("ratio_vs_task1", "× task 1", ".2f"),
                ("step_peak_mb", "step peak MB", ".1f"),
                ("state_mb", "held MB", ".1f"),
                ("regulariser_mb", "of which regulariser MB", ".1f"),
            ],
        )
    )
    by = {(r["variant"], r["task"]): r for r in rows}
    for label in dict.fromkeys(r["variant"] for r in rows):
        ts = sorted(t for v, t in by if v == label)
        if len(ts) >= 3:
            hi, mid = by[(label, ts[-1])], by[(label, ts[1])]
            print(
                f"{label}: step at T={ts[-1]} = {hi['step_ms'] / mid['step_ms']:.2f}x the step at T={ts[1]}"
                + (
                    f"; held memory per added task "
                    f"{(hi['state_mb'] - by[(label, ts[0])]['state_mb']) / (ts[-1] - ts[0]):.2f} MB"
                    if "grow" in label
                    else ""
                )
            )


#: bench_flags variants: name -> learner attributes
FLAG_VARIANTS: dict[str, dict[str, Any]] = {
    "off": {},
    "compile": {"compile": True},
    "bf16": {"autocast_dtype": torch.bfloat16},
    "compile+bf16": {"compile": True, "autocast_dtype": torch.bfloat16},
}


def bench_parallel_seeds(
    device: torch.device,
    steps: int,
    warmup: int,
    seeds: int = 5,
    methods: tuple[str, ...] = ("hnet", "lstm_net_iwr", "lstm_net_grow"),
    benchmark: str = "split_mnist",
) -> list[dict]:
    """``--parallel-seeds``: one ensemble step of ``seeds`` seeds against one seed's ordinary training step, at
    task 2 of the benchmark's config (one old task: the regulariser is on), timed round-robin."""
    from .ensemble import SeedEnsemble

    rows = []
    d, k, _ = SHAPES[benchmark]
    g = torch.Generator().manual_seed(0)
    x = torch.rand(seeds, 128, d, generator=g).to(device)
    y = torch.randint(0, k, (seeds, 128), generator=g).to(device)
    for method in methods:
        cfg = method_run_config(benchmark, method)
        fake = _fake_bench(benchmark, 2)

        def make(seed: int) -> ContinualLearner:
            return build_learner(cfg, fake, "cl1", seed, device, False)

        ens = SeedEnsemble.build(make, list(range(seeds)))
        ens.fit_task(0, (x[0, :32].cpu(), y[0, :32].cpu()), iterations=1, num_classes=k)
        ens.begin_task(1, k)
        learner = prepare_learner(benchmark, method, 2, device)
        ms = interleaved_medians(
            {"ensemble": lambda: ens.train_step(x, y), "one": lambda: learner.train_step(1, x[0], y[0])},
            steps,
            warmup,
            device,
        )
        rows.append(
            {
                "benchmark": benchmark,
                "method": method,
                "seeds": seeds,
                "ensemble_step_ms": ms["ensemble"],
                "one_seed_step_ms": ms["one"],
                "ratio": ms["ensemble"] / ms["one"],
            }
        )
    return rows


class _RecurrentClassifier(torch.nn.Module):
    """The recurrent target of :func:`bench_recurrent_target`: an LSTM over a sequence, a linear head."""

    def __init__(self, d: int = 28, hidden: int = 64, classes: int = 10) -> None:
        super().__init__()
        self.rnn = torch.nn.LSTM(d, hidden, batch_first=True)
        self.out = torch.nn.Linear(hidden, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.rnn(x)[0][:, -1])


def bench_recurrent_target(
    device: torch.device, steps: int, warmup: int, tasks: int = 5, batch: int = 256, fisher_batch: int = 64
) -> dict:
    """The vmap fallback of a recurrent target (an LSTM over 28 steps of 28 features, MNIST rows as a sequence):
    ``target.batched`` over ``tasks`` weight sets (``aten::lstm`` has no batching rule: a loop over the weight sets)
    against ONE weight set's forward, and the per-sample gradients of eq. 4 on ``fisher_batch`` samples as the
    fallback's loop over samples against ``vmap(grad)`` (which runs for ``nn.LSTM`` through torch's own slow
    per-op fallback)."""
    from .fisher import diagonal_empirical_fisher

    torch.manual_seed(0)
    target = wrap(_RecurrentClassifier()).to(device).eval()
    stacked = {n: torch.randn(tasks, *s, device=device) * 0.1 for n, s in target.param_shapes.items()}
    one = {n: v[0] for n, v in stacked.items()}
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 28, 28, generator=g).to(device)
    y = torch.randint(0, 10, (batch,), generator=g).to(device)
    xf, yf = x[:fisher_batch], y[:fisher_batch]
    key = ("per-sample gradients (Fisher, eq. 4)", False)
    # an MLP of about the LSTM's size (784-30-10: 23.9k weights vs 24.7k) on the same inputs keeps the vmapped path
    mlp = (
        wrap(
            torch.nn.Sequential(
                torch.nn.Flatten(), torch.nn.Linear(28 * 28, 30), torch.nn.ReLU(), torch.nn.Linear(30, 10)
            )
        )
        .to(device)
        .eval()
    )
    mlp_stacked = {n: torch.randn(tasks, *s, device=device) * 0.1 for n, s in mlp.param_shapes.items()}
    mlp_one = {n: v[0] for n, v in mlp_stacked.items()}

    def fisher(vmapped: bool) -> Callable[[], None]:
        def run() -> None:
            target.vmap_ok[key] = vmapped
            diagonal_empirical_fisher(target, one, [(xf, yf)], F.cross_entropy)

        return run

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.no_grad():
            target.batched(stacked, x)  # detects the missing batching rule once
        ms = interleaved_medians(
            {
                "batched": lambda: target.batched(stacked, x),
                "one": lambda: target(one, x),
                "mlp_batched": lambda: mlp.batched(mlp_stacked, x),
                "mlp_one": lambda: mlp(mlp_one, x),
                "fisher_loop": fisher(False),
                "fisher_vmap": fisher(True),
            },
            steps,
            warmup,
            device,
        )
    return {
        "tasks": tasks,
        "batch": batch,
        "fallback": target.vmap_fallback_reason.get(("weight sets (target.batched)", False)),
        "batched_fallback_ms": ms["batched"],
        "one_weight_set_ms": ms["one"],
        "batched_over_one": ms["batched"] / ms["one"],
        "params": target.num_params,
        "mlp_params": mlp.num_params,
        "mlp_batched_ms": ms["mlp_batched"],
        "mlp_one_weight_set_ms": ms["mlp_one"],
        "mlp_batched_over_one": ms["mlp_batched"] / ms["mlp_one"],
        "lstm_over_mlp_batched": ms["batched"] / ms["mlp_batched"],
        "fisher_batch": fisher_batch,
        "fisher_loop_ms": ms["fisher_loop"],
        "fisher_vmap_ms": ms["fisher_vmap"],
        "fisher_loop_over_vmap": ms["fisher_loop"] / ms["fisher_vmap"],
    }


def _short_error(text: str, limit: int = 2000) -> str:
    return text if len(text) <= limit else text[:limit] + " [...]"


def bench_flags(
    device: torch.device,
    steps: int,
    warmup: int,
    task: int = 5,
    benchmark: str = "split_mnist",
    method: str = "lstm_net",
) -> dict:
    """The training step with ``torch.compile`` (of the target forward, default inductor backend) off/on and bf16
    autocast off/on, as ratios to the plain step timed round-robin in this run (LSTM_NET, Split MNIST config,
    while learning task ``task``). A variant whose compilation fails is left out of the timing and its error string
    recorded under ``errors`` (the learner would fall back to the eager forward)."""
    t = task - 1
    fns: dict[str, Callable[[], Any]] = {}
    errors: dict[str, str] = {}
    compile_s: dict[str, float] = {}
    for name, flags in FLAG_VARIANTS.items():
        learner = prepare_learner(benchmark, method, task, device)
        for attr, value in flags.items():
            setattr(learner, attr, value)
        x, y = _batch(benchmark, 128, learner.heads.num_classes[t], device)
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # the fallback warning: recorded below instead
                learner.train_step(t, x, y)  # the first step compiles (forward and backward graphs)
            _sync(device)
        except Exception as e:
            errors[name] = _short_error(f"{type(e).__name__}: {e}")
            continue
        if learner.compile_error is not None:
            errors[name] = _short_error(learner.compile_error)
            continue
        if learner.compile:
            compile_s[name] = time.perf_counter() - t0
        fns[name] = partial(learner.train_step, t, x, y)
    ms = interleaved_medians(fns, steps, warmup, device) if fns else {}
    base = ms.get("off")
    rows = [
        {
            "variant": name,
            "compile": bool(FLAG_VARIANTS[name].get("compile", False)),
            "bf16": "autocast_dtype" in FLAG_VARIANTS[name],
            "step_ms": v,
            "ratio_vs_off": v / base if base else None,
            "first_step_s": compile_s.get(name),
        }
        for name, v in ms.items()
    ]
    out: dict[str, Any] = {"benchmark": benchmark, "method": method, "task": task, "rows": rows, "errors": errors}
    if device.type != "cuda":
        out["note"] = (
            "bf16 autocast and torch.compile are meant for CUDA; on the CPU these ratios are a smoke test "
            "(bf16 matmuls need AMX/AVX512-BF16 to be fast, inductor compiles C++)"
        )
    return out


def bench_hypnettorch(device: torch.device, steps: int, warmup: int, task: int = 5) -> Optional[dict]:
    """The reference library at the identical HNET Split MNIST config, if it is installed (never a dependency)."""
    try:
        from hypnettorch.hnets import ChunkedHMLP
        from hypnettorch.mnets import MLP
        from hypnettorch.utils.hnet_regularizer import calc_fix_target_reg
    except Exception as e:  # not installed, or an incompatible version
        return {"skipped": f"hypnettorch not available ({type(e).__name__}: {e})"}
    mnet = MLP(n_in=784, n_out=10, hidden_layers=(400, 400), no_weights=True).to(device)
    hnet = ChunkedHMLP(
        mnet.param_shapes,
        layers=(10, 10),
        chunk_size=42000,
        cond_chunk_embs=False,
        chunk_emb_size=96,
        cond_in_size=96,
        num_cond_embs=task,
    ).to(device)
    opt = torch.optim.Adam(hnet.parameters(), lr=1e-3)
    old = list(range(task - 1))
    with torch.no_grad():
        targets = [[w.detach().clone() for w in hnet.forward(cond_id=i)] for i in old]
    x, y = _batch("split_mnist", 128, 2, device)

    def step() -> None:
        opt.zero_grad()
        w = hnet.forward(cond_id=task - 1)
        loss = F.cross_entropy(mnet.forward(x, weights=w)[:, 8:10], y)
        loss.backward(retain_graph=True, create_graph=False)
        reg = calc_fix_target_reg(
            hnet, task - 1, targets=targets, mnet=mnet, prev_theta=None, prev_task_embs=None, batch_size=None
        )
        (0.01 * reg).backward()
        opt.step()

    # ours at the same configuration and state, timed round-robin with the reference step
    ours = prepare_learner("split_mnist", "hnet", task, device, overrides={"strategy_kwargs": {"lookahead": False}})
    ox, oy = _batch("split_mnist", 128, ours.heads.num_classes[task - 1], device)
    ms = interleaved_medians(
        {"hypnettorch": step, "ours": lambda: ours.train_step(task - 1, ox, oy), "plain": _plain_step_fn(ours, ox, oy)},
        steps,
        warmup,
        device,
    )
    from importlib.metadata import version

    return {
        "hypnettorch_step_ms": ms["hypnettorch"],
        "version": version("hypnettorch"),
        "hnet_params": hnet.num_params,
        "ours_hnet_params": ours.hnet.num_params,
        "ours_hnet_no_lookahead_step_ms": ms["ours"],
        "ours_plain_step_ms": ms["plain"],
        "speedup": ms["hypnettorch"] / ms["ours"],
    }


def _fmt_rows(rows: list[dict], cols: list[tuple[str, str, str]]) -> str:
    header = [c[1] for c in cols]
    body = [[format(r[c[0]], c[2]) if isinstance(r[c[0]], (int, float)) else str(r[c[0]]) for c in cols] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(header, *body)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in body]
    return "\n".join(lines)


def _print_flags(flags: dict) -> None:
    if "skipped" in flags:
        print("\nspeed flags:", json.dumps(flags))
        return
    print(
        f"\nSpeed flags: {flags['method']} training step, {flags['benchmark']} config, task {flags['task']} "
        "(ratios measured in this run)"
    )
    if flags["rows"]:
        rows = [{**r, "first_step_s": "-" if r["first_step_s"] is None else r["first_step_s"]} for r in flags["rows"]]
        print(
            _fmt_rows(
                rows,
                [
                    ("variant", "variant", ""),
                    ("step_ms", "step ms", ".2f"),
                    ("ratio_vs_off", "× off", ".2f"),
                    ("first_step_s", "first step s (compiles)", ".1f"),
                ],
            )
        )
    for name, err in flags["errors"].items():
        print(f"{name}: failed, not timed: {err.splitlines()[0][:200] if err else ''}")
    if "note" in flags:
        print(f"note: {flags['note']}")


def main_task_scaling(args: Any, report: dict, device: torch.device) -> int:
    """``hypercl bench --task-scaling``: the long task-scaling run (T up to 100) and the hypnettorch anchor only."""
    quick = bool(args.quick)
    steps = args.steps or (2 if quick else 8)
    tasks = (1, 3) if quick else SCALING_TASKS
    variants = (
        SCALING_VARIANTS
        if not quick
        else (
            ("hnet K=all", "hnet", {}),
            ("hnet K=1 online", "hnet", {"reg_tasks_per_step": 1, "reg_targets": "online"}),
            ("lstm_net_grow", "lstm_net_grow", {}),
        )
    )
    report.update(steps=steps, warmup=1)
    report["long_task_scaling"] = bench_long_task_scaling("split_mnist", device, steps, 1, tasks, variants)
    report["hypnettorch"] = {"skipped": "not run in --quick"} if quick else bench_hypnettorch(device, 20, 3)
    header = (
        f"Step time and memory while learning task T (Split MNIST config, {max(tasks)}-task multi-head "
        f"target; synthetic state; median of {steps} steps per T, T timed round-robin; {report['device']})"
    )
    _print_long_scaling(report["long_task_scaling"], header)
    print("\nhypnettorch:", json.dumps(report["hypnettorch"]))
    if args.png is not None:
        plot_long_task_scaling(report["long_task_scaling"], args.png, f"Split MNIST config, {report['device']}")
        print(f"PNG written to {args.png}")
    atomic_write_text(json.dumps(report, indent=1), args.out)
    print(f"\nwritten to {args.out}")
    return 0


def main(args: Any) -> int:
    device = torch.device(args.device)
    report_alloc = keep_freed_memory()  # also done by the CLI; here for callers of main() from Python
    quick = bool(args.quick)
    steps = args.steps or (3 if quick else 50)
    warmup = 1 if quick else 5
    report: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else device_name(device),  # names the CPU kernel path and the thread count
        "torch": torch.__version__,
        "steps": steps,
        "warmup": warmup,
        "quick": quick,
        "keep_freed_memory": report_alloc,
        "timing": "medians, functions timed round-robin",
    }
    if getattr(args, "task_scaling", False):
        return main_task_scaling(args, report, device)
    if quick:  # few steps, two methods, task 2: a test can run the whole bench in seconds
        report["training"] = bench_training_steps(
            "split_mnist", 2, device, steps, warmup, methods=("hnet", "lstm_net_grow")
        )
        report["cl3_eval"] = [bench_cl3_eval("split_mnist", 2, device, steps, warmup, batch=64)]
        report["task_scaling"] = bench_task_scaling(
            "split_mnist", 2, device, steps, warmup, methods=("lstm_net", "lstm_net_grow")
        )
        report["hypnettorch"] = {"skipped": "not run in --quick"}
        report["flags"] = {"skipped": "not run in --quick"}
        report["parallel_seeds"] = bench_parallel_seeds(device, steps, warmup, seeds=2, methods=("lstm_net_grow",))
        report["recurrent_target"] = bench_recurrent_target(device, steps, warmup, tasks=2, batch=32, fisher_batch=8)
    else:
        report["training"] = bench_training_steps("split_mnist", 5, device, steps, warmup) + bench_training_steps(
            "permuted_mnist", 10, device, max(5, steps // 5), 2
        )
        report["cl3_eval"] = [
            bench_cl3_eval("split_mnist", 5, device, steps, warmup),
            bench_cl3_eval("permuted_mnist", 10, device, max(5, steps // 5), 2),
        ]
        report["task_scaling"] = bench_task_scaling("split_mnist", 10, device, max(10, steps // 2), 3)
        report["hypnettorch"] = bench_hypnettorch(device, steps, warmup)
        report["flags"] = bench_flags(device, steps, warmup)
        report["parallel_seeds"] = bench_parallel_seeds(device, max(5, steps // 2), 2)
        report["recurrent_target"] = bench_recurrent_target(device, max(5, steps // 5), 2)
    print(f"device: {report['device']}, torch {report['torch']}, median of {steps} steps")
    print("\nTraining step (ratios measured in this run)")
    print(
        _fmt_rows(
            report["training"],
            [
                ("benchmark", "benchmark", ""),
                ("task", "task", "d"),
                ("method", "method", ""),
                ("hnet_step_ms", "step ms", ".2f"),
                ("plain_step_ms", "plain ms", ".2f"),
                ("ratio_vs_plain", "× plain", ".2f"),
                ("ratio_vs_parts", "× parts", ".2f"),
            ],
        )
    )
    print("\nCL3 evaluation: one batched call vs a loop over tasks")
    print(
        _fmt_rows(
            report["cl3_eval"],
            [
                ("benchmark", "benchmark", ""),
                ("tasks", "T", "d"),
                ("batched_ms", "batched ms", ".2f"),
                ("loop_ms", "loop ms", ".2f"),
                ("loop_over_batched", "loop/batched", ".2f"),
                ("batched_over_one_task", "batched/1 task", ".2f"),
            ],
        )
    )
    print("\nStep time as tasks accumulate (Split MNIST config)")
    print(
        _fmt_rows(
            report["task_scaling"], [("method", "method", ""), ("task", "task", "d"), ("step_ms", "step ms", ".2f")]
        )
    )
    print("\n--parallel-seeds: one ensemble step of S seeds vs one seed's step (target on a GPU: S = 5 in ≤ 1.5×)")
    print(
        _fmt_rows(
            report["parallel_seeds"],
            [
                ("benchmark", "benchmark", ""),
                ("method", "method", ""),
                ("seeds", "S", "d"),
                ("ensemble_step_ms", "ensemble ms", ".2f"),
                ("one_seed_step_ms", "one seed ms", ".2f"),
                ("ratio", "ratio", ".2f"),
            ],
        )
    )
    rec = report["recurrent_target"]
    print(
        f"\nRecurrent target (LSTM, {rec['tasks']} weight sets, batch {rec['batch']}): vmap fallback "
        f"({rec['fallback']}): batched {rec['batched_fallback_ms']:.2f} ms = {rec['batched_over_one']:.2f}x one "
        f"weight set (vmapped MLP of {rec['mlp_params']} weights vs the LSTM's {rec['params']}: "
        f"{rec['mlp_batched_ms']:.2f} ms = {rec['mlp_batched_over_one']:.2f}x one weight set); eq. 4 per-sample "
        f"gradients of {rec['fisher_batch']} samples: loop {rec['fisher_loop_ms']:.2f} "
        f"ms vs vmap {rec['fisher_vmap_ms']:.2f} ms ({rec['fisher_loop_over_vmap']:.2f}x)"
    )
    print("\nhypnettorch:", json.dumps(report["hypnettorch"]))
    _print_flags(report["flags"])
    atomic_write_text(json.dumps(report, indent=1), args.out)
    print(f"\nwritten to {args.out}")
    return 0
