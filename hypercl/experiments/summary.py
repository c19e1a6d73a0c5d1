"""Summaries over seeds: n, mean, sample std and standard error of each run quantity, and the mean accuracy matrix."""

from __future__ import annotations

import math
import statistics
from typing import Any, Optional, Sequence

__all__ = ["seed_stats", "mean_std", "summarize"]


def seed_stats(values: Sequence[Optional[float]]) -> dict:
    """n, mean, sample std (``None`` for one value) and standard error std/sqrt(n) of the non-missing values."""
    vals = [v for v in values if v is not None and not math.isnan(v)]
    n = len(vals)
    if not n:
        return {"n": 0, "mean": None, "std": None, "se": None}
    std = statistics.stdev(vals) if n > 1 else None
    return {"n": n, "mean": statistics.fmean(vals), "std": std, "se": std / math.sqrt(n) if std is not None else None}


def mean_std(values: Sequence[Optional[float]]) -> tuple[Optional[float], Optional[float]]:
    """Mean and sample std of the non-missing values (see :func:`seed_stats`)."""
    st = seed_stats(values)
    return st["mean"], st["std"]


def summarize(seed_runs: list[dict], scenarios: Sequence[str]) -> dict:
    """Mean ± sample std over seeds of the final and "during" averages, task inference and backward transfer."""
    summary: dict[str, Any] = {}
    for s in scenarios:
        res = [r["scenarios"][s] for r in seed_runs if s in r["scenarios"]]
        final_vals = [r["final_average"] for r in res]
        during_vals = [r["during_average"] for r in res]
        bwt_vals = [r["backward_transfer"] for r in res]
        final, during, bwt = mean_std(final_vals), mean_std(during_vals), mean_std(bwt_vals)
        ti_vals: list[Optional[float]] = []
        for r in res:
            last = [v for v in (r["task_inference_matrix"][-1] if r["task_inference_matrix"] else []) if v is not None]
            ti_vals.append(sum(last) / len(last) if last else None)
        ti = mean_std(ti_vals)
        stats = {
            "final": seed_stats(final_vals),
            "during": seed_stats(during_vals),
            "bwt": seed_stats(bwt_vals),
            "task_inference": seed_stats(ti_vals),
        }
        n_rows = max(len(r["matrix"]) for r in res)
        n_cols = max(len(r["tasks"]) for r in res)
        mean_matrix: list[list[Optional[float]]] = []
        for i in range(n_rows):
            row = []
            for j in range(n_cols):
                vals = [
                    r["matrix"][i][j]
                    for r in res
                    if i < len(r["matrix"]) and j < len(r["matrix"][i]) and r["matrix"][i][j] is not None
                ]
                row.append(statistics.fmean(vals) if vals else None)
            mean_matrix.append(row)
        summary[s] = {
            "final_mean": final[0],
            "final_std": final[1],
            "during_mean": during[0],
            "during_std": during[1],
            "bwt_mean": bwt[0],
            "bwt_std": bwt[1],
            "task_inference_mean": ti[0],
            "task_inference_std": ti[1],
            "mean_matrix": mean_matrix,
            "n_seeds": len(res),
            "stats": stats,  # per quantity: n, mean, sample std, standard error (std / sqrt(n))
        }
    return summary
