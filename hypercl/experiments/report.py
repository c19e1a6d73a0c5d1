"""Results files, heatmaps and tables in the paper's format."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from ..checkpoint import atomic_write_text

__all__ = ["PAPER_TABLE1", "METHOD_LABELS", "write_results", "plot_matrices", "format_table", "markdown_table",
           "load_results"]

#: Seed paper, Table 1 (non-replay): final average test accuracy (%) mean ± std.
PAPER_TABLE1: dict[str, dict[str, dict[str, tuple[float, float]]]] = {
    "split_mnist": {
        "ewc": {"cl1": (98.64, 0.22), "cl2": (63.95, 1.90), "cl3": (20.10, 0.06)},
        "online_ewc": {"cl1": (99.12, 0.11), "cl2": (64.32, 1.90), "cl3": (19.96, 0.07)},
        "si": {"cl1": (99.09, 0.15), "cl2": (65.36, 1.57), "cl3": (19.99, 0.06)},
        "hnet": {"cl1": (99.79, 0.01), "cl2": (87.01, 0.47), "cl3": (69.48, 0.80)},
        "hnet_iwr": {"cl1": (99.79, 0.01), "cl2": (88.51, 0.18), "cl3": (71.90, 0.11)},
        "lstm_net": {"cl1": (99.82, 0.01), "cl2": (89.50, 0.19), "cl3": (71.31, 0.07)},
        "lstm_net_iwr": {"cl1": (99.85, 0.02), "cl2": (90.17, 0.25), "cl3": (71.54, 0.04)},
        "lstm_net_grow": {"cl1": (99.85, 0.02), "cl2": (97.11, 0.16), "cl3": (83.21, 0.02)},
    },
    "permuted_mnist": {
        "ewc": {"cl1": (94.74, 0.05), "cl2": (94.31, 0.11), "cl3": (25.04, 0.50)},
        "online_ewc": {"cl1": (95.96, 0.06), "cl2": (94.42, 0.13), "cl3": (33.88, 0.49)},
        "si": {"cl1": (94.75, 0.14), "cl2": (95.33, 0.11), "cl3": (29.31, 0.62)},
        "hnet": {"cl1": (97.57, 0.02), "cl2": (92.80, 0.15), "cl3": (91.75, 0.21)},
        "hnet_iwr": {"cl1": (97.60, 0.04), "cl2": (93.90, 0.11), "cl3": (92.15, 0.19)},
        "lstm_net": {"cl1": (97.65, 0.01), "cl2": (93.11, 0.13), "cl3": (92.10, 0.20)},
        "lstm_net_iwr": {"cl1": (97.74, 0.03), "cl2": (94.26, 0.10), "cl3": (92.21, 0.23)},
        "lstm_net_grow": {"cl1": (97.88, 0.02), "cl2": (95.46, 0.09), "cl3": (92.23, 0.19)},
    },
}

METHOD_LABELS = {
    "finetune": "Finetune", "ewc": "EWC", "online_ewc": "Online EWC", "si": "SI", "hnet": "HNET",
    "hnet_iwr": "HNET_IWR", "lstm_net": "LSTM_NET", "lstm_net_iwr": "LSTM_NET_IWR", "lstm_net_grow": "LSTM_NET_GROW",
    "gru_net": "GRU_NET",
}
BENCHMARK_LABELS = {"split_mnist": "Split MNIST", "permuted_mnist": "Permuted MNIST", "split_cifar": "Split CIFAR"}


def write_results(result: dict, path: Path) -> Path:
    """Write one method's results JSON atomically."""
    return atomic_write_text(json.dumps(result, indent=1, sort_keys=False), path)


def load_results(paths: Iterable[Path]) -> list[dict]:
    out = []
    for p in paths:
        try:
            data = json.loads(Path(p).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{p}: not a readable results JSON ({e})") from e
        if "summary" not in data or "method" not in data:
            raise ValueError(f"{p}: not a hypercl results file (no 'summary'/'method')")
        out.append(data)
    return out


def plot_matrices(result: dict, path: Path) -> Optional[Path]:
    """Accuracy-matrix heatmaps (mean over seeds), one panel per scenario; ``None`` if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # the plot extra is optional
        return None
    scen = [s for s in result["scenarios"] if s in result["summary"]]
    fig, axes = plt.subplots(1, len(scen), figsize=(4.2 * len(scen), 3.8), squeeze=False)
    for ax, s in zip(axes[0], scen):
        m = result["summary"][s]["mean_matrix"]
        data = [[math.nan if v is None else 100 * v for v in row] for row in m]
        im = ax.imshow(data, vmin=0, vmax=100, cmap="viridis")
        for i, row in enumerate(data):
            for j, v in enumerate(row):
                if not math.isnan(v):
                    ax.text(j, i, f"{v:.0f}", ha="center", va="center", fontsize=7,
                            color="white" if v < 60 else "black")
        ax.set_xlabel("evaluated task")
        ax.set_ylabel("after learning task")
        n_rows, n_cols = len(data), len(data[0]) if data else 0
        ax.set_xticks(range(n_cols))
        ax.set_yticks(range(n_rows))
        ax.set_xticklabels([str(j + 1) for j in range(n_cols)])
        ax.set_yticklabels([str(i + 1) for i in range(n_rows)])
        summ = result["summary"][s]
        ax.set_title(f"{s.upper()}: final {100 * summ['final_mean']:.1f}%")
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="test accuracy (%)")
    label = METHOD_LABELS.get(result["method"], result["method"])
    fig.suptitle(f"{label} on {BENCHMARK_LABELS.get(result['benchmark'], result['benchmark'])} "
                 f"({result['summary'][scen[0]]['n_seeds']} seed(s))")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
    tmp.replace(path)
    return path


def _cell(mean: Optional[float], std: Optional[float]) -> str:
    if mean is None:
        return "—"
    return f"{100 * mean:.2f} ± {100 * (std or 0.0):.2f}"


def format_table(results: Sequence[dict], scenarios: Sequence[str] = ("cl1", "cl2", "cl3"),
                 with_paper: bool = True, markdown: bool = False) -> str:
    """Final average accuracy (%) per method × scenario, mean ± std over seeds, with the paper's Table 1 numbers."""
    by_bench: dict[str, list[dict]] = {}
    for r in results:
        by_bench.setdefault(r["benchmark"], []).append(r)
    lines: list[str] = []
    for bench, rs in by_bench.items():
        paper = PAPER_TABLE1.get(bench, {})
        header = ["method"] + [s.upper() for s in scenarios]
        if with_paper:
            header += [f"paper {s.upper()}" for s in scenarios]
        header += ["seeds", "params (ratio)", "wall s"]
        rows = []
        for r in rs:
            summ = r["summary"]
            row = [METHOD_LABELS.get(r["method"], r["method"])]
            row += [_cell(summ[s]["final_mean"], summ[s]["final_std"]) if s in summ else "—" for s in scenarios]
            if with_paper:
                p = paper.get(r["method"], {})
                row += [f"{p[s][0]:.2f} ± {p[s][1]:.2f}" if s in p else "—" for s in scenarios]
            n = max(summ[s]["n_seeds"] for s in summ)
            params = r.get("params", {})
            row += [str(n), f"{params.get('model', 0):,} ({params.get('compression_ratio', 0):.2f})",
                    f"{r.get('wall_time_s', 0):.0f}"]
            rows.append(row)
        title = f"{BENCHMARK_LABELS.get(bench, bench)} — final average test accuracy (%), mean ± std over seeds"
        if markdown:
            lines += [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(row) + " |" for row in rows]
        else:
            widths = [max(len(x) for x in col) for col in zip(header, *rows)]
            lines += [title, "  ".join(h.ljust(w) for h, w in zip(header, widths))]
            lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
        lines.append("")
    return "\n".join(lines)


def markdown_table(results: Sequence[dict], **kw: Any) -> str:
    return format_table(results, markdown=True, **kw)
