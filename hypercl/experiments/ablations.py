"""The seed paper's Figure 2 ablations, and the CIFAR speed extrapolation, as library functions.

* :func:`compression_ablation` (Figure 2a): final accuracy against the compression ratio (hypernetwork parameters /
  target parameters) for HNET and LSTM_NET. Each point is one run of the benchmark's configuration with the
  chunk size (and, where a ratio cannot be reached otherwise, the hidden size) chosen by :func:`size_for_ratio`.
* :func:`beta_ablation` (Figure 2b): LSTM_NET_IWR final accuracy against β.

The paper runs both on Split CIFAR; ``benchmark="split_mnist"`` is the documented substitute on machines without
CIFAR files or a GPU, and ``benchmark="split_cifar"`` runs the same code on the CIFAR protocol. Every function
returns plain data; :func:`run_ablation` writes it as JSON plus a PNG plot (atomically).
"""

from __future__ import annotations

import copy
import datetime as _dt
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import torch

from ..checkpoint import one_line
from ..chunking import ChunkPlan
from ..config import HypernetworkConfig, RunConfig
from .configs import method_run_config

__all__ = [
    "ABLATION_KINDS",
    "DEFAULT_RATIOS",
    "DEFAULT_BETAS",
    "ABLATION_QUICK",
    "generator_param_count",
    "size_for_ratio",
    "compression_ablation",
    "beta_ablation",
    "plot_ablation",
    "run_ablation",
]

ABLATION_KINDS = ("compression", "beta", "cifar-speed")
#: compression ratios (hypernetwork / target parameters) of Figure 2a; quick: three of them
DEFAULT_RATIOS = (0.1, 0.25, 0.5, 1.0, 2.0)
QUICK_RATIOS = (0.1, 0.5, 1.0)
#: the largest compression ratio an ablation point may ask for (a hypernetwork 100x its target)
MAX_COMPRESSION_RATIO = 100.0
#: β values of Figure 2b (log scale); quick: three of them
DEFAULT_BETAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0)
QUICK_BETAS = (1e-4, 1e-2, 1.0)
#: --quick: a data subset and few steps, so that one ablation finishes in about a minute on 2 CPU cores
ABLATION_QUICK: dict[str, dict[str, Any]] = {
    "split_mnist": {"iterations": 30, "max_train_per_task": 500, "max_test_per_task": 200, "fisher_samples": 100},
    "permuted_mnist": {
        "iterations": 30,
        "max_train_per_task": 500,
        "max_test_per_task": 200,
        "num_tasks": 3,
        "fisher_samples": 100,
    },
    "split_cifar": {
        "epochs": 1,
        "max_train_per_task": 64,
        "max_test_per_task": 64,
        "num_tasks": 2,
        "fisher_samples": 16,
    },
}
#: hidden sizes tried (in order) when the configured one cannot reach a ratio
_HIDDEN_LADDER = {
    "lstm": (128, 64, 32, 16, 8, 4),
    "gru": (128, 64, 32, 16, 8, 4),
    "chunked_mlp": ((10, 10), (5, 5), (2,)),
}


# ------------------------------------------------------------------------------------------------ sizing
def generator_param_count(
    num_params: int,
    generator: str,
    chunk_size: int,
    task_emb_dim: int,
    chunk_emb_dim: int,
    hidden: Any,
    num_tasks: int = 1,
    **kwargs: Any,
) -> int:
    """Trainable parameters of a hypernetwork (generator + ``num_tasks`` task embeddings), counted on ``meta``."""
    from ..hypernetwork import build_generator

    with torch.device("meta"):
        gen = build_generator(
            generator, ChunkPlan(num_params, int(chunk_size)), task_emb_dim, chunk_emb_dim, hidden, **kwargs
        )
    return sum(p.numel() for p in gen.parameters()) + num_tasks * task_emb_dim


def _hidden_ladder(generator: str, hidden: Any, in_dim: int) -> list[Any]:
    """The configured hidden size, then the ladder's entries with a narrower last layer (the width that multiplies
    the chunk size in the output layer; ``()`` (linear) has the input width)."""
    recurrent = generator in ("lstm", "gru")
    first = int(hidden) if recurrent else tuple(int(h) for h in hidden)

    def width(h: Any) -> int:
        return h if recurrent else (h[-1] if h else in_dim)

    return [first] + [h for h in _HIDDEN_LADDER.get(generator, ()) if width(h) < width(first)]


def size_for_ratio(
    num_params: int, hcfg: Union[HypernetworkConfig, Mapping[str, Any]], ratio: float, num_tasks: int
) -> dict:
    """Chunk size (and hidden size) whose hypernetwork has at most ``ratio × num_params`` parameters, as close to it
    as possible: the largest chunk size on the rising branch of the count (bigger chunks → bigger output layer).

    ``hcfg``: the config's :class:`~hypercl.config.HypernetworkConfig` (or its JSON form).
    The configured hidden size is kept when the ratio is reachable with it, else the next smaller one of a fixed
    ladder is used. Returns ``{"chunk_size", "hidden_size", "params", "ratio"}`` (``params`` with the task
    embeddings of ``num_tasks`` tasks).
    """
    h = hcfg if isinstance(hcfg, HypernetworkConfig) else HypernetworkConfig.from_json(hcfg)
    gen = h.generator
    extra = {"activation": h.activation} if gen == "chunked_mlp" and h.activation is not None else {}
    te, ce = int(h.task_emb_dim), int(h.chunk_emb_dim)
    budget = ratio * num_params
    best: Optional[dict] = None
    hidden_size = list(h.hidden_size) if isinstance(h.hidden_size, tuple) else h.hidden_size
    for hidden in _hidden_ladder(gen, hidden_size, te + ce):

        def count(c: int) -> int:
            return generator_param_count(num_params, gen, c, te, ce, hidden, num_tasks, **extra)

        grid = sorted(
            {
                max(1, min(num_params, round(math.exp(x))))
                for x in torch.linspace(math.log(4), math.log(num_params), 60).tolist()
            }
        )
        counts = [count(c) for c in grid]
        i_min = min(range(len(grid)), key=lambda i: counts[i])
        if counts[i_min] > budget:
            if best is None or counts[i_min] < best["params"]:
                best = {"chunk_size": grid[i_min], "hidden_size": hidden, "params": counts[i_min]}
            continue
        lo, hi = grid[i_min], num_params  # count rises (up to the ceil jitter of the chunk embeddings) on [lo, hi]
        if count(hi) <= budget:
            lo = hi
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if count(mid) <= budget:
                lo = mid
            else:
                hi = mid
        best = {"chunk_size": lo, "hidden_size": hidden, "params": count(lo)}
        break
    assert best is not None
    hs = best["hidden_size"]
    best["hidden_size"] = list(hs) if isinstance(hs, tuple) else hs
    best["ratio"] = best["params"] / num_params
    return best


# ------------------------------------------------------------------------------------------------ runs
def _quick_overrides(benchmark: str, quick: bool) -> dict:
    if not quick:
        return {}
    q = dict(ABLATION_QUICK[benchmark])
    return q


def _num_target_params(cfg: RunConfig, bench: Any) -> int:
    from .runner import target_module

    out = bench.total_classes if cfg.output_layout == "per_task" else bench.classes_per_task
    return sum(p.numel() for p in target_module(cfg.target, bench, out).parameters() if p.requires_grad)


def _point(run: dict, scenarios: Sequence[str]) -> dict:
    res = {s: run["scenarios"][s] for s in scenarios if s in run["scenarios"]}
    return {
        "final": {s: r["final_average"] for s, r in res.items()},
        "during": {s: r["during_average"] for s, r in res.items()},
        "final_per_task": {s: (r["matrix"][-1] if r["matrix"] else []) for s, r in res.items()},
        "params": run["params"],
        "wall_time_s": run["wall_time_s"],
    }


def _seed_points(
    cfg: RunConfig,
    bench: Any,
    method: str,
    fields: dict,
    seeds: Sequence[int],
    scenarios: Sequence[str],
    device: Any,
    on_point: Optional[Callable[[dict], None]],
) -> list[dict]:
    """One point per seed of one configuration: ``fields`` (what the ablation varies) and the run's accuracies."""
    from .runner import run_seed

    points = []
    for seed in seeds:
        run = run_seed(cfg, bench, seed, scenarios, device=device)
        pt = {"method": method, **fields, "seed": seed, "compression_ratio": run["params"]["compression_ratio"]}
        pt.update(_point(run, scenarios))
        points.append(pt)
        if on_point is not None:
            on_point(pt)
    return points


def compression_ablation(
    benchmark: str = "split_mnist",
    ratios: Optional[Sequence[float]] = None,
    methods: Sequence[str] = ("hnet", "lstm_net"),
    quick: bool = False,
    seeds: Sequence[int] = (0,),
    scenarios: Optional[Sequence[str]] = None,
    data_root: Optional[str] = None,
    device: Any = "cpu",
    overrides: Optional[dict] = None,
    bench: Any = None,
    on_point: Optional[Callable[[dict], None]] = None,
) -> dict:
    """Figure 2a: final accuracy of HNET and LSTM_NET against the compression ratio. One run per (method, ratio,
    seed); the chunk size (and hidden size) per point comes from :func:`size_for_ratio`."""
    from .runner import build_benchmark

    ratios = list(ratios or (QUICK_RATIOS if quick else DEFAULT_RATIOS))
    scenarios = list(scenarios or (["cl1"] if benchmark == "split_cifar" else ["cl1", "cl2", "cl3"]))
    over = {**_quick_overrides(benchmark, quick), **(overrides or {})}
    points = []
    for method in methods:
        base = method_run_config(benchmark, method, **over)
        if base.hypernetwork is None:
            raise ValueError(f"the compression ablation needs a hypernetwork method, got {method!r}")
        if bench is None:
            bench = build_benchmark(base, data_root, device)
        n_target = _num_target_params(base, bench)
        for r in ratios:
            size = size_for_ratio(n_target, base.hypernetwork, r, bench.num_tasks)
            cfg = method_run_config(
                benchmark, method, **over, chunk_size=size["chunk_size"], hidden_size=size["hidden_size"]
            )
            fields = {"requested_ratio": r, "chunk_size": size["chunk_size"], "hidden_size": size["hidden_size"]}
            points += _seed_points(cfg, bench, method, fields, seeds, scenarios, device, on_point)
    return {
        "kind": "compression",
        "benchmark": benchmark,
        "methods": list(methods),
        "ratios": ratios,
        "scenarios": scenarios,
        "seeds": list(seeds),
        "quick": quick,
        "overrides": over,
        "points": points,
        "x": "compression_ratio",
    }


def beta_ablation(
    benchmark: str = "split_mnist",
    betas: Optional[Sequence[float]] = None,
    method: str = "lstm_net_iwr",
    quick: bool = False,
    seeds: Sequence[int] = (0,),
    scenarios: Optional[Sequence[str]] = None,
    data_root: Optional[str] = None,
    device: Any = "cpu",
    overrides: Optional[dict] = None,
    bench: Any = None,
    on_point: Optional[Callable[[dict], None]] = None,
) -> dict:
    """Figure 2b: final accuracy of LSTM_NET_IWR against the regularisation constant β of eq. 3."""
    from .runner import build_benchmark

    betas = list(betas or (QUICK_BETAS if quick else DEFAULT_BETAS))
    scenarios = list(scenarios or (["cl1"] if benchmark == "split_cifar" else ["cl1", "cl2", "cl3"]))
    over = {**_quick_overrides(benchmark, quick), **(overrides or {})}
    points = []
    for beta in betas:
        cfg = method_run_config(benchmark, method, **over, beta=float(beta))
        if bench is None:
            bench = build_benchmark(cfg, data_root, device)
        points += _seed_points(cfg, bench, method, {"beta": float(beta)}, seeds, scenarios, device, on_point)
    return {
        "kind": "beta",
        "benchmark": benchmark,
        "methods": [method],
        "betas": betas,
        "scenarios": scenarios,
        "seeds": list(seeds),
        "quick": quick,
        "overrides": over,
        "points": points,
        "x": "beta",
    }


# ------------------------------------------------------------------------------------------------ output
def _series(result: dict, scenario: str) -> dict[str, tuple[list[float], list[float], list[float]]]:
    """method -> (x, mean accuracy %, std %), averaged over seeds per x."""
    xkey = result["x"]
    out: dict[str, tuple[list[float], list[float], list[float]]] = {}
    for method in result["methods"]:
        pts = [p for p in result["points"] if p["method"] == method and p["final"].get(scenario) is not None]
        groups: dict[Any, list[dict]] = {}
        for p in pts:
            key = p["requested_ratio"] if xkey == "compression_ratio" else p["beta"]
            groups.setdefault(key, []).append(p)
        xs, ys, sd = [], [], []
        for _, g in sorted(groups.items()):
            accs = [100 * p["final"][scenario] for p in g]
            xs.append(sum(p[xkey] for p in g) / len(g))
            ys.append(sum(accs) / len(accs))
            m = ys[-1]
            sd.append(math.sqrt(sum((a - m) ** 2 for a in accs) / (len(accs) - 1)) if len(accs) > 1 else 0.0)
        out[method] = (xs, ys, sd)
    return out


def plot_ablation(result: dict, path: Path) -> Optional[Path]:
    """One panel per scenario: final accuracy (%) against the compression ratio or β (log x axis)."""
    from ..plotting import pyplot

    plt = pyplot()
    if plt is None:
        return None
    from ..checkpoint import atomic_save_figure
    from .report import BENCHMARK_LABELS, METHOD_LABELS

    scen = list(result["scenarios"])
    fig, axes = plt.subplots(1, len(scen), figsize=(4.6 * len(scen), 3.6), squeeze=False)
    for ax, s in zip(axes[0], scen):
        for method, (xs, ys, sd) in _series(result, s).items():
            ax.errorbar(
                xs, ys, yerr=sd if any(sd) else None, marker="o", capsize=3, label=METHOD_LABELS.get(method, method)
            )
        ax.set_xscale("log")
        ax.set_xlabel("compression ratio (hnet / target params)" if result["x"] == "compression_ratio" else "β (eq. 3)")
        ax.set_ylabel(f"final {s.upper()} accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    bench = BENCHMARK_LABELS.get(result["benchmark"], result["benchmark"])
    what = "compression ratio (Fig. 2a)" if result["kind"] == "compression" else "β of IWR (Fig. 2b)"
    fig.suptitle(f"{bench}: accuracy vs {what}{' — quick run' if result.get('quick') else ''}", fontsize=10)
    fig.tight_layout()
    return atomic_save_figure(fig, path)


def summary_lines(result: dict) -> list[str]:
    """A plain-text table of the points (for the console)."""
    from .report import METHOD_LABELS

    scen = list(result.get("scenarios", []))
    if result["kind"] == "cifar-speed":
        lines = [
            f"{'method':<22} {'params':>10} {'ratio':>6} {'epoch C-10 s':>13} {'epoch C-100 s':>14} {'total h':>9}"
        ]
        for m, r in result["methods"].items():
            c100 = r["epoch_s_cifar100_split"]
            lines.append(
                f"{METHOD_LABELS.get(m, m):<22} {r['params']['model']:>10,} "
                f"{r['params']['compression_ratio']:>6.2f} {r['epoch_s_cifar10']:>13.1f} "
                f"{(sum(c100) / len(c100) if c100 else float('nan')):>14.2f} {r['total_h']:>9.1f}"
            )
        return lines
    xname = "ratio" if result["kind"] == "compression" else "beta"
    head = f"{'method':<14} {xname:>8} {'chunk':>7} {'hidden':>8} " + " ".join(f"{s.upper():>7}" for s in scen)
    lines = [head]
    for p in result["points"]:
        x = p["compression_ratio"] if result["kind"] == "compression" else p["beta"]
        accs = " ".join(f"{100 * p['final'][s]:>7.2f}" if p["final"].get(s) is not None else f"{'—':>7}" for s in scen)
        lines.append(
            f"{METHOD_LABELS.get(p['method'], p['method']):<14} {x:>8.3g} {p.get('chunk_size', '')!s:>7} "
            f"{p.get('hidden_size', '')!s:>8} {accs}"
        )
    return lines


def run_ablation(
    kind: str,
    benchmark: str = "split_mnist",
    quick: bool = False,
    out: Optional[Path] = None,
    device: Any = "cpu",
    data_root: Optional[str] = None,
    seeds: Sequence[int] = (0,),
    values: Optional[Sequence[float]] = None,
    overrides: Optional[dict] = None,
    scenarios: Optional[Sequence[str]] = None,
    steps: Optional[int] = None,
    methods: Optional[Sequence[str]] = None,
    command: str = "",
    log: Optional[Callable[[str], None]] = None,
) -> tuple[dict, Path, Optional[Path]]:
    """Run one ablation and write ``<out>/<stem>.json`` and ``<out>/<stem>.png``; returns (result, json, png)."""
    from .. import __version__
    from .cifar_speed import cifar_speed, plot_speed, write_json

    if kind not in ABLATION_KINDS:
        raise ValueError(f"unknown ablation {kind!r}; valid: {list(ABLATION_KINDS)}")
    out = Path(out) if out is not None else Path("results") / "ablations"
    dev = torch.device(device)
    t0 = time.perf_counter()
    say = log or (lambda s: None)
    if kind == "compression":
        result = compression_ablation(
            benchmark,
            values,
            methods=tuple(methods or ("hnet", "lstm_net")),
            quick=quick,
            seeds=seeds,
            scenarios=scenarios,
            data_root=data_root,
            device=dev,
            overrides=overrides,
            on_point=lambda p: say(
                f"  {p['method']} ratio {p['compression_ratio']:.3f}: "
                + ", ".join(f"{s} {100 * v:.2f}%" for s, v in p["final"].items())
            ),
        )
        stem = f"ablation_compression_{benchmark}"
    elif kind == "beta":
        result = beta_ablation(
            benchmark,
            values,
            method=(methods or ["lstm_net_iwr"])[0],
            quick=quick,
            seeds=seeds,
            scenarios=scenarios,
            data_root=data_root,
            device=dev,
            overrides=overrides,
            on_point=lambda p: say(
                f"  β {p['beta']:g}: " + ", ".join(f"{s} {100 * v:.2f}%" for s, v in p["final"].items())
            ),
        )
        stem = f"ablation_beta_{benchmark}"
    else:
        over = dict(overrides or {})
        if quick:  # a tiny ResNet on small images: checks the pipeline, the numbers mean nothing
            over = {"resnet_depth": 8, "resnet_widths": [4, 4, 4], "chunk_size": 512, **over}
        cpu_steps = steps if steps is not None else (1 if quick else (None if dev.type == "cuda" else 3))
        result = cifar_speed(
            methods=tuple(
                methods or ("finetune", "scratch", "hnet", "hnet_iwr", "lstm_net", "lstm_net_iwr", "lstm_net_grow")
            ),
            device=dev,
            steps=cpu_steps,
            warmup=1 if quick else 2,
            num_tasks=2 if quick else 6,
            overrides=over,
            image_size=8 if quick else 32,
            pool=16 if quick else 256,
            fisher_probe=4 if quick else 16,
            progress=lambda m: say(f"  timing {m} ..."),
        )
        result["quick"] = quick
        stem = "cifar_speed"
    if quick:
        stem += "_quick"
    from ..devices import device_name

    result.update(
        {
            "device": device_name(dev),
            "command": command,
            "total_wall_time_s": time.perf_counter() - t0,
            "versions": {"hypercl": __version__, "torch": torch.__version__},
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "threads": torch.get_num_threads(),
        }
    )
    json_path = write_json(copy.deepcopy(result), out / f"{stem}.json")
    plot = plot_speed if kind == "cifar-speed" else plot_ablation
    try:
        png = plot(result, out / f"{stem}.png")
    except OSError as e:  # a plot is a convenience: the JSON is what counts
        print(
            f"hypercl: warning: plot not written: {one_line(str(e))}; the JSON {json_path} is complete", file=sys.stderr
        )
        png = None
    return result, json_path, png
