#!/usr/bin/env python
"""Why LSTM_NET_GROW's CL3 falls short: task inference by entropy, measured on finished campaign checkpoints.

    python scripts/grow_analysis.py measure --runs docs/fidelity/runs --json docs/fidelity/grow_analysis.json \\
        --png docs/grow_entropy.png                           # every finished seed of the variants below, test set
    python scripts/grow_analysis.py train-val --variant lstm_net_grow --seeds 0-2 --out results/grow_val
    python scripts/grow_analysis.py measure --split val --ckpt-root results/grow_val ...   # hypotheses: val split only

For each finished seed of ``lstm_net_grow`` (copied new-task weights), ``lstm_net_grow_fresh`` and ``hnet`` (for
contrast) it loads the final checkpoint (read-only) and, on every task's test inputs, runs EVERY learned task's
generated network (the candidates of the entropy rule, :func:`hypercl.scenarios.masked_entropy`): the inferred task is
the candidate of lowest entropy, its output gives the class. From that: the task-inference confusion matrix (true task
x inferred task), the CL3 errors split into wrong-task and right-task-wrong-class, per-task CL3 accuracy (checked
against the seed's record: the same numbers as the campaign's evaluation), which task pairs take the errors, each
network's entropy on its own task's inputs and on the other tasks' inputs (summaries, one PNG), and how many samples
the float32 entropy cannot rank (several candidates at exactly the same, usually zero, entropy: argmin then takes the
lowest task index).

``train-val`` trains a variant with a validation split (the last 1000 training samples of each task held out, the
runner's ``val_size``) and checkpoints it, so a hypothesis about task inference is measured on held-out training data
(``--split val``), never tuned on the test set.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fidelity  # the campaign driver: variant configs, identities, record paths

from hypercl.config import RunConfig
from hypercl.experiments.runner import build_benchmark, run_seed
from hypercl.learner import ContinualLearner
from hypercl.scenarios import confusion_matrix, masked_entropy

VARIANTS = ("lstm_net_grow", "lstm_net_grow_fresh", "hnet")
VAL_SIZE = 1000


# ---------------------------------------------------------------- per-sample outputs of every candidate task
@torch.no_grad()
def task_logits(learner: ContinualLearner, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """``(T, N, O)`` logits of every learned task's generated network on the inputs ``x`` (the candidates of the
    entropy rule, as :meth:`ContinualLearner.evaluate` runs them: all weights generated in one call)."""
    learner.hnet.eval()
    learner.target.eval()
    weights = learner.task_weights(list(learner.learned_tasks))
    return torch.cat([learner.batched_logits(weights, x[i:i + batch_size]) for i in range(0, len(x), batch_size)],
                     dim=1)


def inference(learner: ContinualLearner, logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """Entropy rule on ``(T, N, O)`` logits: each candidate's entropy over its own units (float32, as the library's
    evaluation; and float64), the inferred row, each candidate's local class prediction, and the number of samples
    whose lowest float32 entropy is shared by several candidates (a tie argmin breaks toward the first row)."""
    learned = list(learner.learned_tasks)
    mask = learner.heads.unit_mask(learned, logits.shape[-1], logits.device)
    starts = torch.tensor([learner.heads.units(t)[0] for t in learned], device=logits.device)
    ent = masked_entropy(logits, mask)  # (T, N)
    ent64 = masked_entropy(logits.double(), mask)
    local = logits.masked_fill(~mask.unsqueeze(1), float("-inf")).argmax(-1) - starts.unsqueeze(1)  # (T, N)
    ties = (ent == ent.min(0).values).sum(0) > 1
    return {"entropy": ent, "entropy64": ent64, "inferred": ent.argmin(0), "inferred64": ent64.argmin(0),
            "local": local, "ties": ties}


def split_data(bench: Any, split: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    if split == "test":
        return [(t.x_test, t.y_test) for t in bench.tasks]
    if any(t.val is None for t in bench.tasks):
        raise SystemExit("--split val: the benchmark holds no validation split (train with train-val first)")
    return [t.val for t in bench.tasks]


def auroc(own: torch.Tensor, other: torch.Tensor) -> float:
    """P(entropy on an own-task input < entropy on an other-task input), ties counted half (Mann-Whitney)."""
    allv = torch.cat([own, other]).double()
    ranks = torch.empty_like(allv)
    order = allv.argsort()
    ranks[order] = torch.arange(1, len(allv) + 1, dtype=torch.float64)
    for v in allv.unique()[allv.unique(return_counts=True)[1] > 1]:  # average ranks of ties
        sel = allv == v
        ranks[sel] = ranks[sel].mean()
    r_own = ranks[: len(own)].sum()
    u = r_own - len(own) * (len(own) + 1) / 2
    return float(1.0 - u / (len(own) * len(other)))


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman rank correlation of two equally long lists (average ranks for ties)."""
    def ranks(v: list[float]) -> torch.Tensor:
        t = torch.tensor(v, dtype=torch.float64)
        r = torch.empty_like(t)
        r[t.argsort()] = torch.arange(len(v), dtype=torch.float64)
        for x in t.unique():
            r[t == x] = r[t == x].mean()
        return r

    ra, rb = ranks(a), ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return float((ra * rb).sum() / (ra.norm() * rb.norm()))


def analyse(learner: ContinualLearner, data: list[tuple[torch.Tensor, torch.Tensor]]) -> dict:
    """Confusion matrix, error split, per-task CL3/CL1 accuracy, entropy summaries of one learner on one split."""
    learned = list(learner.learned_tasks)
    T = len(learned)
    true_rows, inferred, inferred64, cl3_ok, cl3_ok64, cl1_ok, wrong_task, wrong_class, ties = ([] for _ in range(9))
    ent_by_input: list[torch.Tensor] = []
    for row, t in enumerate(learned):
        x, y = data[t]
        inf = inference(learner, task_logits(learner, x))
        own_class_ok = inf["local"][row] == y
        picked_ok = inf["local"].gather(0, inf["inferred"].unsqueeze(0)).squeeze(0) == y
        true_rows.append(torch.full_like(y, row))
        inferred.append(inf["inferred"])
        inferred64.append(inf["inferred64"])
        cl3_ok.append((inf["inferred"] == row) & picked_ok)
        cl3_ok64.append((inf["inferred64"] == row) & own_class_ok)
        cl1_ok.append(own_class_ok)
        wrong_task.append(inf["inferred"] != row)
        wrong_class.append((inf["inferred"] == row) & ~own_class_ok)
        ties.append(inf["ties"])
        ent_by_input.append(inf["entropy"])
    rows_t, inf_t = torch.cat(true_rows), torch.cat(inferred)
    conf = confusion_matrix(rows_t, inf_t, T)
    conf64 = confusion_matrix(rows_t, torch.cat(inferred64), T)
    n = [len(data[t][1]) for t in learned]
    per_task: dict[str, list] = {
        "n": n,
        "cl3_accuracy": [int(v.sum()) / len(v) for v in cl3_ok],  # count / n, as the learner's evaluate()
        "cl1_accuracy": [int(v.sum()) / len(v) for v in cl1_ok],
        "task_inference": [int(conf[i, i]) / int(conf[i].sum()) for i in range(T)],
        "wrong_task_errors": [int(v.sum()) for v in wrong_task],
        "right_task_wrong_class_errors": [int(v.sum()) for v in wrong_class],
        # of the samples sent to a wrong task, how many their own task's network classifies right (the loss that
        # task inference alone causes)
        "wrong_task_own_net_right": [int((w & c).sum()) for w, c in zip(wrong_task, cl1_ok)],
        "entropy_ties": [int(v.sum()) for v in ties],
    }
    errors = sum(per_task["wrong_task_errors"]) + sum(per_task["right_task_wrong_class_errors"])
    off = conf.clone()
    off.fill_diagonal_(0)
    pairs = sorted(((int(off[i, j]), learned[i], learned[j]) for i in range(T) for j in range(T) if off[i, j]),
                   reverse=True)
    # entropy of network j on inputs of task i: quantiles, and how well it separates own from other inputs
    q = torch.tensor([0.1, 0.5, 0.9], dtype=torch.float64)
    ent_summary = []
    for j in range(T):
        own = ent_by_input[j][j]
        other = torch.cat([ent_by_input[i][j] for i in range(T) if i != j])
        ent_summary.append({
            "network": learned[j],
            "own_quantiles_10_50_90": torch.quantile(own.double(), q).tolist(),
            "other_quantiles_10_50_90": torch.quantile(other.double(), q).tolist(),
            "own_zero_entropy": float((own == 0).float().mean()),
            "other_zero_entropy": float((other == 0).float().mean()),
            "per_input_task_median": [float(ent_by_input[i][j].double().median()) for i in range(T)],
            "auroc_own_vs_other": auroc(own, other),
        })
    total = sum(n)
    own_median = [e["own_quantiles_10_50_90"][1] for e in ent_summary]
    return {
        # a task's identification against how confident its own network is on its own inputs (rank correlation
        # over the tasks: -1 = the less confident a task's network, the more of its inputs go to other tasks)
        "spearman_own_median_entropy_vs_task_inference": spearman(own_median, per_task["task_inference"]),
        "tasks": learned,
        "confusion": conf.tolist(),
        "confusion_float64_entropy": conf64.tolist(),
        "cl3_average": sum(per_task["cl3_accuracy"]) / T,
        "cl3_average_float64_entropy": sum(int(v.sum()) / len(v) for v in cl3_ok64) / T,
        "errors": {"total": errors, "wrong_task": sum(per_task["wrong_task_errors"]),
                   "right_task_wrong_class": sum(per_task["right_task_wrong_class_errors"]),
                   "wrong_task_own_net_right": sum(per_task["wrong_task_own_net_right"]),
                   "entropy_ties": sum(per_task["entropy_ties"]), "samples": total},
        "per_task": per_task,
        "top_confusions": [{"true": a, "inferred": b, "count": c} for c, a, b in pairs[:6]],
        "entropy": ent_summary,
        "_entropies": [e.cpu() for e in ent_by_input],  # (input task) -> (network, N); for the plot, not the JSON
    }


# ---------------------------------------------------------------- finished seeds
def variant_config(variant: str, val: bool = False) -> RunConfig:
    """The campaign's config of ``variant``; with ``val`` its ``train-val`` twin (VAL_SIZE samples held out)."""
    cfg = fidelity.variant_config(variant)
    if val:
        cfg = cfg.replace(benchmark=dataclasses.replace(cfg.benchmark, val_size=VAL_SIZE))
    return cfg


def finished_seeds(runs: Path, variant: str, ckpt_root: Path | None = None, val: bool = False
                   ) -> list[tuple[int, dict, Path]]:
    """(seed, record, final checkpoint) of every seed of ``variant``'s current identity with a record and a
    checkpoint after its last task (``runs/<variant>-<identity>-seed<k>.json`` and ``<ckpt_root>/<variant>-<identity>/
    *_seed<k>.pt``; ``ckpt_root`` defaults to ``runs/ckpt``)."""
    ident = fidelity.identity(variant_config(variant, val))
    out = []
    for rec_path in sorted(runs.glob(f"{variant}-{ident}-seed*.json"), key=lambda p: int(p.stem.rsplit("seed", 1)[1])):
        rec = json.loads(rec_path.read_text())
        cks = sorted(((ckpt_root or runs / "ckpt") / f"{variant}-{ident}").glob(f"*_seed{rec['seed']}.pt"))
        if len(cks) == 1:
            out.append((int(rec["seed"]), rec, cks[0]))
    return out


def load_learner(path: Path) -> ContinualLearner:
    """A learner from a checkpoint (read only: the file is opened for reading, never written)."""
    return ContinualLearner.load(path, device="cpu")


def train_val(variant: str, seeds: list[int], out: Path, data_root: str | None) -> None:
    """Train ``variant`` with the last VAL_SIZE training samples of each task held out; checkpoints and a record
    (``<out>/<variant>-<identity>-seed<k>.json``, the validation accuracies included) per seed."""
    cfg = variant_config(variant, val=True)
    ident = fidelity.identity(cfg)
    bench = build_benchmark(cfg, data_root)
    for seed in seeds:
        path = out / f"{variant}-{ident}-seed{seed}.json"
        if path.exists():
            continue
        ck = out / "ckpt" / f"{variant}-{ident}"
        ck.mkdir(parents=True, exist_ok=True)
        raw = run_seed(cfg, bench, seed, scenarios=fidelity.SCENARIOS, checkpoint_dir=ck, resume=True)
        rec = {"variant": variant, "identity": ident, "seed": seed, "config": cfg.to_json(),
               "environment": fidelity.environment(),
               "run": {"val": raw.get("val"), "test_final_cl3": raw["scenarios"]["cl3"]["final_average"]}}
        path.write_text(json.dumps(rec, indent=1) + "\n")
        print(f"{variant} seed {seed}: val CL3 final {raw['val']['cl3']['final_average']:.4f}", flush=True)


# ---------------------------------------------------------------- plot
def rule_margin(ent_by_input: list[torch.Tensor]) -> torch.Tensor:
    """Per input (all tasks' inputs): log10 of its own task's network's entropy minus log10 of the lowest entropy of
    the other networks; the entropy rule picks the right task where this is < 0."""
    out = []
    for i, ent in enumerate(ent_by_input):  # ent: (networks, N) on task i's inputs
        lg = ent.double().clamp_min(1e-300).log10()
        others = torch.cat([lg[:i], lg[i + 1:]]).min(0).values
        out.append(lg[i] - others)
    return torch.cat(out)


def plot(entropies: dict[str, list[list[torch.Tensor]]], path: Path) -> None:
    """ONE PNG: a row per variant, a column per task's network; the log10 entropy of that network on its own task's
    inputs and on the other tasks' inputs (all seeds pooled; zero entropy drawn at the left edge)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hypercl.checkpoint import atomic_save_figure

    variants = [v for v in entropies if entropies[v]]
    T = len(entropies[variants[0]][0])
    floor = -40.0
    fig, axes = plt.subplots(len(variants), T + 1, figsize=(3.0 * (T + 1), 2.4 * len(variants)), squeeze=False)
    bins = torch.linspace(floor, 0.0, 61).tolist()
    for r, v in enumerate(variants):
        for j in range(T):
            ax = axes[r][j]
            own = torch.cat([seed[j][j] for seed in entropies[v]]).double()
            other = torch.cat([seed[i][j] for seed in entropies[v] for i in range(T) if i != j]).double()
            for vals, label, color in ((own, "own task's inputs", "C0"), (other, "other tasks' inputs", "C3")):
                lg = vals.clamp_min(10.0 ** floor).log10().clamp_min(floor)
                ax.hist(lg.numpy(), bins=bins, density=True, alpha=0.55, color=color, label=label)
            ax.axvline(math.log10(math.log(2)), color="k", lw=0.6, ls=":")
            if r == 0:
                ax.set_title(f"network of task {j}", fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{v}\ndensity", fontsize=8)
            if r == len(variants) - 1:
                ax.set_xlabel("log10 entropy (own units)", fontsize=8)
            ax.tick_params(labelsize=7)
            if r == 0 and j == T - 1:
                ax.legend(fontsize=6, loc="upper left")
        # the rule's decision on each input: own network's entropy against the lowest of the other networks'
        ax = axes[r][T]
        margins = torch.cat([rule_margin(seed) for seed in entropies[v]])
        ax.hist(margins.clamp(-40, 40).numpy(), bins=80, color="C2")
        ax.axvline(0.0, color="k", lw=0.8)
        ax.set_title(f"own − best other, log10 entropy\n(< 0: task right, {float((margins < 0).float().mean()):.1%})",
                     fontsize=8)
        ax.tick_params(labelsize=7)
    n = {v: len(entropies[v]) for v in variants}
    fig.suptitle("Split MNIST test set: entropy of each task's generated network on its own and on other tasks' "
                 f"inputs (seeds pooled: {n}; left edge = 0 or < 1e{int(floor)}; dotted: ln 2); right: the entropy "
                 "rule's decision per input", fontsize=9)
    fig.tight_layout()
    atomic_save_figure(fig, path)
    plt.close(fig)


# ---------------------------------------------------------------- main
def _portable(path: str) -> str:
    """A path as the project names it: from its ``docs/``/``results/`` folder on (a campaign elsewhere on disk keeps
    the same layout), anything else unchanged."""
    parts = Path(path).parts
    for anchor in ("docs", "results"):
        if anchor in parts and len(parts) > 1:
            return str(Path(*parts[parts.index(anchor):]))
    return path


def measure(runs: Path, variants: list[str], split: str, ckpt_root: Path | None, data_root: str | None,
            json_path: Path, png: Path | None) -> dict:
    argv = [_portable(a) for a in sys.argv[1:]]
    report: dict[str, Any] = {"split": split, "command": " ".join(["python", "scripts/grow_analysis.py", *argv]),
                              "environment": fidelity.environment(), "variants": {}}
    entropies: dict[str, list] = {}
    bench_cache: dict[str, Any] = {}
    for variant in variants:
        seeds = finished_seeds(runs, variant, ckpt_root, val=split == "val")
        entropies[variant] = []
        report["variants"][variant] = {}
        for seed, rec, ck in seeds:
            key = json.dumps(rec["config"]["benchmark"], sort_keys=True)
            if key not in bench_cache:
                bench_cache[key] = build_benchmark(rec["config"], data_root)
            bench = bench_cache[key]
            learner = load_learner(ck)
            if len(learner.learned_tasks) != bench.num_tasks:
                continue  # a checkpoint of an unfinished run
            res = analyse(learner, split_data(bench, split))
            entropies[variant].append(res.pop("_entropies"))
            if split == "test":  # the same numbers as the campaign's own evaluation of this seed
                recorded = rec["run"]["test"]["raw"]["cl3"]["final"]
                res["matches_record_cl3_final"] = res["per_task"]["cl3_accuracy"] == recorded
            res["checkpoint"] = _portable(str(ck))
            report["variants"][variant][str(seed)] = res
            print(f"{variant} seed {seed}: CL3 {100 * res['cl3_average']:.2f}, wrong task "
                  f"{res['errors']['wrong_task']}, right task wrong class {res['errors']['right_task_wrong_class']}, "
                  f"ties {res['errors']['entropy_ties']}, TI {[round(100 * v, 1) for v in res['per_task']['task_inference']]}"
                  f", spearman {res['spearman_own_median_entropy_vs_task_inference']:.2f}",
                  flush=True)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(report, indent=1) + "\n")
    if png is not None and any(entropies.values()):
        plot(entropies, png)
    print(markdown(report), end="")
    return report


def markdown(report: dict) -> str:
    """One row per (variant, seed): CL3, identification per task, the error split, the top confusions, rho."""
    lines = [("| row | seed | CL3 final | task identification per task (%) | wrong task / right task, wrong class / "
             "wrong task but own network right | top confusions (true→inferred: n) | ρ(own entropy, identification) |"),
             "|---|---|---|---|---|---|---|"]
    for variant, seeds in report["variants"].items():
        for seed, res in seeds.items():
            e = res["errors"]
            ti = " / ".join(f"{100 * v:.1f}" for v in res["per_task"]["task_inference"])
            top = ", ".join(f"{c['true']}→{c['inferred']}: {c['count']}" for c in res["top_confusions"][:3])
            lines.append(f"| {variant} | {seed} | {100 * res['cl3_average']:.2f} | {ti} | {e['wrong_task']} / "
                         f"{e['right_task_wrong_class']} / {e['wrong_task_own_net_right']} | {top} | "
                         f"{res['spearman_own_median_entropy_vs_task_inference']:.2f} |")
    return "\n".join(lines) + "\n"


def parse_seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["measure", "train-val"])
    ap.add_argument("--runs", default="docs/fidelity/runs", help="measure: the folder of the campaign's records")
    ap.add_argument("--ckpt-root", default=None, help="measure: checkpoints folder (default RUNS/ckpt)")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--split", choices=["test", "val"], default="test")
    ap.add_argument("--json", default="docs/fidelity/grow_analysis.json")
    ap.add_argument("--png", default=None)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--variant", default="lstm_net_grow", help="train-val: the variant")
    ap.add_argument("--seeds", default="0", help="train-val: seeds, e.g. 0-2")
    ap.add_argument("--out", default="results/grow_val", help="train-val: records and checkpoints")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    if a.what == "train-val":
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        train_val(a.variant, parse_seeds(a.seeds), out, a.data_root)
        return 0
    unknown = [v for v in a.variants.split(",") if v not in fidelity.VARIANTS]
    if unknown:
        ap.error(f"unknown variants {unknown}; valid: {list(fidelity.VARIANTS)}")
    measure(Path(a.runs), a.variants.split(","), a.split, Path(a.ckpt_root) if a.ckpt_root else None, a.data_root,
            Path(a.json), Path(a.png) if a.png else None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
