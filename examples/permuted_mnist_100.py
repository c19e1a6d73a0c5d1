"""Permuted MNIST with 100 tasks: HNET with a stochastic regulariser (K = 8 old tasks per step, online targets) and
LSTM_NET_GROW, on a REDUCED protocol that a CPU can get through (resumable, a checkpoint per method and task).

Protocol (the published Permuted MNIST configuration of ``hypercl.experiments.configs`` with these changes):
``--iterations`` optimizer steps per task (default 250 instead of 5000), the first ``--max-test`` test images of every
task for the accuracy (default 1000 of 10000), CL1 (task identity given), 100 tasks. Training data: all 60000
images of every task (one shared copy, a permutation per task). HNET: ``reg_tasks_per_step=8``, ``targets="online"``
(as Henning et al.'s PermutedMNIST-100 runs, ``--hnet_reg_batch_size=8 --calc_hnet_reg_targets_online``); β, the
lookahead and the architecture as the 10-task configuration. The two methods take turns task by task, so both
advance; each method's learner is checkpointed after every task, and ``--resume`` continues where it stopped.

Recorded in ``OUT/log.json``: per method and task the training wall time, the process's resident memory, the bytes
the regulariser holds (``held_bytes``), the hypernetwork's parameter count, and the CL1 accuracy of the task right
after it was learned; every ``--eval-every`` tasks (and at the last one) the CL1 accuracy of EVERY learned task.

    python examples/permuted_mnist_100.py --out results/permuted_mnist_100                 # start (CPU: days)
    python examples/permuted_mnist_100.py --out results/permuted_mnist_100 --resume        # continue
    python examples/permuted_mnist_100.py --out results/permuted_mnist_100 --report docs   # PNG + table so far
    python examples/permuted_mnist_100.py --out results/pm100_full10 --iterations 5000 --stop-after 10  # full protocol
    python examples/permuted_mnist_100.py --out /tmp/pm --tasks 3 --iterations 5 --max-train 500 --max-test 200  # smoke
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

import hypercl
from hypercl.allocator import keep_freed_memory
from hypercl.checkpoint import atomic_save_figure, atomic_write_text
from hypercl.data import get_benchmark
from hypercl.devices import digits_environment
from hypercl.experiments.configs import method_config
from hypercl.experiments.runner import build_learner

METHODS = {  # name -> method_config overrides
    "hnet_k8_online": ("hnet", {"reg_tasks_per_step": 8, "reg_targets": "online"}),
    "lstm_net_grow": ("lstm_net_grow", {}),
}


def rss_mb() -> float:
    """Peak resident memory of this process so far, MB (``ru_maxrss``)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@torch.no_grad()
def cl1_accuracy(learner: hypercl.ContinualLearner, task: Any, task_id: int, batch: int = 1000) -> float:
    """CL1 accuracy of one task: its own generated weights on its test images (one weight set, not all tasks')."""
    learner.hnet.eval()
    learner.target.eval()
    params = learner.hnet(task_id)
    correct = 0
    for i in range(0, len(task.y_test), batch):
        x, y = task.x_test[i:i + batch], task.y_test[i:i + batch]
        correct += int((learner.target(params, x).argmax(-1) == y).sum())
    learner.hnet.train()
    learner.target.train()
    return correct / len(task.y_test)


def config(method: str, args: argparse.Namespace) -> dict:
    base, extra = METHODS[method]
    return method_config("permuted_mnist", base, num_tasks=args.tasks, iterations=args.iterations,
                         max_test_per_task=args.max_test, max_train_per_task=args.max_train, **extra)


def train(args: argparse.Namespace) -> None:
    out = Path(args.out)
    (out / "ckpt").mkdir(parents=True, exist_ok=True)
    log_path = out / "log.json"
    if log_path.exists() and not args.resume:
        raise SystemExit(f"{log_path} exists: pass --resume to continue it, or choose another --out")
    log = json.loads(log_path.read_text()) if log_path.exists() else {
        "protocol": {"tasks": args.tasks, "iterations": args.iterations, "max_test_per_task": args.max_test,
                     "max_train_per_task": args.max_train, "seed": args.seed, **digits_environment()},
        "configs": {m: config(m, args) for m in args.methods}, "tasks": {m: [] for m in args.methods},
        "final": {m: {} for m in args.methods}}
    if log["protocol"]["iterations"] != args.iterations or log["protocol"]["tasks"] != args.tasks:
        raise SystemExit(f"{log_path} was started with {log['protocol']}; resume with the same --iterations/--tasks")
    changed = {k: (log["protocol"][k], v) for k, v in digits_environment().items()
               if k in log["protocol"] and log["protocol"][k] != v}
    if changed:  # the run goes on, but its later tasks are not the digits an uninterrupted run would give
        print(f"warning: {log_path} was started with {changed} (then, now): a resumed run continues with other "
              "floating-point summation orders; set OMP_NUM_THREADS / ATEN_CPU_CAPABILITY as then for the same "
              "digits", file=sys.stderr)
    bench = get_benchmark("permuted_mnist", num_tasks=args.tasks, pad_to=32, first_identity=True,
                          max_train_per_task=args.max_train, max_test_per_task=args.max_test)
    learners: dict[str, hypercl.ContinualLearner] = {}
    for m in args.methods:
        ck = out / "ckpt" / f"{m}.pt"
        if ck.exists():
            learners[m] = hypercl.ContinualLearner.load(ck)
        else:
            torch.manual_seed(args.seed)
            learners[m] = build_learner(log["configs"][m], bench, "cl1", args.seed, "cpu", False)
    for t in range(min(args.stop_after or args.tasks, args.tasks)):
        for m, learner in learners.items():
            if t in learner.learned_tasks:
                continue
            t0 = time.perf_counter()
            learner.fit_task(t, bench.tasks[t], iterations=args.iterations)
            wall = time.perf_counter() - t0
            st = learner.strategy
            row = {"task": t, "train_s": wall, "rss_peak_mb": rss_mb(),
                   "held_mb": st.held_bytes() / 2**20 if hasattr(st, "held_bytes") else None,
                   "hnet_params": learner.hnet.num_params, "acc_just_learned": cl1_accuracy(learner, bench.tasks[t], t)}
            if (t + 1) % args.eval_every == 0 or t + 1 in (args.tasks, args.stop_after):
                row["acc_all"] = [cl1_accuracy(learner, bench.tasks[i], i) for i in learner.learned_tasks]
                log["final"][m] = {"after_task": t, "accuracy": row["acc_all"]}
            learner.save(out / "ckpt" / f"{m}.pt")  # atomic: a crash keeps the previous task's checkpoint
            log["tasks"][m].append(row)
            atomic_write_text(json.dumps(log, indent=1), log_path)
            print(f"{m} task {t}: {wall:.0f} s, acc {row['acc_just_learned']:.4f}, rss {row['rss_peak_mb']:.0f} MB"
                  + (f", mean acc of all {len(row['acc_all'])}: {statistics.fmean(row['acc_all']):.4f}"
                     if "acc_all" in row else ""), flush=True)


def report(args: argparse.Namespace) -> None:
    """A PNG (accuracy of every task after the last evaluated one; wall time and memory against T) and a markdown
    table of what ``log.json`` holds so far."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    log = json.loads((Path(args.out) / "log.json").read_text())
    dest = Path(args.report)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    header = ("| method | tasks learned | evaluated after task | mean CL1 acc. of all learned tasks | min | "
              "mean acc. just learned | train s/task (last 5) | peak RSS MB | regulariser holds MB |")
    lines = [header, "|---" * 9 + "|"]
    for m, rows in log["tasks"].items():
        if not rows:
            continue
        fin = log["final"].get(m) or {}
        if fin:
            acc = fin["accuracy"]
            line, = axes[0].plot(range(len(acc)), [100 * a for a in acc], ".-",
                                 label=f"{m} after task {fin['after_task']}")
            axes[0].plot([r["task"] for r in rows], [100 * r["acc_just_learned"] for r in rows], ":", lw=1,
                         color=line.get_color(), label=f"{m} right after learning it")
        ts = [r["task"] + 1 for r in rows]
        axes[1].plot(ts, [r["train_s"] for r in rows], label=m)
        line, = axes[2].plot(ts, [4 * r["hnet_params"] / 2**20 for r in rows], label=f"{m} model parameters")
        if rows[-1]["held_mb"] is not None:
            axes[2].plot(ts, [r["held_mb"] for r in rows], "--", color=line.get_color(),
                         label=f"{m} regulariser state")
        last = rows[-5:]
        lines.append(f"| {m} | {len(rows)} | {fin.get('after_task', '-')} | "
                     f"{100 * statistics.fmean(fin['accuracy']):.2f} | {100 * min(fin['accuracy']):.2f} | " if fin else
                     f"| {m} | {len(rows)} | - | - | - | ")
        lines[-1] += (f"{100 * statistics.fmean(r['acc_just_learned'] for r in rows):.2f} | "
                      f"{statistics.fmean(r['train_s'] for r in last):.0f} | "
                      f"{rows[-1]['rss_peak_mb']:.0f} | "
                      + ("-" if rows[-1]["held_mb"] is None else f"{rows[-1]['held_mb']:.1f}") + " |")
    rss = max(log["tasks"].values(), key=len)
    if rss:  # ru_maxrss is the whole process's: every learner's and the shared data's
        axes[2].plot([r["task"] + 1 for r in rss], [r["rss_peak_mb"] for r in rss], color="0.6",
                     label="process peak RSS (all learners, data)")
    p = log["protocol"]
    axes[0].set(xlabel="task index", ylabel="CL1 test accuracy (%)", title="accuracy of every learned task")
    axes[1].set(xlabel="task T", ylabel="training wall time per task (s)",
                title=f"{p['iterations']} steps/task, {p['threads']} thread(s), loaded CPU")
    axes[2].set(xlabel="task T", ylabel="MB (float32)", title="memory against T")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    atomic_save_figure(fig, dest / "permuted_mnist_100.png")
    table = "\n".join(lines)
    atomic_write_text(table + "\n", dest / "permuted_mnist_100.md")
    print(table)


def main(argv: Any = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="results/permuted_mnist_100")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--report", default=None, help="write the PNG and the markdown table to this folder and exit")
    ap.add_argument("--tasks", type=int, default=100)
    ap.add_argument("--iterations", type=int, default=250)
    ap.add_argument("--max-train", type=int, default=None, help="training images per task (default all 60000)")
    ap.add_argument("--max-test", type=int, default=1000)
    ap.add_argument("--eval-every", type=int, default=10)
    ap.add_argument("--stop-after", type=int, default=None,
                    help="learn only the first N of the --tasks tasks, then stop (--resume continues past N); the "
                         "configuration stays that of --tasks tasks")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, of {list(METHODS)}")
    args = ap.parse_args(argv)
    args.methods = [m for m in args.methods.split(",") if m]
    bad = [m for m in args.methods if m not in METHODS]
    stop = 1 if args.stop_after is None else args.stop_after
    counts = (args.tasks, args.iterations, args.max_test, args.eval_every, stop)
    if bad or min(counts) < 1:
        print(f"permuted_mnist_100: bad arguments (unknown methods {bad} or a count below 1); valid methods: "
              f"{list(METHODS)}", file=sys.stderr)
        return 2
    if args.report:
        report(args)
        return 0
    keep_freed_memory()
    train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
