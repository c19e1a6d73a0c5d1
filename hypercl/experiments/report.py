"""Results files, heatmaps and tables in the paper's format."""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from ..checkpoint import atomic_save_figure, atomic_write_text
from .results_file import ResultsFileError, read_results, results_text

__all__ = [
    "PAPER_TABLE1",
    "METHOD_LABELS",
    "write_results",
    "plot_matrices",
    "format_table",
    "markdown_table",
    "is_reduced",
    "size_notes",
    "load_results",
    "PAPER_TABLE3",
    "format_table3",
    "merge_results",
    "results_path",
    "merge_loaded",
    "ResultsFileError",
    "read_results",
    "check_results_file",
]

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

#: Seed paper, Table 3 (Split CIFAR-10/100, CL1): test accuracy (%) per task — C-10, then the CIFAR-100 splits
#: S1..S5 — after learning all six tasks ("final"), and the paper's average; LSTM_NET also has its "during" row (each
#: task tested right after it was learned). "scratch" is the paper's "Training-from-scratch".
PAPER_TABLE3: dict[str, dict[str, Any]] = {
    "finetune": {"final": (15.3, 13.1, 12.2, 10.2, 20.3, 87.0), "average": 26.35},
    "scratch": {"final": (88.6, 79.3, 77.0, 83.0, 74.4, 81.1), "average": 80.60},
    "hnet": {"final": (88.0, 83.0, 79.0, 82.0, 81.0, 82.0), "average": 82.50},
    "hnet_iwr": {"final": (86.2, 86.1, 80.2, 85.0, 83.6, 85.01), "average": 84.35},
    "lstm_net": {
        "final": (88.74, 89.1, 84.9, 84.3, 83.4, 82.7),
        "average": 85.52,
        "during": (88.78, 89.3, 85.2, 84.4, 83.5, 82.7),
        "during_average": 85.64,
    },
    "lstm_net_iwr": {"final": (88.44, 88.9, 85.2, 88.5, 86.3, 86.8), "average": 87.35},
    "lstm_net_grow": {"final": (88.98, 87.7, 86.3, 88.2, 89.2, 89.1), "average": 88.25},
}

METHOD_LABELS = {
    "finetune": "Finetune",
    "ewc": "EWC",
    "online_ewc": "Online EWC",
    "si": "SI",
    "hnet": "HNET",
    "hnet_iwr": "HNET_IWR",
    "lstm_net": "LSTM_NET",
    "lstm_net_iwr": "LSTM_NET_IWR",
    "lstm_net_grow": "LSTM_NET_GROW",
    "gru_net": "GRU_NET",
    "scratch": "Training-from-scratch",
}
BENCHMARK_LABELS = {"split_mnist": "Split MNIST", "permuted_mnist": "Permuted MNIST", "split_cifar": "Split CIFAR"}


def write_results(result: dict, path: Path) -> Path:
    """Write one method's results JSON atomically."""
    return atomic_write_text(results_text(result), path)


def results_path(out: Path, benchmark: str, method: str, quick: bool, fingerprint: str) -> Path:
    """``<benchmark>_<method>[_quick]_<fingerprint>.json``: one file per run identity (all its seeds)."""
    return Path(out) / f"{benchmark}_{method}{'_quick' if quick else ''}_{fingerprint}.json"


@contextlib.contextmanager
def _locked(path: Path):
    lock = path.parent / f".{path.name}.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # other processes writing the same results file wait here
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _merge_runs(old_runs: list[dict], new_runs: list[dict]) -> list[dict]:
    """Per (seed, scenario): the new result replaces the old one of the same identity, everything else is kept."""
    by_seed: dict[int, dict] = {}
    for r in list(old_runs) + list(new_runs):
        seed = int(r["seed"])
        if seed not in by_seed:
            by_seed[seed] = json.loads(json.dumps(r))
            continue
        cur = by_seed[seed]
        cur["scenarios"].update(r["scenarios"])
        for key in ("train_log", "identity", "val"):
            if key in r:
                cur.setdefault(key, {}).update(r[key])
        for key in ("params", "wall_time_s", "parallel_seeds"):
            if key in r:
                cur[key] = r[key]
    return [by_seed[s] for s in sorted(by_seed)]


def merge_loaded(results: Sequence[dict]) -> list[dict]:
    """Results of the same (benchmark, method, fingerprint) -- e.g. the same run copied from two machines -- as one
    result over the union of their seeds; results without a fingerprint (older files) are kept as they are."""
    from .summary import summarize

    groups: dict[tuple, dict] = {}
    out: list[dict] = []
    for r in results:
        fp = r.get("fingerprint")
        if fp is None:
            out.append(r)
            continue
        key = (r["benchmark"], r["method"], fp)
        if key not in groups:
            groups[key] = dict(r)
            out.append(groups[key])
            continue
        g = groups[key]
        g["runs"] = _merge_runs(g["runs"], r["runs"])
        g["scenarios"] = sorted(set(g["scenarios"]) | set(r["scenarios"]))
        g["seeds"] = [run["seed"] for run in g["runs"]]
        g["summary"] = summarize(g["runs"], g["scenarios"])
    return out


def merge_results(result: dict, path: Path) -> dict:
    """Add ``result`` (some seeds / scenarios of one run identity) to the results file at ``path``, under a file lock:
    seeds and scenarios of other processes are kept, a repeated (seed, scenario) takes the newer numbers, and the
    summary is recomputed over all seeds. A file of another identity is never overwritten (ValueError)."""
    from .summary import summarize

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        merged = dict(result)
        if path.exists():
            old = check_results_file(path, result.get("fingerprint"))
            merged["runs"] = _merge_runs(old.get("runs", []), result["runs"])
            merged["scenarios"] = sorted(set(old.get("scenarios", [])) | set(result["scenarios"]))
            commands = [*old.get("commands", [old.get("command")]), result.get("command")]
            merged["commands"] = list(dict.fromkeys(commands))
            merged["wall_time_s"] = old.get("wall_time_s", 0.0) + result.get("wall_time_s", 0.0)
        else:
            merged["commands"] = [result.get("command")]
        merged["seeds"] = [r["seed"] for r in merged["runs"]]
        merged["summary"] = summarize(merged["runs"], merged["scenarios"])
        write_results(merged, path)
    return merged


def check_results_file(path: Path, fingerprint: Optional[str]) -> dict:
    """The content of the results file a run will merge into (:func:`read_results`); :class:`ResultsFileError` if it
    is damaged or holds another run (``fingerprint``) — checked before training, so nothing trains in vain."""
    try:
        old = read_results(path)
    except ResultsFileError as e:
        raise ResultsFileError(f"{e} (it is in the way of this run's results: move it away)") from None
    if old.get("fingerprint") != fingerprint:
        raise ResultsFileError(
            f"{path} holds another run (fingerprint {old.get('fingerprint')}, this run {fingerprint}); move it away"
        )
    return old


def load_results(paths: Iterable[Path]) -> list[dict]:
    """Every file read with :func:`read_results` (the first damaged one raises :class:`ResultsFileError`)."""
    return [read_results(p) for p in paths]


def plot_matrices(result: dict, path: Path) -> Optional[Path]:
    """Accuracy-matrix heatmaps (mean over seeds), one panel per scenario; ``None`` if matplotlib is missing."""
    from ..plotting import pyplot

    plt = pyplot()
    if plt is None:
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
                    ax.text(
                        j, i, f"{v:.0f}", ha="center", va="center", fontsize=7, color="white" if v < 60 else "black"
                    )
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
    reduced = " — REDUCED RUN (--quick: data subset, few steps)" if is_reduced(result) else ""
    fig.suptitle(
        f"{label} on {BENCHMARK_LABELS.get(result['benchmark'], result['benchmark'])} "
        f"({result['summary'][scen[0]]['n_seeds']} seed(s)){reduced}"
    )
    return atomic_save_figure(fig, path)


def is_reduced(result: dict) -> bool:
    """Whether a results entry comes from a reduced (``--quick``) run."""
    return bool(result.get("reduced") or result.get("config", {}).get("quick"))


def size_notes(results: Sequence[dict]) -> list[str]:
    """One line per method whose model (hypernetwork) has more parameters than its target network."""
    lines = []
    for r in results:
        p = r.get("params", {})
        ratio = p.get("compression_ratio")
        if ratio is not None and ratio > 1:
            label = METHOD_LABELS.get(r["method"], r["method"])
            target = p.get("target")
            of = f" ({p.get('model', 0):,} vs {target:,} parameters)" if target else ""
            lines.append(f"note: {label}'s model is {ratio:.2f}x its target network{of}")
    return lines


def _compact_cell(st: Optional[dict]) -> str:
    """``mean±se`` in % (a single seed: the value alone)."""
    if not st or st.get("mean") is None:
        return "—"
    if st.get("se") is None:
        return f"{100 * st['mean']:.2f}"
    return f"{100 * st['mean']:.2f}±{100 * st['se']:.2f}"


def _row_label(r: dict, n_methods: dict[str, int]) -> str:
    """A table row's method label: the criterion (not entropy), ``(reduced)``, the identity when a method repeats."""
    from ..replay.runner import REPLAY_METHOD_LABELS

    label = METHOD_LABELS.get(r["method"], REPLAY_METHOD_LABELS.get(r["method"], r["method"]))
    crit = (r.get("config", {}).get("evaluation") or {}).get("task_inference")
    if crit:  # CL2/CL3 criterion other than entropy (hypercl.task_inference)
        label += f" @{crit}"
    if is_reduced(r):
        label += " (reduced)"
    if n_methods[r["method"]] > 1 and r.get("fingerprint"):
        label += f" [{r['fingerprint'][:8]}]"
    return label


def _compact_table(rs: list[dict], scen: list[str], bench: str) -> list[str]:
    rows, reduced = [], False
    n_methods: dict[str, int] = {}
    for r in rs:
        n_methods[r["method"]] = n_methods.get(r["method"], 0) + 1
    for r in rs:
        summ = r["summary"]
        label = _row_label(r, n_methods)
        if is_reduced(r):
            reduced = True
        params = r.get("params", {})
        n = max(summ[s]["n_seeds"] for s in summ)
        rows.append(
            [label]
            + [_compact_cell(_stats_of(summ[s], "final")) if s in summ else "—" for s in scen]
            + [
                str(n),
                f"{params.get('model', 0):,}",
                f"{params.get('compression_ratio', 0):.2f}",
                f"{r.get('wall_time_s', 0):.0f}",
            ]
        )
    header = ["method"] + [s.upper() for s in scen] + ["n", "params", "x target", "wall s"]
    title = f"{BENCHMARK_LABELS.get(bench, bench)}: final average test accuracy (%), mean±se over n seeds"
    if reduced:
        title += " — REDUCED RUN (--quick)"
    lines = _render(title, header, rows, markdown=False)
    return [*lines[:-1], "(--wide: sd, se, during averages, CL3 task inference, the paper's numbers)", ""]


def _render(title: str, header: list[str], rows: list[list[str]], markdown: bool) -> list[str]:
    """A table as markdown (``### title`` + pipe table) or aligned plain text, followed by a blank line."""
    if markdown:
        lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
    else:
        widths = [max(len(x) for x in col) for col in zip(header, *rows)]
        lines = [title, "  ".join(h.ljust(w) for h, w in zip(header, widths))]
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in rows]
    return [*lines, ""]


def _cell(mean: Optional[float], std: Optional[float], n: Optional[int] = None) -> str:
    """``mean ± std`` (a single seed: the mean alone, no "± 0.00")."""
    if mean is None:
        return "—"
    if std is None or n == 1:
        return f"{100 * mean:.2f}"
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


def _stat_cell(st: Optional[dict]) -> str:
    """One table cell: mean, sample std, standard error, n (in %); a single seed shows its value and n=1."""
    if not st or st.get("mean") is None:
        return "—"
    if st.get("std") is None:
        return f"{100 * st['mean']:.2f} (n=1)"
    return f"{100 * st['mean']:.2f} sd {100 * st['std']:.2f} se {100 * st['se']:.2f} (n={st['n']})"


def _stats_of(summ: dict, key: str) -> Optional[dict]:
    """The n/mean/std/se of one summary quantity (older results files: rebuilt from mean/std/n_seeds)."""
    st = summ.get("stats", {}).get(key)
    if st is not None:
        return st
    mean, std, n = summ.get(f"{key}_mean"), summ.get(f"{key}_std"), summ.get("n_seeds", 0)
    if mean is None:
        return None
    std = std if n > 1 else None
    return {"n": n, "mean": mean, "std": std, "se": std / math.sqrt(n) if std is not None else None}


def format_table(
    results: Sequence[dict],
    scenarios: Sequence[str] = ("cl1", "cl2", "cl3"),
    with_paper: bool = True,
    markdown: bool = False,
    wide: Optional[bool] = None,
) -> str:
    """Final average accuracy (%) per method × scenario over seeds.

    ``wide`` (default: markdown is wide, plain text compact): n, mean, sd, se of the final and during averages, CL3
    task inference and the paper's Table 1 numbers; compact (at most ~100 characters for the paper's methods):
    mean±se of the final average, n, parameters and their ratio to the target, wall time.
    """
    wide = markdown if wide is None else bool(wide)
    by_bench: dict[str, list[dict]] = {}
    for r in results:
        by_bench.setdefault(r["benchmark"], []).append(r)
    lines: list[str] = []
    from ..replay.runner import PAPER_TABLE2, REPLAY_METHOD_LABELS

    order = list(METHOD_LABELS) + list(REPLAY_METHOD_LABELS)
    results = merge_loaded(results)
    for bench, rs in by_bench.items():
        rs = [r for r in results if r["benchmark"] == bench]
        rs = sorted(rs, key=lambda r: order.index(r["method"]) if r["method"] in order else len(order))
        paper = {**PAPER_TABLE1.get(bench, {}), **PAPER_TABLE2.get(bench, {})}
        scen = [s for s in scenarios if any(s in r["summary"] for r in rs)] or list(scenarios)
        if not wide and not markdown:
            lines += _compact_table(rs, scen, bench)
            continue
        header = ["method"]
        for s in scen:
            header += [f"{s.upper()} final", f"{s.upper()} during"]
        if "cl3" in scen:
            header += ["CL3 task inference"]
        if with_paper:
            header += [f"paper {s.upper()}" for s in scen]
        header += ["seeds", "params (ratio)", "wall s"]
        rows = []
        n_methods: dict[str, int] = {}
        for r in rs:
            n_methods[r["method"]] = n_methods.get(r["method"], 0) + 1
        reduced = False
        for r in rs:
            summ = r["summary"]
            label = METHOD_LABELS.get(r["method"], REPLAY_METHOD_LABELS.get(r["method"], r["method"]))
            crit = (r.get("config", {}).get("evaluation") or {}).get("task_inference")
            if crit:  # CL2/CL3 criterion other than entropy (hypercl.task_inference)
                label += f" @{crit}"
            if r.get("reduced") or r.get("config", {}).get("quick"):
                reduced = True
                label += " (reduced)"
            if n_methods[r["method"]] > 1 and r.get("fingerprint"):
                label += f" [{r['fingerprint'][:8]}]"
            row = [label]
            for s in scen:
                row += [
                    _stat_cell(_stats_of(summ[s], "final")) if s in summ else "—",
                    _stat_cell(_stats_of(summ[s], "during")) if s in summ else "—",
                ]
            if "cl3" in scen:
                row += [_stat_cell(_stats_of(summ["cl3"], "task_inference")) if "cl3" in summ else "—"]
            if with_paper:
                p = paper.get(r["method"], {})
                row += [f"{p[s][0]:.2f} ± {p[s][1]:.2f}" if s in p else "—" for s in scen]
            n = max(summ[s]["n_seeds"] for s in summ)
            params = r.get("params", {})
            row += [
                str(n),
                f"{params.get('model', 0):,} ({params.get('compression_ratio', 0):.2f})",
                f"{r.get('wall_time_s', 0):.0f}",
            ]
            rows.append(row)
        title = (
            f"{BENCHMARK_LABELS.get(bench, bench)} — final average test accuracy (%) (every task after the last "
            "one) and during average (each task right after it was learned): mean, sample std (sd), standard "
            "error (se = sd/sqrt(n)), n seeds"
        )
        if reduced:
            title += (
                " — REDUCED RUN (--quick: data subset, few steps; not comparable with the paper's "
                "full-protocol numbers)"
            )
        lines += _render(title, header, rows, markdown)
    return "\n".join(lines)


def markdown_table(results: Sequence[dict], **kw: Any) -> str:
    return format_table(results, markdown=True, **kw)


def format_table3(
    results: Sequence[dict], with_paper: bool = True, markdown: bool = False, scenario: str = "cl1"
) -> str:
    """Split CIFAR in the layout of the seed paper's Table 3: per-task accuracy (%) after the last task ("final") and
    right after each task ("during"), mean over seeds, with the average (± std over seeds) and the paper's rows."""
    rs = [r for r in results if r.get("benchmark") == "split_cifar"]
    if not rs:
        return ""
    n_tasks = 0
    for r in rs:
        for run in r["runs"]:
            if scenario in run["scenarios"]:
                n_tasks = max(n_tasks, len(run["scenarios"][scenario]["tasks"]))
    cols = ["C-10"] + [f"S{i}" for i in range(1, n_tasks)]
    header = ["method", *cols, "average", "seeds"]
    rows: list[list[str]] = []

    def per_task(vals: list[list[Optional[float]]]) -> list[str]:
        out = []
        for j in range(n_tasks):
            got = [float(x) for v in vals if j < len(v) for x in (v[j],) if x is not None]
            out.append(f"{100 * sum(got) / len(got):.2f}" if got else "—")
        return out

    for r in rs:
        runs = [run["scenarios"][scenario] for run in r["runs"] if scenario in run["scenarios"]]
        if not runs:
            continue
        label = METHOD_LABELS.get(r["method"], r["method"])
        finals = [res["matrix"][-1] if res["matrix"] else [] for res in runs]
        durings = [res["during"] for res in runs]
        summ = r["summary"].get(scenario, {})
        n = len(runs)
        rows.append([label, *per_task(finals), _cell(summ.get("final_mean"), summ.get("final_std"), n), str(n)])
        rows.append(
            [f"{label} during", *per_task(durings), _cell(summ.get("during_mean"), summ.get("during_std"), n), str(n)]
        )
        paper = PAPER_TABLE3.get(r["method"]) if with_paper else None
        if paper:
            for key, avg_key, suffix in (("final", "average", ""), ("during", "during_average", " during")):
                if key in paper:
                    vals = [f"{v:.2f}" for v in paper[key][:n_tasks]] + ["—"] * max(0, n_tasks - len(paper[key]))
                    rows.append([f"  paper {label}{suffix}", *vals, f"{paper[avg_key]:.2f}", "—"])
    title = (
        "Split CIFAR-10/100 (Table 3 layout) — test accuracy (%) per task after the last task and right after "
        f"learning it ({scenario.upper()}), mean over seeds"
    )
    return "\n".join(_render(title, header, rows, markdown))
