"""Shared by split_mnist.py and permuted_mnist.py: one benchmark's Table 1 rows with the library API.

This is what `hypercl run --benchmark B --method all --scenario all --seeds 3` does, spelled out to show the pieces:
benchmark → config → a learner per seed → evaluation in CL1/CL2/CL3 → table.
"""

import argparse

import torch

from hypercl.experiments import METHODS, format_table, method_config, run_seed, summarize
from hypercl.experiments.runner import build_benchmark


def reproduce(benchmark: str) -> None:
    parser = argparse.ArgumentParser(description=f"Table 1 rows on {benchmark}")
    parser.add_argument("--quick", action="store_true", help="reduced run (data subset, few steps)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    scenarios = ["cl1", "cl2", "cl3"]
    results = []
    bench = None
    for method in args.methods.split(","):
        cfg = method_config(benchmark, method, quick=args.quick)
        bench = bench or build_benchmark(cfg, device=torch.device(args.device))
        runs = [run_seed(cfg, bench, seed, scenarios, device=args.device, progress=True) for seed in range(args.seeds)]
        results.append({"benchmark": benchmark, "method": method, "summary": summarize(runs, scenarios),
                        "params": runs[0]["params"], "wall_time_s": sum(r["wall_time_s"] for r in runs)})
        print(format_table(results[-1:], scenarios))
    print(format_table(results, scenarios))
