#!/usr/bin/env python
"""Each task-inference criterion's score on a task's OWN test inputs against OTHER tasks' inputs (one PNG).

    python scripts/task_inference_scores.py --checkpoint CKPT --out docs/task_inference_scores.png \
        --criteria "entropy,energy,max_logit,entropy_gradient,ensemble:samples=8;scale=0.5"

For every learned task ``t`` and every test input ``x`` of every task, the criterion's surprise ``s_t(x)``
(:func:`hypercl.task_inference.surprise_scores`; lower = looks like task ``t``'s own). "own" pools ``s_t(x)`` over the
inputs of task ``t``; "other" pools ``s_t(x)`` over the inputs of the other tasks. CL3 needs the two apart: the
printed AUROC is the probability that a random own score is below a random other score (1 = perfectly apart), and
"task id" the per-sample task-identification accuracy of the argmin. The test labels are never read: only which
task's test set an input came from.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

import torch

from hypercl import ContinualLearner
from hypercl.checkpoint import load_checkpoint
from hypercl.experiments.runner import build_benchmark
from hypercl.task_inference import get_criterion, surprise_scores


def auroc(own: torch.Tensor, other: torch.Tensor) -> float:
    """P(own < other) + ½ P(own = other), by ranks (Mann-Whitney U)."""
    both = torch.cat([own, other]).double()
    order = both.argsort()
    ranks = torch.empty_like(both)
    ranks[order] = torch.arange(1, len(both) + 1, dtype=both.dtype)
    # average ranks over ties
    uniq, inverse = torch.unique(both, return_inverse=True)
    sums = torch.zeros(len(uniq), dtype=both.dtype).index_add_(0, inverse, ranks)
    counts = torch.zeros(len(uniq), dtype=both.dtype).index_add_(0, inverse, torch.ones_like(ranks))
    ranks = (sums / counts)[inverse]
    u_other = ranks[len(own):].sum() - len(other) * (len(other) + 1) / 2
    return float(u_other / (len(own) * len(other)))


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", required=True, type=Path)
    ap.add_argument("--criteria", default="entropy,energy,max_logit,entropy_gradient,ensemble")
    ap.add_argument("--out", type=Path, default=Path("docs/task_inference_scores.png"))
    ap.add_argument("--data-root", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    state = load_checkpoint(a.checkpoint, map_location="cpu")
    bench = build_benchmark(state["run"]["config"], a.data_root)
    learner = ContinualLearner.load(a.checkpoint)
    learned = list(learner.learned_tasks)
    x = torch.cat([bench.tasks[t].x_test for t in learned])
    true = torch.cat([torch.full((len(bench.tasks[t].x_test),), i) for i, t in enumerate(learned)])
    crits = [get_criterion(c.strip().replace(";", ",")) for c in a.criteria.split(",") if c.strip()]

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(4, len(crits))
    nrows = (len(crits) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(3.6 * cols, 3.0 * nrows), squeeze=False)
    for ax in axes.reshape(-1)[len(crits):]:
        ax.axis("off")
    summary = {}
    for ax, crit in zip(axes.reshape(-1), crits):
        s = surprise_scores(learner, x, crit)  # (T, N)
        own_mask = torch.zeros_like(s, dtype=torch.bool)
        own_mask[true, torch.arange(len(true))] = True
        own, other = s[own_mask], s[~own_mask]
        ident = (s.argmin(0) == true).double().mean().item()
        area = auroc(own, other)
        summary[crit.spec()] = {"auroc": area, "task_identification": ident}
        label = "surprise (lower = own task)"
        if s.min() >= 0:  # entropies, mutual information: spread over decades
            own, other, s = (v.clamp_min(1e-8).log10() for v in (own, other, s))
            label = "log10 surprise (lower = own task)"
        lo, hi = torch.quantile(s.reshape(-1).double(), torch.tensor([0.005, 0.995], dtype=torch.float64)).tolist()
        bins = torch.linspace(lo, hi, 61).tolist()
        ax.hist(other.clamp(lo, hi).numpy(), bins=bins, density=True, alpha=0.55, label="other tasks' inputs")
        ax.hist(own.clamp(lo, hi).numpy(), bins=bins, density=True, alpha=0.55, label="own task's inputs")
        ax.set_title(f"{crit.spec()}\nAUROC {area:.3f}, task id {100 * ident:.1f}% (pooled)", fontsize=7)
        ax.set_xlabel(label, fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=7)
    run = state["run"]
    fig.suptitle(f"{run['config']['method']} seed {run['seed']}: score of task t's network on its own test inputs "
                 "vs other tasks' test inputs", fontsize=9)
    fig.tight_layout()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out, dpi=110)
    print(json.dumps(summary, indent=1))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
