"""Reproduce the Permuted MNIST columns of the seed paper's Table 1 (non-replay): 10 tasks, inputs padded to 32x32,
first task unpermuted, 5000 iterations per task.

    python examples/permuted_mnist.py                     # all methods, 3 seeds, the paper's protocol (CPU: many hours; use a GPU)
    python examples/permuted_mnist.py --quick --seeds 1   # reduced run (~a few minutes on 2 CPU cores)

This is the same as `hypercl run --benchmark permuted_mnist --method all --scenario all --seeds 3`; it is spelled out
here to show the pieces: benchmark → config → learner per seed → evaluation in CL1/CL2/CL3 → table.
"""

import argparse

import torch

from hypercl.experiments import METHODS, format_table, method_config, run_seed, summarize
from hypercl.experiments.runner import build_benchmark

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    scenarios = ["cl1", "cl2", "cl3"]
    results = []
    bench = None
    for method in args.methods.split(","):
        cfg = method_config("permuted_mnist", method, quick=args.quick)
        bench = bench or build_benchmark(cfg, device=torch.device(args.device))
        runs = [run_seed(cfg, bench, seed, scenarios, device=args.device, progress=True) for seed in range(args.seeds)]
        results.append({"benchmark": "permuted_mnist", "method": method, "summary": summarize(runs, scenarios),
                        "params": runs[0]["params"], "wall_time_s": sum(r["wall_time_s"] for r in runs)})
        print(format_table(results[-1:], scenarios))
    print(format_table(results, scenarios))
