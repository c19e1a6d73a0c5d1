"""hypercl's hypernetwork methods next to Avalanche's own baselines on Avalanche's SplitMNIST, measured by Avalanche.

    python examples/avalanche_split_mnist.py --seeds 0 1 2 --out results/avalanche_split_mnist

Stream: ``SplitMNIST(n_experiences=5, fixed_class_order=0..9)`` (classes 0/1, 2/3, ... as in hypercl's Split MNIST),
task-incremental (``return_task_id=True``) and class-incremental (``False``), read from the library's data root
(``--data-root``, else ``$HYPERCL_DATA``, else ``~/.cache/hypercl/data``; torchvision's ``MNIST/raw`` layout).
Target: one MLP 784-400-400 (ReLU). ``lstm_net_grow+r`` is Avalanche's ``Naive`` on Avalanche's classifier (the
baselines' heads) with hypercl's ``GeneratedReplayPlugin``: replay from a VAE (400-400, latent 100) whose decoder an
LSTM hypernetwork generates per experience under GROW (no stored data), trained as many steps per experience as the
classifier. Avalanche's strategies put a ``MultiHeadClassifier`` on it when task labels are
given and one 10-way ``Linear`` head otherwise; hypercl's methods generate the whole MLP with a 2-unit output per task.

Protocol (CPU-sized): Adam lr 1e-3, minibatch 128. Avalanche's strategies: 1 epoch per experience. hypercl's: the
same number of minibatch steps per experience as that epoch (``ceil(n_train / 128)``, recorded per run). Baseline
settings: EWC λ and SI c per scenario of van de Ven & Tolias 2019 (``hypercl.baselines.PAPER_HYPERPARAMETERS``; SI's
ε = their ξ = 0.1), LwF α = 1, T = 2, Replay with Avalanche's default buffer of 200 samples (class-balanced over the
experiences seen). Metrics from Avalanche's ``EvaluationPlugin`` after each experience on the whole test stream:
final average accuracy = mean of ``Top1_Acc_Exp`` over the 5 experiences after the last one, forgetting =
``StreamForgetting``. Each (scenario, method, seed) writes its own JSON, so an interrupted run resumes where it stopped;
``--summary`` merges them into ``summary.json`` and ``summary.png``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

SCENARIOS = {"task": True, "class": False}  # name -> return_task_id
HYPERCL = ("hnet", "lstm_net_grow")
HYPERCL_REPLAY = ("lstm_net_grow+r",)  # Avalanche's Naive on the classifier + hypercl's GeneratedReplayPlugin
AVALANCHE = ("naive", "ewc", "si", "lwf", "replay")
METHODS = HYPERCL + HYPERCL_REPLAY + AVALANCHE
REPLAY_MEM = 200
BATCH = 128


def body() -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 400), nn.ReLU())


def avalanche_model(task_incremental: bool) -> nn.Module:
    from avalanche.models import MultiHeadClassifier, MultiTaskModule

    if not task_incremental:
        return nn.Sequential(body(), nn.Linear(400, 10))

    class MultiHeadMLP(MultiTaskModule):
        def __init__(self) -> None:
            super().__init__()
            self.body = body()
            self.head = MultiHeadClassifier(400, initial_out_features=2)

        def forward_single_task(self, x: torch.Tensor, task_label: int) -> torch.Tensor:
            return self.head(self.body(x), task_label)

    return MultiHeadMLP()


def build(method: str, scenario: str, seed: int, evaluator: Any) -> Any:
    from avalanche.training import EWC, LwF, Naive, Replay, SynapticIntelligence

    from hypercl.avalanche import HyperCLStrategy
    from hypercl.baselines import PAPER_HYPERPARAMETERS

    torch.manual_seed(seed)
    cl = "cl1" if scenario == "task" else "cl3"
    if method in HYPERCL:
        mlp = nn.Sequential(body(), nn.Linear(400, 2))
        return HyperCLStrategy(model=mlp, method=method, train_mb_size=BATCH, train_iterations=1, eval_mb_size=1000,
                               evaluator=evaluator, seed=seed)
    model = avalanche_model(scenario == "task")
    common = dict(model=model, optimizer=torch.optim.Adam(model.parameters(), lr=1e-3),
                  criterion=nn.CrossEntropyLoss(), train_mb_size=BATCH, train_epochs=1, eval_mb_size=1000,
                  evaluator=evaluator)
    if method in HYPERCL_REPLAY:
        from hypercl.avalanche import GeneratedReplayPlugin

        plugin = GeneratedReplayPlugin(method[: -len("+r")], seed=seed)  # steps set per experience in run_one
        return Naive(plugins=[plugin], **common)
    if method == "naive":
        return Naive(**common)
    if method == "ewc":
        return EWC(ewc_lambda=PAPER_HYPERPARAMETERS["split_mnist"]["ewc"][cl]["lambda_"], **common)
    if method == "si":
        return SynapticIntelligence(si_lambda=PAPER_HYPERPARAMETERS["split_mnist"]["si"][cl]["c"], eps=0.1, **common)
    if method == "lwf":
        return LwF(alpha=1.0, temperature=2.0, **common)
    if method == "replay":
        return Replay(mem_size=REPLAY_MEM, **common)
    raise ValueError(f"unknown method {method!r}; valid: {list(METHODS)}")


def run_one(method: str, scenario: str, seed: int, data_root: Path, replay_iterations: Optional[int] = None) -> dict:
    from avalanche.benchmarks import SplitMNIST
    from avalanche.evaluation.metrics import accuracy_metrics, forgetting_metrics
    from avalanche.training.plugins import EvaluationPlugin

    bench = SplitMNIST(n_experiences=5, return_task_id=SCENARIOS[scenario], seed=seed,
                       fixed_class_order=list(range(10)), dataset_root=str(data_root))
    evaluator = EvaluationPlugin(accuracy_metrics(experience=True, stream=True),
                                 forgetting_metrics(experience=True, stream=True), loggers=[])
    strategy = build(method, scenario, seed, evaluator)
    steps = []
    t0 = time.perf_counter()
    res: dict = {}
    for exp in bench.train_stream:
        n = math.ceil(len(exp.dataset) / BATCH)
        steps.append(n)
        if method in HYPERCL:
            strategy.train_iterations = n  # matched to one Avalanche epoch
        if method in HYPERCL_REPLAY:
            for plugin in strategy.plugins:  # the VAE trains as many steps as the classifier (or as asked)
                if hasattr(plugin, "replay_iterations"):
                    plugin.replay_iterations = replay_iterations or n
        strategy.train(exp)
        res = strategy.eval(bench.test_stream)
    wall = time.perf_counter() - t0
    task = "Task{:03d}" if scenario == "task" else "Task000"
    accs = [float(res[f"Top1_Acc_Exp/eval_phase/test_stream/{task.format(e)}/Exp{e:03d}"]) for e in range(5)]
    return {"method": method, "scenario": scenario, "seed": seed, "final_accuracy": accs,
            "final_average": sum(accs) / len(accs),
            "stream_accuracy": _metric(res, "Top1_Acc_Stream/eval_phase/test_stream"),
            "forgetting": _metric(res, "StreamForgetting/eval_phase/test_stream"), "steps_per_experience": steps,
            "replay_iterations": replay_iterations if method in HYPERCL_REPLAY else None,
            "wall_s": wall, "threads": torch.get_num_threads(), "torch": torch.__version__,
            "metrics": {k: float(v) for k, v in res.items() if isinstance(v, (int, float))}}


def _metric(res: dict, prefix: str) -> Optional[float]:
    """The metric whose name starts with ``prefix`` (Avalanche appends ``/TaskNNN`` to the stream accuracy of a
    task-labelled stream); ``None`` unless exactly one matches."""
    found = [v for k, v in res.items() if k.startswith(prefix)]
    return float(found[0]) if len(found) == 1 else None


def summarize(out: Path) -> dict:
    rows: dict = {}
    for f in sorted(out.glob("*_seed*.json")):
        r = json.loads(f.read_text())
        rows.setdefault((r["scenario"], r["method"]), []).append(r)
    summary = []
    for (scenario, method), runs in sorted(rows.items(), key=lambda kv: (list(SCENARIOS).index(kv[0][0]),
                                                                    METHODS.index(kv[0][1]))):
        entry: dict = {"scenario": scenario, "method": method, "n": len(runs), "seeds": [r["seed"] for r in runs]}
        for key in ("final_average", "forgetting", "wall_s"):
            vals = [float(r[key]) for r in runs if r[key] is not None]
            if not vals:
                continue
            sd = statistics.stdev(vals) if len(vals) > 1 else float("nan")
            entry[key] = {"mean": statistics.fmean(vals), "std": sd, "se": sd / math.sqrt(len(vals))}
        summary.append(entry)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    (out / "summary.md").write_text(markdown(summary))
    with contextlib.suppress(ImportError):  # matplotlib (the plot extra) missing: the JSON is enough
        plot(summary, out / "summary.png")
    return {"rows": summary}


def markdown(summary: list) -> str:
    """The docs table: final average accuracy and forgetting (%), mean ± sample std (SE) over n seeds, wall time."""

    def cell(st: Optional[dict]) -> str:
        if not st:
            return "—"
        if math.isnan(st["std"]):
            return f"{100 * st['mean']:.2f}"
        return f"{100 * st['mean']:.2f} ± {100 * st['std']:.2f} ({100 * st['se']:.2f})"

    lines = ["| scenario | method | n | seeds | final average accuracy (%) | forgetting (%) | wall s per run |",
             "|---|---|---|---|---|---|---|"]
    for r in summary:
        wall = r["wall_s"]["mean"]
        lines.append(f"| {r['scenario']}-incremental | {r['method']} | {r['n']} | "
                     f"{','.join(map(str, r['seeds']))} | {cell(r.get('final_average'))} | "
                     f"{cell(r.get('forgetting'))} | {wall:.0f} |")
    return "\n".join(lines) + "\n"


def plot(summary: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6))
    for ax, scenario in zip(axes, SCENARIOS):
        rows = [r for r in summary if r["scenario"] == scenario]
        names = [r["method"] for r in rows]
        ax.bar(names, [r["final_average"]["mean"] for r in rows],
               yerr=[0 if math.isnan(r["final_average"]["se"]) else r["final_average"]["se"] for r in rows],
               color=["tab:blue" if n in HYPERCL + HYPERCL_REPLAY else "tab:gray" for n in names])
        ax.set_ylim(0, 1)
        for i, r in enumerate(rows):  # each bar's number of seeds
            ax.text(i, 0.02, f"n={r['n']}", ha="center", color="white")
        ax.set_title(f"SplitMNIST, {scenario}-incremental (Avalanche metrics; mean ± SE)")
        ax.set_ylabel("final average accuracy (Avalanche)")
        plt.setp(ax.get_xticklabels(), rotation=35, ha="right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default: 0 1 2)")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS, help="default: all")
    ap.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS), help="default: both")
    ap.add_argument("--out", type=Path, default=Path("results/avalanche_split_mnist"), help="output folder")
    ap.add_argument("--data-root", default=None, help="folder holding MNIST/raw (default: the library's data root)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    ap.add_argument("--replay-iterations", type=int, default=None, help="lstm_net_grow+r: VAE steps per experience "
                    "(default: as many as the classifier's epoch)")
    ap.add_argument("--summary", action="store_true", help="only merge the finished runs into summary.json/png")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.summary:
        from hypercl.data import torchvision_mnist_root

        root = torchvision_mnist_root(args.data_root)  # Avalanche reads torchvision's decompressed files
        for seed in args.seeds:  # seeds outermost: every method gets seed 0 before any gets seed 1
            for scenario in args.scenarios:
                for method in args.methods:
                    f = args.out / f"{scenario}_{method}_seed{seed}.json"
                    if f.exists():
                        continue
                    r = run_one(method, scenario, seed, root, args.replay_iterations)
                    tmp = f.with_suffix(".tmp")
                    tmp.write_text(json.dumps(r, indent=1))
                    tmp.replace(f)
                    print(f"{scenario:5s} {method:14s} seed {seed}: final average {r['final_average']:.4f} "
                          f"forgetting {r['forgetting']} ({r['wall_s']:.0f} s)", flush=True)
    for r in summarize(args.out)["rows"]:
        fa, fg = r["final_average"], r.get("forgetting", {"mean": float("nan")})
        print(f"{r['scenario']:5s} {r['method']:14s} n={r['n']} final {fa['mean']:.4f} ± {fa['std']:.4f} "
              f"forgetting {fg['mean']:.4f} wall {r['wall_s']['mean']:.0f} s")


if __name__ == "__main__":
    main()
