#!/usr/bin/env python
"""The Split MNIST fidelity campaign: many seeds per method, resumable, merged per run identity and seed.

    python scripts/fidelity.py work  --out docs/fidelity     # a worker: claims and runs (variant, seed) jobs
    python scripts/fidelity.py table --out docs/fidelity     # n, mean, sample std, standard error per cell
    python scripts/fidelity.py verify --variant hnet --seed 3  # re-run one record from its own config, compare
    python scripts/fidelity.py infer --variant hnet --checkpoints 'docs/fidelity/runs/ckpt/hnet-*/*.pt' \
        --criteria entropy,energy   # task-inference criteria on finished checkpoints (no training), one record each

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
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Union

import torch

from hypercl.calibration import task_temperature
from hypercl.checkpoint import atomic_write_text
from hypercl.config import OffTaskConfig, RunConfig, ValidationConfig
from hypercl.devices import digits_environment
from hypercl.experiments.configs import method_run_config
from hypercl.experiments.runner import build_benchmark, build_learner, run_seed
from hypercl.experiments.summary import seed_stats
from hypercl.off_task import parse_off_task

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
    "hnet+offtask": ("hnet", "von_oswald", None, 0),
    "lstm_net_grow+offtask": ("lstm_net_grow", RECURRENT_INIT, "copy", 0),
}
#: beyond the paper: the ``+offtask`` rows train with the off-task uncertainty term (hypercl.off_task), its setting
#: chosen on the validation split (docs/task_inference.md, "Off-task uncertainty at training time")
OFF_TASK_SPEC = "patch_shuffle:weight=0.5,grid=4"
#: the job order: (variant, number of seeds); workers take jobs seed-major so every row fills in evenly
PLAN = [("hnet", 10), ("lstm_net_grow", 10), ("lstm_net_grow_fresh", 10), ("lstm_net", 5), ("lstm_net_iwr", 5),
        ("hnet_iwr", 5), ("lstm_net_grow+cal", 3), ("lstm_net+cal", 3), ("lstm_net_vo+cal", 3), ("hnet+cal", 3),
        ("lstm_net_grow_fresh+cal", 3), ("hnet+offtask", 5), ("lstm_net_grow+offtask", 5)]


QUICK = os.environ.get("HYPERCL_FIDELITY_QUICK") == "1"  # a smoke run (reduced protocol; its own identity)


def variant_config(variant: str) -> RunConfig:
    method, init, new_task, val_size = VARIANTS[variant]
    cfg = method_run_config("split_mnist", method, quick=QUICK)
    assert cfg.hypernetwork is not None  # every variant is a hypernetwork method
    cfg = cfg.replace(hypernetwork=dataclasses.replace(cfg.hypernetwork, init=init))
    if new_task is not None:
        cfg = cfg.replace(strategy=cfg.strategy.with_kwargs(new_task_weights=new_task))
    if variant.endswith("+offtask"):
        cfg = cfg.replace(off_task=OffTaskConfig.from_json(parse_off_task(OFF_TASK_SPEC).to_json()))
    if val_size:
        cfg = cfg.replace(validation=ValidationConfig(size_per_task=val_size // 10 if QUICK else val_size,
                                                      split_seed=2026, calibration="temperature"))
    return cfg


def identity(cfg: Union[RunConfig, dict]) -> str:
    """The run identity (without the seed): a fingerprint of everything that decides the numbers (a config, or its
    JSON form as a record stores it)."""
    data = cfg.to_json() if isinstance(cfg, RunConfig) else cfg
    blob = json.dumps({"protocol": PROTOCOL, "config": data}, sort_keys=True, separators=(",", ":"))
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


def _run_calibrated(cfg: RunConfig, bench: Any, seed: int) -> dict:
    vcfg = cfg.validation
    assert vcfg is not None
    vals = _carve_validation(bench, vcfg.size_per_task, vcfg.split_seed)
    learner = build_learner(cfg, bench, "cl1", seed, "cpu", progress=False)
    temps: list[float] = []
    rows: dict[str, dict[str, list]] = {k: {s: [] for s in SCENARIOS} for k in ("raw", "calibrated")}
    val_rows: dict[str, dict[str, list]] = {k: {s: [] for s in SCENARIOS} for k in ("raw", "calibrated")}
    t0 = time.perf_counter()
    for t in range(bench.num_tasks):
        learner.fit_task(t, bench.tasks[t], iterations=int(cfg.training.iterations or 0))
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


#: the code whose state decides the numbers (a change elsewhere, e.g. in docs/, leaves a record's code clean)
CODE_PATHS = ("hypercl", "scripts", "pyproject.toml")


def _git(*args: str) -> Optional[str]:
    try:
        done = subprocess.run(["git", *args], cwd=Path(__file__).resolve().parents[1], capture_output=True,
                              text=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def _cpu_model() -> Optional[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def environment() -> dict:
    """What besides the configuration decides a record's digits: the code version (commit, and whether the code
    differed from it), the torch build, the thread count and the CPU kernel path torch dispatched to."""
    status = _git("status", "--porcelain", "--", *CODE_PATHS)
    return {"commit": _git("rev-parse", "HEAD"), "code_clean": None if status is None else status == "",
            **digits_environment(), "ATEN_CPU_CAPABILITY": os.environ.get("ATEN_CPU_CAPABILITY"), "cpu": _cpu_model(),
            "python": platform.python_version(), "numpy": _numpy_version(), "machine": platform.machine()}


def _numpy_version() -> Optional[str]:
    try:
        import numpy
    except ImportError:
        return None
    return str(numpy.__version__)


def run_job(out: Path, variant: str, seed: int, data_root: Optional[str], cfg: Optional[RunConfig] = None,
            ckpt_root: Optional[Path] = None) -> dict:
    """Train and evaluate one (variant, seed); ``cfg`` (default: the variant's current config) is what a
    :func:`verify` re-run passes from a record. Checkpoints go under ``ckpt_root`` (default ``out/runs/ckpt``)."""
    cfg = variant_config(variant) if cfg is None else cfg
    bench = build_benchmark(cfg, data_root)
    if cfg.validation is not None:
        run = _run_calibrated(cfg, bench, seed)
    else:
        ckpt = (ckpt_root or out / "runs" / "ckpt") / f"{variant}-{identity(cfg)}"
        ckpt.mkdir(parents=True, exist_ok=True)
        raw = run_seed(cfg, bench, seed, scenarios=SCENARIOS, checkpoint_dir=ckpt, resume=True)
        run = {"seed": seed, "wall_time_s": raw["wall_time_s"], "params": raw.get("params"),
               "test": {"raw": {s: _from_results(raw["scenarios"][s]) for s in SCENARIOS}}}
    return {"variant": variant, "identity": identity(cfg), "protocol": PROTOCOL, "seed": seed, "config": cfg.to_json(),
            "command": f"python scripts/fidelity.py work --out {out}", "torch": torch.__version__,
            "environment": environment(), "run": run}


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


# ---------------------------------------------------------------- verify
def find_record(out: Path, variant: str, seed: int) -> Path:
    """The record of (variant, seed): the one of the variant's current identity, else the only one there is."""
    current = result_path(out, variant, seed)
    if current.exists():
        return current
    found = sorted((out / "runs").glob(f"{variant}-*-seed{seed}.json"))
    found = [p for p in found if p.name.count("-") == current.name.count("-")]  # not "hnet_iwr" for "hnet"
    if len(found) != 1:
        raise SystemExit(f"verify: {len(found)} records of {variant} seed {seed} in {out / 'runs'}"
                         + (f" ({', '.join(p.name for p in found)}): name one with --record" if found else ""))
    return found[0]


def accuracies(run: dict, prefix: str = "") -> dict[str, float]:
    """Every accuracy of a record's ``run`` (test and validation, raw and calibrated: averages, per-task lists and
    task inference) as a flat {path: value}; wall times, parameter counts and temperatures are not accuracies."""
    flat: dict[str, float] = {}
    for split in ("test", "val"):
        for kind, scen in (run.get(split) or {}).items():
            for s, cells in scen.items():
                for key, value in cells.items():
                    path = f"{prefix}{split}.{kind}.{s}.{key}"
                    if isinstance(value, list):
                        flat.update({f"{path}[{i}]": v for i, v in enumerate(value)})
                    else:
                        flat[path] = value
    return flat


def compare(record: dict, rerun: dict) -> list[str]:
    """The differences between two records' accuracies, one line each (empty: every accuracy matches exactly)."""
    a, b = accuracies(record["run"]), accuracies(rerun["run"])
    lines = [f"{k}: record {a.get(k)!r}, re-run {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    return lines


def verify(out: Path, variant: str, seed: int, data_root: Optional[str], record_path: Optional[Path] = None,
           threads: Optional[int] = None) -> int:
    """Re-run one job from its record's own config (not today's variant config), with the record's thread count
    (or ``threads``, to measure what another count does), and report whether every accuracy equals the record's
    exactly. Returns 0 when all match, 1 otherwise."""
    path = record_path or find_record(out, variant, seed)
    record = json.loads(path.read_text())
    cfg = RunConfig.from_json(record["config"])
    if identity(cfg) != record["identity"]:
        print(f"verify: {path.name}: its config does not hash to its identity {record['identity']} "
              f"({identity(cfg)}): the record was edited")
        return 1
    env = record.get("environment") or {}
    threads = threads or int(env.get("threads") or 1)
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory(prefix="hypercl-verify-") as tmp:  # never resume the campaign's checkpoints
        rerun = run_job(out, record["variant"], int(record["seed"]), data_root, cfg=cfg, ckpt_root=Path(tmp))
    now = rerun["environment"]
    for key in ("commit", "code_clean", "torch", "threads", "cpu_capability", "cpu"):
        if env.get(key) != now.get(key):
            print(f"  environment {key}: record {env.get(key)!r}, here {now.get(key)!r}")
    diffs = compare(record, rerun)
    n = len(accuracies(record["run"]))
    if diffs:
        print(f"verify {path.name}: {len(diffs)} of {n} accuracies differ")
        for line in diffs:
            print("  " + line)
        return 1
    print(f"verify {path.name}: all {n} accuracies match the record exactly "
          f"({threads} thread(s), {now['cpu_capability']}, torch {now['torch']})")
    return 0


# ---------------------------------------------------------------- infer
INFER_PROTOCOL = "infer-1"


def infer_identity(cfg: dict, criterion: str, split: str) -> str:
    """The identity of a task-inference record: the checkpoint's training config, the criterion and the split."""
    blob = json.dumps({"protocol": INFER_PROTOCOL, "config": cfg, "criterion": criterion, "split": split},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def infer_path(out: Path, variant: str, criterion: str, ident: str, seed: int) -> Path:
    name = criterion.replace(":", "_").replace(",", "_").replace("=", "")
    return out / "runs" / f"{variant}@{name}-{ident}-seed{seed}.json"


def _eval_split(bench: Any, split: str) -> Any:
    if split == "test":
        return bench.tasks
    vals = [getattr(t, "val", None) for t in bench.tasks]
    if any(v is None for v in vals):
        raise SystemExit("infer --split val: the checkpoint's run has no validation split (train it with --val-size)")
    return vals


def infer(out: Path, variant: str, checkpoints: list[Path], criteria: list[str], split: str,
          data_root: Optional[str], force: bool = False, repeats: int = 1) -> int:
    """Evaluate each finished checkpoint with each criterion (CL1 once, CL3 per criterion, timed in ONE process so
    the cost is a ratio to entropy measured in the same run, the fastest of ``repeats``) and write one record per
    (criterion, seed)."""
    from hypercl import ContinualLearner
    from hypercl.checkpoint import load_checkpoint
    from hypercl.task_inference import get_criterion, identification_accuracy

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    specs = [get_criterion(c).spec() for c in criteria]
    if "entropy" not in specs:
        specs = ["entropy", *specs]  # the cost reference
    written = 0
    for ckpt in checkpoints:
        state = load_checkpoint(ckpt, map_location="cpu")
        run = state.get("run") or {}
        cfg, seed = run.get("config"), run.get("seed")
        if cfg is None or seed is None:
            print(f"skip {ckpt}: no run identity in the checkpoint", flush=True)
            continue
        bench = build_benchmark(cfg, data_root)
        if len(state["learned_tasks"]) != bench.num_tasks:
            print(f"skip {ckpt}: {len(state['learned_tasks'])} of {bench.num_tasks} tasks learned (not finished)")
            continue
        todo = [c for c in specs if force or not infer_path(out, variant, c, infer_identity(cfg, c, split),
                                                                 seed).exists()]
        if not todo:
            continue
        learner = ContinualLearner.load(ckpt)
        data = _eval_split(bench, split)
        cl1 = learner.evaluate(data, scenarios=["cl1"], record=False)["cl1"]
        timings: dict[str, float] = {}
        results: dict[str, dict] = {}
        for c in dict.fromkeys(["entropy", *todo]):
            for _ in range(max(1, repeats)):  # the fastest of `repeats` runs: the machine is shared
                t0 = time.perf_counter()
                res = learner.evaluate(data, scenarios=["cl3"], record=False, task_inference=c)["cl3"]
                timings[c] = min(timings.get(c, float("inf")), time.perf_counter() - t0)
            results[c] = res
        n = sum(len(v) for v in results["entropy"]["inferred"].values())
        for c in todo:
            res = results[c]
            tasks = sorted(res["accuracy"])
            ident = infer_identity(cfg, c, split)
            record = {
                "kind": "infer", "variant": variant, "criterion": c, "split": split, "identity": ident,
                "protocol": INFER_PROTOCOL, "seed": seed, "config": cfg, "checkpoint": {
                    "file": ckpt.name, "run_id": run.get("id"), "fingerprint": run.get("fingerprint")},
                "command": (f"python scripts/fidelity.py infer --out {out} --variant {variant} --split {split} "
                            f"--criteria '{c.replace(',', ';')}' --repeats {repeats} --checkpoints {ckpt}"),
                "torch": torch.__version__, "environment": environment(),
                "run": {
                    "cl1_final_average": cl1["average"],
                    "cl3_final_average": res["average"],
                    "cl3_final": [res["accuracy"][t] for t in tasks],
                    "task_inference": sum(res["task_inference"][t] for t in tasks) / len(tasks),
                    "task_inference_per_task": identification_accuracy(res["confusion"]["counts"]),
                    "confusion": res["confusion"],
                    "seconds": timings[c], "entropy_seconds": timings["entropy"],
                    "cost_ratio_to_entropy": timings[c] / timings["entropy"], "samples": n,
                    "timing_repeats": max(1, repeats), "threads": torch.get_num_threads(),
                },
            }
            atomic_write_text(json.dumps(record, indent=1), infer_path(out, variant, c, ident, seed))
            written += 1
            print(f"{variant} seed {seed} {split} {c}: CL3 {100 * res['average']:.2f}, task id "
                  f"{100 * record['run']['task_inference']:.2f}, CL1 {100 * cl1['average']:.2f}, cost "
                  f"{record['run']['cost_ratio_to_entropy']:.2f}x entropy", flush=True)
    print(f"infer: {written} record(s) written to {out / 'runs'}")
    return 0


def infer_table(out: Path, split: Optional[str] = None, variants: Optional[set[str]] = None) -> str:
    """One row per (variant, criterion, split): n, seeds, CL3 final, task identification, CL1, cost ratio; plus the
    paired CL3 difference to entropy on the same seeds. ``split``: only that split's rows (default: all);
    ``variants``: only these variants' rows (default: all)."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for p in sorted((out / "runs").glob("*@*.json")):
        rec = json.loads(p.read_text())
        if rec.get("kind") != "infer" or split not in (None, rec["split"]):
            continue
        if variants is None or rec["variant"] in variants:
            groups.setdefault((rec["variant"], rec["split"], rec["criterion"]), []).append(rec)
    if not groups:
        return ""
    lines = ["| variant | split | criterion | n | seeds | CL3 final | task identification | CL1 final | "
             "paired Δ CL3 vs entropy | cost / entropy |", "|---|---|---|---|---|---|---|---|---|---|"]
    for (variant, split, crit), recs in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1],
                                                                               kv[0][2] != "entropy", kv[0][2])):
        recs.sort(key=lambda r: r["seed"])
        base = {r["seed"]: r for r in groups.get((variant, split, "entropy"), [])}
        paired = [r["run"]["cl3_final_average"] - base[r["seed"]]["run"]["cl3_final_average"]
                  for r in recs if r["seed"] in base]
        cost = stats([r["run"]["cost_ratio_to_entropy"] for r in recs])
        lines.append(f"| {variant} | {split} | {crit} | {len(recs)} | {','.join(str(r['seed']) for r in recs)} | "
                     f"{fmt(stats([r['run']['cl3_final_average'] for r in recs]))} | "
                     f"{fmt(stats([r['run']['task_inference'] for r in recs]))} | "
                     f"{fmt(stats([r['run']['cl1_final_average'] for r in recs]))} | "
                     f"{fmt(stats(paired)) if crit != 'entropy' else '—'} | {fmt(cost, 1.0)} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- table
def write_between_markers(path: Path, name: str, text: str) -> None:
    """Replace what stands between ``<!-- name -->`` and ``<!-- /name -->`` in ``path`` by ``text`` (atomically);
    a file without both markers is one clear error, and nothing is written."""
    doc = path.read_text()
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    i, j = doc.find(start), doc.find(end)
    if i < 0 or j < i:
        raise SystemExit(f"{path}: no '{start}' ... '{end}' markers to write the table between; add them first")
    atomic_write_text(doc[: i + len(start)] + "\n" + text.rstrip("\n") + "\n" + doc[j:], path)


def stats(values: list[float]) -> dict:
    """n, mean, sample std (n-1) and standard error std/sqrt(n): the runner's tested summary (std, SE None at n=1)."""
    return seed_stats(values)


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
        if rec.get("kind") == "infer":  # task-inference records: infer_table
            continue
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
        seeds = ",".join(str(r["seed"]) + ("" if r.get("environment") else "*") for r in recs)
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
    if any(not r.get("environment") for recs in groups.values() for r in recs):
        lines += ["", "\\* a record without its environment (written before records carried commit, threads, torch "
                  "build and CPU kernel path): awaiting a re-run by the campaign, which replaces it."]
    return "\n".join(lines + ["", "Validation-split rows (training data minus 1000 samples per task; temperatures fitted "
                                  "on that split):", ""] + cal_lines) + "\n" + reference_table(out) + verdict_table(out)


#: the faithful rows and the seed paper's Table 1 method each is compared with (GROW fresh: the paper's GROW row)
PAPER_ROWS = {"hnet": "hnet", "hnet_iwr": "hnet_iwr", "lstm_net": "lstm_net", "lstm_net_iwr": "lstm_net_iwr",
              "lstm_net_grow": "lstm_net_grow", "lstm_net_grow_fresh": "lstm_net_grow"}
#: the paper's ordering, lowest first
PAPER_ORDER = ("hnet", "lstm_net", "lstm_net_iwr", "lstm_net_grow")


def ordering_verdict(cells: list[tuple[str, dict]]) -> str:
    """The ordering claim a < b < c < ... over ``(name, stats)`` cells (lowest first): each adjacent difference with
    its standard error ``sqrt(se_a² + se_b²)``; "confirmed" when every step is up by more than 2 SE, "refuted" when
    some step is down by more than 2 SE, else "not settled" (n < 2 anywhere: "n too small")."""
    if any(st["n"] < 2 for _, st in cells):
        return "n too small"
    steps, words = [], []
    for (a, sa), (b, sb) in zip(cells, cells[1:]):
        diff = 100 * (sb["mean"] - sa["mean"])
        se = 100 * math.sqrt(sa["se"] ** 2 + sb["se"] ** 2)
        steps.append(diff / se if se > 0 else math.copysign(math.inf, diff))
        words.append(f"{b} − {a} {diff:+.2f} (SE {se:.2f})")
    verdict = "confirmed" if all(z > 2 for z in steps) else "refuted" if any(z < -2 for z in steps) else "not settled"
    return f"{verdict}: " + "; ".join(words)


def verdict_table(out: Path) -> str:
    """Every number of the paper's Split MNIST Table 1 against the faithful rows, under the "final" and the "during"
    reading: reproduced when it lies within 2 standard errors of our mean (n ≥ 2); and the paper's ordering per
    scenario and reading. Empty when no faithful row has records."""
    from hypercl.experiments.report import PAPER_TABLE1

    groups = {v: recs for (v, _), recs in load_records(out).items() if v in PAPER_ROWS}
    if not groups:
        return ""
    lines = ["", "Verdict per number (generated from the records above): the paper's Table 1 value against our mean ± SE; "
             "reproduced = within 2 SE (needs n ≥ 2).", "",
             "| row | n | scenario | paper | final (SE) | final: within 2 SE? | during (SE) | during: within 2 SE? |",
             "|---|---|---|---|---|---|---|---|"]
    cells: dict[tuple[str, str, str], dict] = {}
    for variant in [v for v in PAPER_ROWS if v in groups]:
        recs = groups[variant]
        for s in SCENARIOS:
            paper = PAPER_TABLE1["split_mnist"][PAPER_ROWS[variant]][s][0]
            row = [variant, str(len(recs)), s.upper(), f"{paper:.2f}"]
            for reading in ("final", "during"):
                st = stats([r["run"]["test"]["raw"][s][f"{reading}_average"] for r in recs])
                cells[(variant, s, reading)] = st
                if st["n"] < 2:
                    row += [f"{100 * st['mean']:.2f}", "n = 1"]
                    continue
                diff = 100 * st["mean"] - paper
                ok = abs(diff) <= 2 * 100 * st["se"]
                row += [f"{100 * st['mean']:.2f} ({100 * st['se']:.2f})",
                        f"{'yes' if ok else 'no'} ({diff:+.2f}, {abs(diff) / (100 * st['se']) if st['se'] else math.inf:.1f} SE)"]
            lines.append("| " + " | ".join(row) + " |")
    lines += ["", "The paper's ordering HNET < LSTM_NET < LSTM_NET_IWR < LSTM_NET_GROW (copied weights), per scenario and "
              "reading (a step is settled when it exceeds 2 SE):", ""]
    for s in SCENARIOS:
        for reading in ("final", "during"):
            if all((v, s, reading) in cells for v in PAPER_ORDER):
                lines.append(f"- {s.upper()} {reading}: "
                             + ordering_verdict([(v, cells[(v, s, reading)]) for v in PAPER_ORDER]))
    return "\n".join(lines) + "\n"


#: von Oswald et al.'s HNET+ENT Split MNIST numbers as the seed paper's Table 1 quotes them (CL2, CL3)
REFERENCE_PAPER = {"cl2": 87.01, "cl3": 69.48}


def reference_table(out: Path) -> str:
    """The original code's rows (``runs/reference/*.json``, written by ``scripts/reference_hnet.py run``; accuracies
    in % as that code reports them) beside the paper's HNET+ENT numbers; empty when there are none."""
    groups: dict[str, list[dict]] = {}
    for p in sorted((out / "runs" / "reference").glob("reference_*.json")):
        rec = json.loads(p.read_text())
        groups.setdefault(rec["variant"], []).append(rec)
    if not groups:
        return ""
    lines = ["", ("Reference rows: von Oswald et al.'s own code (chrhenning/hypercl, `mnist/train_splitMNIST.py "
                  "--infer_task_id --infer_with_entropy`, its defaults; `scripts/reference_hnet.py`), same cells:"), "",
             "| reference row | n | seeds | final | during | task inference (final) | paper (HNET) | threads | torch |",
             "|---|---|---|---|---|---|---|---|---|"]
    for variant, recs in sorted(groups.items()):
        recs.sort(key=lambda r: r["seed"])
        res = [r["result"] for r in recs]
        envs = {(r["environment"]["threads"], r["environment"]["torch"]) for r in recs}
        threads = ",".join(sorted({str(t) for t, _ in envs}))
        torches = ",".join(sorted({t for _, t in envs}))
        lines.append(f"| {variant} | {len(recs)} | {','.join(str(r['seed']) for r in recs)} | "
                     f"{fmt(stats([r['final_average'] for r in res]), 1.0)} | "
                     f"{fmt(stats([r['during_average'] for r in res]), 1.0)} | "
                     f"{fmt(stats([r['task_inference'] for r in res]), 1.0)} | "
                     f"{REFERENCE_PAPER.get(recs[0]['scenario'], '—')} | {threads} | {torches} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=["work", "table", "jobs", "verify", "infer", "infer-table"])
    ap.add_argument("--checkpoints", nargs="+", default=None,
                    help="infer: finished checkpoint files or globs (e.g. 'docs/fidelity/runs/ckpt/hnet-*/*.pt')")
    ap.add_argument("--criteria", default="entropy,energy,max_logit,entropy_gradient,ensemble",
                    help="infer: comma-separated criteria; settings with ':' and ';' between them, e.g. "
                         "'ensemble:samples=8;scale=0.5' (hypercl.task_inference)")
    ap.add_argument("--split", choices=["test", "val"], default="test", help="infer: evaluate the test or the "
                    "validation split (the latter needs a run trained with --val-size)")
    ap.add_argument("--force", action="store_true", help="infer: rewrite existing records")
    ap.add_argument("--repeats", type=int, default=3, help="infer: time each criterion this many times, keep the "
                    "fastest (default 3)")
    ap.add_argument("--out", default="docs/fidelity")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--only", default=None, help="work / infer-table: comma-separated variants")
    ap.add_argument("--variant", default=None, help="verify: the record's variant")
    ap.add_argument("--seed", type=int, default=None, help="verify: the record's seed")
    ap.add_argument("--record", default=None, help="verify: a record file (default: found from --variant/--seed)")
    ap.add_argument("--threads", type=int, default=None, help="verify: thread count (default: the record's)")
    ap.add_argument("--write", default=None, help="table / infer-table: write the table into this Markdown file "
                    "between its <!-- fidelity-table --> (infer-table: <!-- infer-table-SPLIT -->) markers")
    ap.add_argument("--marker", default=None, help="infer-table --write: the markers' name (default "
                    "infer-table-SPLIT), e.g. to write the rows of some variants (--only) into a table of their own")
    a = ap.parse_args(argv)
    out = Path(a.out)
    if a.what == "verify":
        if a.record is None and (a.variant is None or a.seed is None):
            ap.error("verify needs --variant and --seed (or --record FILE)")
        rec = Path(a.record) if a.record else None
        if rec is not None:
            data = json.loads(rec.read_text())
            a.variant, a.seed = data["variant"], data["seed"]
        return verify(out, a.variant, a.seed, a.data_root, rec, a.threads)
    if a.what == "infer":
        if a.variant is None or not a.checkpoints:
            ap.error("infer needs --variant and --checkpoints")
        import glob

        files = sorted({Path(f) for pattern in a.checkpoints for f in (glob.glob(pattern) or [pattern])})
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            ap.error(f"infer: no checkpoint file {missing[0]}")
        crits = [c.strip().replace(";", ",") for c in a.criteria.split(",") if c.strip()]
        return infer(out, a.variant, files, crits, a.split, a.data_root, a.force, a.repeats)
    if a.what == "infer-table":
        text = infer_table(out, a.split if a.write else None, set(a.only.split(",")) if a.only else None)
        if a.write:
            write_between_markers(Path(a.write), a.marker or f"infer-table-{a.split}", text)
        else:
            print(text, end="")
        return 0
    if a.what == "work":
        work(out, a.data_root, set(a.only.split(",")) if a.only else None)
    elif a.what == "jobs":
        for v, s in jobs():
            print(v, s, "done" if result_path(out, v, s).exists() else "")
    elif a.write:
        write_between_markers(Path(a.write), "fidelity-table", table(out))
    else:
        print(table(out), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
