"""``hypercl run``: train and evaluate the checked jobs (:mod:`hypercl.cli.run_checks`), write the results JSON and
heatmaps, print the table."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Optional

import torch

from .. import __version__
from ..checkpoint import atomic_write_text, one_line
from ..config import ReplayRunConfig
from ..devices import device_name
from ..distributed import DistributedContext, init_distributed, shutdown
from ..experiments import format_table, plot_matrices, run_seed, summarize
from ..experiments.report import format_table3, merge_results, results_path, size_notes
from ..experiments.runner import build_benchmark, is_hnet_method, run_seeds_parallel
from ..replay import is_replay_method, run_replay_seed
from .checks import Refusal
from .failures import failure_line, interrupt_code, interrupt_name, sigterm_as_interrupt
from .run_checks import replay_dir, validate_run

__all__ = ["cmd_run", "run_jobs"]


def cmd_run(args: argparse.Namespace) -> int:
    """``hypercl run``: check everything (:func:`~hypercl.cli.run_checks.validate_run`), then train the jobs.

    Ctrl-C (exit 130) or SIGTERM (exit 143) ends the run with one line: what finished, what was kept, and the
    command that continues it (``--resume``); the run locks are released when the command ends."""
    args.done = {"finished": [], "current": None}  # what the interrupt message reports
    try:
        with sigterm_as_interrupt():
            return _checked_run(args)
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (Terminated)
        print(_interrupted_line(args, e), file=sys.stderr)
        return interrupt_code(e)
    finally:
        for fd in getattr(args, "run_locks", []):
            if fd >= 0:  # -1: a rank that does not write holds no lock
                os.close(fd)


def resume_command(args: argparse.Namespace) -> str:
    """The command line that continues this run: the same arguments with ``--resume``."""
    argv = list(args.argv)
    return "hypercl " + shlex.join(argv + ([] if "--resume" in argv else ["--resume"]))


def _interrupted_line(args: argparse.Namespace, e: BaseException) -> str:
    """One line after an interrupt: what finished, what was kept, how to continue."""
    name = interrupt_name(e)
    done = args.done
    out = args.out or Path("results") / args.benchmark
    during = f" during {done['current']}" if done["current"] else " before training started"
    finished = ", ".join(done["finished"]) or "nothing yet"
    return (
        f"hypercl: stopped by {name}{during}; finished: {finished}; kept: the checkpoint of every task learned "
        f"so far in {out / 'checkpoints'} and the merged results of finished methods; continue with: "
        f"{resume_command(args)}"
    )


def _checked_run(args: argparse.Namespace) -> int:
    try:
        validate_run(args)
    except Refusal as e:
        print(f"hypercl: {e}", file=sys.stderr)
        return 2
    ctx = init_distributed()  # None unless launched by torchrun with more than one process
    learner_kwargs: dict = {}
    if ctx is not None:
        if args.parallel_seeds or any(is_replay_method(m) for m in args.method):
            print("hypercl: --parallel-seeds and the replay methods do not run under torchrun", file=sys.stderr)
            shutdown()
            return 2
        args.device = ctx.device  # cuda:LOCAL_RANK (nccl) or cpu (gloo)
        args.no_progress = args.no_progress or not ctx.is_main
        learner_kwargs["distributed"] = ctx
    if getattr(args, "threads", None) is not None:
        torch.set_num_threads(max(1, args.threads))
    if args.compile:
        learner_kwargs["compile"] = True
    if args.bf16:
        learner_kwargs["autocast_dtype"] = torch.bfloat16
    try:
        return run_jobs(args, ctx, learner_kwargs)
    finally:
        shutdown()


def run_jobs(args: argparse.Namespace, ctx: Optional[DistributedContext], learner_kwargs: dict) -> int:
    """Train every (method, seeds) job of the checked arguments; write results JSON + heatmaps; print the table."""
    from tqdm.auto import tqdm

    main_rank = ctx is None or ctx.is_main
    out = args.out or Path("results") / args.benchmark
    command = "hypercl " + " ".join(shlex.quote(a) for a in args.argv)
    cfgs, seeds = args.prepared
    results = []
    bench_cache: dict[Any, Any] = {}
    # one job per (method, seed), or per method when its seeds train as one ensemble (--parallel-seeds)
    jobs: list[tuple[str, list[int]]] = []
    for m in args.method:
        if args.parallel_seeds and is_hnet_method(m) and not is_replay_method(m):
            jobs.append((m, seeds))
        else:
            if args.parallel_seeds:
                print(f"hypercl: {m} is not a hypernetwork classifier; its seeds run one after another")
            jobs += [(m, [s]) for s in seeds]
    outer = tqdm(
        total=len(args.method) * len(seeds), desc="runs", disable=args.no_progress or not main_rank, position=0
    )
    by_method: dict[str, list[dict]] = {}
    started: dict[str, float] = {}
    try:
        for method, job_seeds in jobs:
            cfg = cfgs[method]
            key = cfg.benchmark
            if key not in bench_cache:
                if ctx is not None and not ctx.is_main:
                    torch.distributed.barrier()  # rank 0 downloads / verifies the files first
                bench_cache[key] = build_benchmark(cfg, args.data_root, args.device)
                if ctx is not None and ctx.is_main:
                    torch.distributed.barrier()
            bench = bench_cache[key]
            what = f"{method} seed{'s' if len(job_seeds) > 1 else ''} {','.join(map(str, job_seeds))}"
            outer.set_description(what)
            args.done["current"] = what
            started.setdefault(method, time.perf_counter())
            fingerprint = cfg.fingerprint()
            rpath = results_path(out, args.benchmark, method, args.quick, fingerprint)
            stem = rpath.stem
            if len(job_seeds) > 1:
                new_runs = run_seeds_parallel(
                    cfg,
                    bench,
                    job_seeds,
                    args.scenario,
                    device=args.device,
                    progress=not args.no_progress,
                    checkpoint_dir=out / "checkpoints",
                    resume=args.resume,
                )
            elif isinstance(cfg, ReplayRunConfig):
                seed = job_seeds[0]
                rdir = replay_dir(cfg, out / "checkpoints")
                if main_rank and not (rdir / "run.json").exists():
                    # the identity, for --resume
                    atomic_write_text(json.dumps(cfg.to_json(), indent=1), rdir / "run.json")
                new_runs = [
                    run_replay_seed(
                        cfg,
                        bench,
                        seed,
                        args.scenario,
                        device=args.device,
                        progress=not args.no_progress,
                        checkpoint_dir=rdir,
                        resume=args.resume,
                        samples_path=out / f"{stem}_samples_seed{seed}.png",
                    )
                ]
            else:
                new_runs = [
                    run_seed(
                        cfg,
                        bench,
                        job_seeds[0],
                        args.scenario,
                        device=args.device,
                        progress=not args.no_progress,
                        checkpoint_dir=out / "checkpoints",
                        resume=args.resume,
                        learner_kwargs=learner_kwargs,
                    )
                ]
            by_method.setdefault(method, []).extend(new_runs)
            args.done["finished"].append(what)
            args.done["current"] = None
            outer.update(len(new_runs))
            if len(by_method[method]) == len(seeds):
                runs = by_method[method]
                result = {
                    "benchmark": args.benchmark,
                    "method": method,
                    "scenarios": args.scenario,
                    "seeds": seeds,
                    "fingerprint": fingerprint,
                    "protocol": cfg.protocol,
                    "reduced": bool(args.quick),
                    "run_kind": "reduced (--quick: data subset, few steps)" if args.quick else "full protocol",
                    "config": cfg.to_json(),
                    "summary": summarize(runs, args.scenario),
                    "runs": runs,
                    "params": runs[0]["params"],
                    "wall_time_s": time.perf_counter() - started[method],
                    "parallel_seeds": len(job_seeds) > 1,
                    "world_size": ctx.world_size if ctx is not None else 1,
                    "flags": {"compile": bool(args.compile), "bf16": bool(args.bf16)},
                    "device": device_name(args.device),
                    "command": command,
                    "versions": {"hypercl": __version__, "torch": torch.__version__},
                    "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                }
                if main_rank:
                    result = merge_results(result, rpath)  # other processes' seeds of this run are kept
                    try:
                        plot_matrices(result, out / f"{stem}.png")
                    except OSError as e:  # a heatmap is a convenience: the results JSON is what counts
                        print(
                            f"hypercl: warning: heatmap not written: {one_line(str(e))}; the results JSON "
                            f"{rpath} is complete",
                            file=sys.stderr,
                        )
                results.append(result)
    except KeyError as e:
        outer.close()
        print(
            f"hypercl: checkpoint problem: a checkpoint lacks the entry {e}; remove it and train again", file=sys.stderr
        )
        return 2
    except Exception as e:
        outer.close()
        failure = failure_line(e, resume_command(args))
        if failure is None:
            raise
        print(failure[0], file=sys.stderr)
        return failure[1]
    outer.close()
    if not main_rank:
        return 0
    print()
    print(format_table(results, scenarios=args.scenario, wide=bool(getattr(args, "wide", False))))
    for line in size_notes(results):
        print(line)
    if args.benchmark == "split_cifar" and "cl1" in args.scenario:
        print(format_table3(results))
    print(f"results and heatmaps in {out}/ (device: {device_name(args.device)})")
    return 0
