#!/usr/bin/env python
"""The Split MNIST fidelity campaign of issue 13: many seeds per method, resumable, merged per run identity and seed.

    python scripts/fidelity.py work  --out docs/fidelity     # a worker: claims and runs (variant, seed) jobs
    python scripts/fidelity.py table --out docs/fidelity     # n, mean, sample std, standard error per cell

(``docs/fidelity/runs/*.json`` are the committed per-seed records; checkpoints and claims there are git-ignored.)

Start one worker per core (``OMP_NUM_THREADS=1 nohup python scripts/fidelity.py work ... &``); each claims the next job
that has neither a result nor a live claim (``O_EXCL`` lock file), so workers never run a job twice. A result is one
JSON file per (variant, identity, seed), ``runs/<variant>-<identity>-seed<k>.json``, written atomically: nothing is
ever overwritten or mixed, and the table groups files by identity (a fingerprint of the full configuration and the
protocol version) — a changed setting is a new identity and a new row, never a merge. Jobs without a validation split
checkpoint after every task and resume from it (``runs/ckpt/<variant>-<identity>/``).

Variants: the faithful rows (``hnet`` and ``hnet_iwr`` with von Oswald et al.'s init; the LSTM rows with the
target-scale init, see docs/results.md for why; ``lstm_net_grow`` with copied and with fresh per-task weights) and,
beyond the paper, ``*+cal`` rows: the same method trained on the training data minus a 1000-sample validation split
per task, evaluated with and without a per-task softmax temperature fitted on that split right after the task
(:mod:`hypercl.calibration`) — a paired comparison on the same trained networks. Their validation accuracies (never the
test set) also decide the LSTM rows' init.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Optional

import torch

from hypercl.calibration import task_temperature
from hypercl.checkpoint import atomic_write_text
from hypercl.experiments.configs import method_config
from hypercl.experiments.runner import _stats, build_benchmark, build_learner, run_seed

PROTOCOL = "fidelity-1"
SCENARIOS = ("cl1", "cl2", "cl3")
VAL_SIZE = 1000
#: the init of the recurrent hypernetworks' rows (no public code to follow): see docs/results.md, "init choice"
RECURRENT_INIT = "target_scale"

#: variant -> (method, hypernetwork init, GROW new-task weights or None, validation split size)
VARIANTS: dict[str, tuple[str, str, Optional[str], int]] = {
    "hnet": ("hnet", "von_oswald", None, 0),
    "hnet_iwr": ("hnet_iwr", "von_oswald", None, 0),
    "lstm_net": ("lstm_net", RECURRENT_INIT, None, 0),
    "lstm_net_iwr": ("lstm_net_iwr", RECURRENT_INIT, None, 0),
    "lstm_net_grow": ("lstm_net_grow", RECURRENT_INIT, "copy", 0),
    "lstm_net_grow_fresh": ("lstm_net_grow", RECURRENT_INIT, "fresh", 0),
    "hnet+cal": ("hnet", "von_oswald", None, VAL_SIZE),
    "lstm_net+cal": ("lstm_net", "target_scale", None, VAL_SIZE),
    "lstm_net_vo+cal": ("lstm_net", "von_oswald", None, VAL_SIZE),
    "lstm_net_grow+cal": ("lstm_net_grow", RECURRENT_INIT, "copy", VAL_SIZE),
    "lstm_net_grow_fresh+cal": ("lstm_net_grow", RECURRENT_INIT, "fresh", VAL_SIZE),
}
#: the job order: (variant, number of seeds); workers take jobs seed-major so every row fills in evenly
PLAN = [("hnet", 10), ("lstm_net_grow", 10), ("lstm_net_grow_fresh", 10), ("lstm_net", 5), ("lstm_net_iwr", 5),
        ("hnet_iwr", 5), ("lstm_net_grow+cal", 3), ("lstm_net+cal", 3), ("lstm_net_vo+cal", 3), ("hnet+cal", 3),
        ("lstm_net_grow_fresh+cal", 3)]


QUICK = os.environ.get("HYPERCL_FIDELITY_QUICK") == "1"  # a smoke run (reduced protocol; its own identity)


def variant_config(variant: str) -> dict:
    method, init, new_task, val_size = VARIANTS[variant]
    cfg = method_config("split_mnist", method, quick=QUICK)
    cfg["hypernetwork"]["init"] = init
    if new_task is not None:
        cfg["strategy"]["kwargs"]["new_task_weights"] = new_task
    if val_size:
        cfg["validation"] = {"size_per_task": val_size // 10 if QUICK else val_size, "split_seed": 2026,
                             "calibration": "temperature"}
    return cfg


def identity(cfg: dict) -> str:
    """The run identity (without the seed): a fingerprint of everything that decides the numbers."""
    blob = json.dumps({"protocol": PROTOCOL, "config": cfg}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def jobs() -> list[tuple[str, int]]:
    most = max(n for _, n in PLAN)
    return [(v, s) for s in range(most) for v, n in PLAN if s < n]


def result_path(out: Path, variant: str, seed: int) -> Path:
    return out / "runs" / f"{variant}-{identity(variant_config(variant))}-seed{seed}.json"


# ---------------------------------------------------------------- one job
def _carve_validation(bench: Any, size: int, split_seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Hold out ``size`` training samples per task (a fixed permutation, the same for every run seed)."""
    vals = []
    for t, task in enumerate(bench.tasks):
        perm = torch.randperm(len(task.y_train), generator=torch.Generator().manual_seed(split_seed + t))
        v, keep = perm[:size], perm[size:]
        vals.append((task.x_train[v], task.y_train[v]))
        bench.tasks[t] = dataclasses.replace(task, x_train=task.x_train[keep], y_train=task.y_train[keep])
    return vals


def _summary(rows: list[dict], tasks: list[int]) -> dict:
    """final / during averages and task inference of a list of evaluate() rows (one per learned task)."""
    final = rows[-1]["accuracy"]
    during = [rows[i]["accuracy"][t] for i, t in enumerate(tasks)]
    ti = [v for v in rows[-1]["task_inference"].values() if v is not None]
    return {"final_average": sum(final.values()) / len(final), "during_average": sum(during) / len(during),
            "task_inference": sum(ti) / len(ti) if ti else None, "final": [final[t] for t in tasks],
            "during": during}


def _run_calibrated(cfg: dict, bench: Any, seed: int) -> dict:
    vcfg = cfg["validation"]
    vals = _carve_validation(bench, vcfg["size_per_task"], vcfg["split_seed"])
    learner = build_learner(cfg, bench, "cl1", seed, "cpu", progress=False)
    temps: list[float] = []
    rows: dict[str, dict[str, list]] = {k: {s: [] for s in SCENARIOS} for k in ("raw", "calibrated")}
    val_rows: dict[str, dict[str, list]] = {k: {s: [] for s in SCENARIOS} for k in ("raw", "calibrated")}
    t0 = time.perf_counter()
    for t in range(bench.num_tasks):
        learner.fit_task(t, bench.tasks[t], iterations=int(cfg["train"]["iterations"]))
        temps.append(task_temperature(learner, t, vals[t]))  # this task's validation split only
        seen = {i: vals[i] for i in range(t + 1)}
        for kind, temp in (("raw", None), ("calibrated", temps)):
            res = learner.evaluate(bench.tasks, scenarios=list(SCENARIOS), record=False, temperatures=temp)
            vres = learner.evaluate(seen, scenarios=list(SCENARIOS), record=False, temperatures=temp)
            for s in SCENARIOS:
                rows[kind][s].append(res[s])
                val_rows[kind][s].append(vres[s])
    tasks = list(range(bench.num_tasks))
    return {"seed": seed, "temperatures": temps, "wall_time_s": time.perf_counter() - t0,
            "test": {k: {s: _summary(rows[k][s], tasks) for s in SCENARIOS} for k in rows},
            "val": {k: {s: _summary(val_rows[k][s], tasks) for s in SCENARIOS} for k in val_rows}}


def run_job(out: Path, variant: str, seed: int, data_root: Optional[str]) -> dict:
    cfg = variant_config(variant)
    bench = build_benchmark(cfg, data_root)
    if "validation" in cfg:
        run = _run_calibrated(cfg, bench, seed)
    else:
        ckpt = out / "runs" / "ckpt" / f"{variant}-{identity(cfg)}"
        ckpt.mkdir(parents=True, exist_ok=True)
        raw = run_seed(cfg, bench, seed, scenarios=SCENARIOS, checkpoint_dir=ckpt, resume=True)
        run = {"seed": seed, "wall_time_s": raw["wall_time_s"], "params": raw.get("params"),
               "test": {"raw": {s: _from_results(raw["scenarios"][s]) for s in SCENARIOS}}}
    return {"variant": variant, "identity": identity(cfg), "protocol": PROTOCOL, "seed": seed, "config": cfg,
            "command": f"python scripts/fidelity.py work --out {out}", "torch": torch.__version__, "run": run}


def _from_results(r: dict) -> dict:
    ti = r["task_inference_matrix"][-1] if r.get("task_inference_matrix") else []
    ti = [v for v in ti if v is not None]
    return {"final_average": r["final_average"], "during_average": r["during_average"],
            "task_inference": sum(ti) / len(ti) if ti else None, "final": r["matrix"][-1], "during": r["during"]}


def work(out: Path, data_root: Optional[str], only: Optional[set[str]]) -> None:
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    (out / "runs" / "claims").mkdir(parents=True, exist_ok=True)
    for variant, seed in jobs():
        if only and variant not in only:
            continue
        path = result_path(out, variant, seed)
        claim = out / "runs" / "claims" / (path.stem + ".claim")
        if path.exists():
            continue
        try:
            fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            continue  # another worker has it (remove stale claims of killed workers by hand: runs/claims/)
        os.write(fd, f"{os.getpid()}\n".encode())
        os.close(fd)
        t0 = time.perf_counter()
        print(f"[{time.strftime('%H:%M:%S')}] {variant} seed {seed} ...", flush=True)
        record = run_job(out, variant, seed, data_root)
        atomic_write_text(json.dumps(record, indent=1), path)
        claim.unlink()
        print(f"[{time.strftime('%H:%M:%S')}] {variant} seed {seed} done in {time.perf_counter() - t0:.0f} s: "
              + ", ".join(f"{s} {100 * record['run']['test']['raw'][s]['final_average']:.2f}" for s in SCENARIOS),
              flush=True)


# ---------------------------------------------------------------- table
def stats(values: list[float]) -> dict:
    """n, mean, sample std (n-1) and standard error std/sqrt(n): the runner's tested summary (std, SE None at n=1)."""
    return _stats(values)


def fmt(st: dict, scale: float = 100.0) -> str:
    if not st["n"]:
        return "—"
    if st["std"] is None:
        return f"{scale * st['mean']:.2f}"
    return f"{scale * st['mean']:.2f} ± {scale * st['std']:.2f} ({scale * st['se']:.2f})"


def load_records(out: Path) -> dict[tuple[str, str], list[dict]]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for p in sorted((out / "runs").glob("*.json")):
        rec = json.loads(p.read_text())
        groups.setdefault((rec["variant"], rec["identity"]), []).append(rec)
    for recs in groups.values():
        seeds = [r["seed"] for r in recs]
        if len(seeds) != len(set(seeds)):
            raise SystemExit(f"duplicate seeds {seeds} for one identity: {recs[0]['variant']}")
        recs.sort(key=lambda r: r["seed"])
    return groups


def table(out: Path) -> str:
    groups = load_records(out)
    lines = ["Cells: mean ± sample std (standard error) over the n seeds, test accuracy in %; final = every task after "
             "the last one, during = each task right after it was learned (candidates: the tasks seen so far).", "",
             "| row | n | seeds | CL1 final | CL2 final | CL3 final | CL2 during | CL3 during | task inference (final) |",
             "|---|---|---|---|---|---|---|---|---|"]
    cal_lines = ["| row | n | CL3 final raw | CL3 final calibrated | paired Δ | val CL3 raw | val CL3 calibrated | "
                 "CL2 final raw | CL2 final calibrated |", "|---|---|---|---|---|---|---|---|---|"]
    order = list(VARIANTS)
    for (variant, ident), recs in sorted(groups.items(), key=lambda kv: order.index(kv[0][0])):
        def col(kind: str, s: str, key: str, split: str = "test") -> dict:
            return stats([r["run"][split][kind][s][key] for r in recs])
        seeds = ",".join(str(r["seed"]) for r in recs)
        lines.append(f"| {variant} | {len(recs)} | {seeds} | {fmt(col('raw', 'cl1', 'final_average'))} | "
                     f"{fmt(col('raw', 'cl2', 'final_average'))} | {fmt(col('raw', 'cl3', 'final_average'))} | "
                     f"{fmt(col('raw', 'cl2', 'during_average'))} | {fmt(col('raw', 'cl3', 'during_average'))} | "
                     f"{fmt(col('raw', 'cl3', 'task_inference'))} |")
        if "calibrated" in recs[0]["run"]["test"]:
            delta = stats([r["run"]["test"]["calibrated"]["cl3"]["final_average"]
                           - r["run"]["test"]["raw"]["cl3"]["final_average"] for r in recs])
            cal_lines.append(
                f"| {variant} | {len(recs)} | {fmt(col('raw', 'cl3', 'final_average'))} | "
                f"{fmt(col('calibrated', 'cl3', 'final_average'))} | {fmt(delta)} | "
                f"{fmt(col('raw', 'cl3', 'final_average', 'val'))} | "
                f"{fmt(col('calibrated', 'cl3', 'final_average', 'val'))} | {fmt(col('raw', 'cl2', 'final_average'))} | "
                f"{fmt(col('calibrated', 'cl2', 'final_average'))} |")
    return "\n".join(lines + ["", "Validation-split rows (training data minus 1000 samples per task; temperatures fitted "
                                  "on that split):", ""] + cal_lines) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["work", "table", "jobs"])
    ap.add_argument("--out", default="docs/fidelity")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--only", default=None, help="comma-separated variants")
    a = ap.parse_args(argv)
    out = Path(a.out)
    if a.what == "work":
        work(out, a.data_root, set(a.only.split(",")) if a.only else None)
    elif a.what == "jobs":
        for v, s in jobs():
            print(v, s, "done" if result_path(out, v, s).exists() else "")
    else:
        print(table(out), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
