"""``hypercl run``: everything checked before data is loaded (arguments, configs, output folder, checkpoints to
resume); :func:`validate_run` turns the parsed arguments into the configs of the jobs or one line for the user."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Optional

from ..checkpoint import CheckpointError, clean_stale_tmp, load_checkpoint
from ..config import AnyRunConfig, ReplayRunConfig, RunConfig
from ..experiments import method_run_config
from ..experiments.configs import CIFAR_METHODS, CL1_ONLY
from ..experiments.identity import identity_diff, run_config
from ..experiments.locks import RunLockedError, hold_run_lock
from ..experiments.report import ResultsFileError, check_results_file, results_path
from ..experiments.runner import ResumeError, check_checkpoint, checkpoint_path, run_tags
from ..replay import is_replay_method, replay_run_config
from .args import AllMethods
from .checks import Refusal, check_data_root, check_out_folder

__all__ = ["validate_run", "prepare_jobs", "replay_dir", "target_weights"]


def validate_run(args: argparse.Namespace) -> None:
    """Check the arguments of ``hypercl run`` and build its jobs (``args.method``, ``args.overrides``,
    ``args.prepared``); raises :class:`Refusal` with one line for the user."""
    if isinstance(args.method, AllMethods) and args.benchmark == "split_cifar":
        args.method = list(CIFAR_METHODS)
    bad = [
        m
        for m in args.method
        if ((None, m) in CL1_ONLY or (args.benchmark, m) in CL1_ONLY) and args.scenario != ["cl1"]
    ]
    if bad:
        raise Refusal(f"{', '.join(bad)} on {args.benchmark} runs in CL1 only; use --scenario cl1")
    if args.seeds < 1:
        raise Refusal(f"--seeds must be at least 1, got {args.seeds}")
    if args.iterations is not None and args.epochs is not None:
        raise Refusal("give --iterations or --epochs, not both")
    if args.reg_tasks_per_step is not None and args.reg_tasks_per_step < 1:
        raise Refusal(
            f"--reg-tasks-per-step must be at least 1 (old tasks regularised per step; leave it out for "
            f"all), got {args.reg_tasks_per_step}"
        )
    if args.parallel_seeds and (args.reg_tasks_per_step is not None or args.reg_targets == "online"):
        raise Refusal(
            "--parallel-seeds regularises all old tasks with stored targets; drop --parallel-seeds to use "
            "--reg-tasks-per-step or --reg-targets online"
        )
    if (args.resnet_depth is not None or args.resnet_widths is not None) and args.benchmark != "split_cifar":
        raise Refusal("--resnet-depth/--resnet-widths apply to split_cifar only")
    if args.task_inference is not None:
        from ..task_inference import get_criterion

        try:
            args.task_inference = get_criterion(args.task_inference).spec()
        except ValueError as e:
            raise Refusal(f"--task-inference: {e}") from None
        if args.parallel_seeds and args.task_inference != "entropy":
            raise Refusal(
                "--parallel-seeds evaluates with entropy task inference only; drop --parallel-seeds to "
                "use --task-inference"
            )
    if args.off_task is not None:
        from ..off_task import parse_off_task

        try:
            args.off_task = parse_off_task(args.off_task).spec()
        except ValueError as e:
            raise Refusal(f"--off-task: {e}") from None
        if args.parallel_seeds:
            raise Refusal("--parallel-seeds trains without the off-task term; drop --parallel-seeds to use --off-task")
    overrides = {
        "iterations": args.iterations,
        "lr": args.lr,
        "beta": args.beta,
        "batch_size": args.batch_size,
        "chunk_size": args.chunk_size,
        "max_train_per_task": args.max_train_per_task,
        "max_test_per_task": args.max_test_per_task,
        "num_tasks": args.num_tasks,
    }
    # split_cifar / new options: only passed when given, so the MNIST configs (and their JSON) stay as they were
    for key, value in (
        ("epochs", args.epochs),
        ("resnet_depth", args.resnet_depth),
        ("resnet_widths", args.resnet_widths),
        ("fisher_samples", args.fisher_samples),
        ("verify", False if args.no_verify else None),
        ("augment", False if args.no_augment else None),
        ("hnet_init", args.hnet_init),
        ("grow_new_task", args.grow_new_task),
        ("val_size", args.val_size),
        ("reg_tasks_per_step", args.reg_tasks_per_step),
        ("task_inference", args.task_inference),
        ("off_task", args.off_task),
        ("reg_targets", args.reg_targets),
    ):
        if value is not None:
            overrides[key] = value
    args.overrides = overrides
    args.prepared = prepare_jobs(args)


def target_weights(cfg: RunConfig) -> Optional[int]:
    """The number of target weights of an MLP config (None for a ResNet: not checked here)."""
    if cfg.target.is_resnet:
        return None
    b = cfg.benchmark
    dim = (b.pad_to or 28) ** 2
    out = 10 if b.name == "permuted_mnist" or cfg.output_layout == "per_task" else 2
    sizes = [dim, *list(cfg.target.hidden or ()), out]
    return sum(a * c + c for a, c in zip(sizes[:-1], sizes[1:]))


def replay_dir(cfg: ReplayRunConfig, checkpoints: Path) -> Path:
    """A replay run's checkpoints live in a folder named by its fingerprint (hypercl/replay names the files)."""
    return checkpoints / f"{cfg.benchmark.name}_{cfg.method}_{cfg.fingerprint()}"


def check_replay_checkpoints(
    cfg: ReplayRunConfig, method: str, seeds: list, checkpoints: Path, args: argparse.Namespace
) -> None:
    folder = replay_dir(cfg, checkpoints)
    mine = [p for s in seeds for p in folder.glob(f"*_seed{s}.pt")]
    if mine and not args.resume:
        try:
            load_checkpoint(mine[0], map_location="cpu")
        except CheckpointError as e:  # damaged: say so, rather than "already holds this run"
            raise Refusal(f"{e} (it is in the way of this run; --resume cannot continue it)") from None
        raise Refusal(
            f"{mine[0]} already holds this run (same configuration and seed); pass --resume to continue "
            "it, or remove it to train again"
        )
    if args.resume and not mine:
        for other in sorted(checkpoints.glob(f"{cfg.benchmark.name}_{method}_*/run.json")):
            if other.parent == folder or not any(other.parent.glob(f"*_seed{s}.pt") for s in seeds):
                continue
            try:
                stored = json.loads(other.read_text())
            except (OSError, ValueError):
                stored = {}
            diff = identity_diff({"config": stored}, {"config": cfg.to_json()})
            raise Refusal(
                f"--resume: no checkpoint of this run in {checkpoints}; {other.parent.name} is another "
                f"run (differs in {'; '.join(diff[:6]) or 'identity'}); run without --resume to start "
                "this one, or repeat the other run's settings"
            )


def prepare_jobs(args: argparse.Namespace) -> tuple[dict[str, AnyRunConfig], list[int]]:
    """Every check before data is loaded: returns {method: config} and the seeds; raises Refusal."""
    if not args.method:
        raise Refusal("--method is empty; give a method, a comma-separated list, 'all' or 'replay'")
    if not args.scenario:
        raise Refusal("--scenario is empty; give cl1, cl2, cl3, a comma-separated list, or 'all'")
    if args.seed_offset < 0:
        raise Refusal(f"--seed-offset must be zero or positive, got {args.seed_offset}")
    if args.num_tasks is not None and args.benchmark == "split_mnist":
        raise Refusal("--num-tasks does not apply to split_mnist (always 5 tasks); leave it out")
    if args.val_size is not None and args.val_size < 0:
        raise Refusal(f"--val-size must be zero or positive, got {args.val_size}")
    check_data_root(args.data_root)
    cfgs: dict[str, AnyRunConfig] = {}
    for method in args.method:
        if is_replay_method(method) and getattr(args, "off_task", None) is not None:
            raise Refusal(
                f"--off-task trains a classifier method's networks; {method} is a replay method: leave it out"
            )
        make_cfg = replay_run_config if is_replay_method(method) else method_run_config
        try:
            cfg = run_config(make_cfg, args.benchmark, method, quick=args.quick, **args.overrides)
        except ValueError as e:  # ConfigError included
            raise Refusal(str(e)) from None
        if isinstance(cfg, RunConfig) and cfg.hypernetwork is not None:
            n = target_weights(cfg)
            if n is not None and cfg.hypernetwork.chunk_size > n:
                raise Refusal(
                    f"--chunk-size {cfg.hypernetwork.chunk_size} is larger than the target network of "
                    f"{method} ({n:,} weights); choose at most {n}"
                )
        cfgs[method] = cfg
    out = args.out or Path("results") / args.benchmark
    check_out_folder(out)
    for folder in (out, out / "checkpoints"):
        clean_stale_tmp(folder)
    seeds = list(range(args.seed_offset, args.seed_offset + args.seeds))
    args.run_locks = []  # one lock per (identity, seed), held until the command ends (cmd_run releases them)
    # under torchrun every rank runs these checks before the process group exists; the writer (rank 0) holds the locks
    lock = hold_run_lock if int(os.environ.get("RANK", "0")) == 0 else (lambda path: -1)
    for method, cfg in cfgs.items():
        fingerprint = cfg.fingerprint()
        rpath = results_path(out, args.benchmark, method, args.quick, fingerprint)
        if rpath.exists():  # the file the results will be merged into: damaged -> say so now, not after training
            try:
                check_results_file(rpath, fingerprint)
            except ResultsFileError as e:
                raise Refusal(str(e)) from None
        try:
            if isinstance(cfg, ReplayRunConfig):
                folder = replay_dir(cfg, out / "checkpoints")
                args.run_locks += [lock(folder / f"seed{s}") for s in seeds]
                check_replay_checkpoints(cfg, method, seeds, out / "checkpoints", args)
                continue
            for seed in seeds:
                for _, tag in run_tags(method, args.scenario):
                    args.run_locks.append(lock(checkpoint_path(cfg, tag, seed, out / "checkpoints")))
                    check_checkpoint(cfg, tag, seed, out / "checkpoints", resume=args.resume)
        except (ResumeError, CheckpointError, RunLockedError) as e:
            raise Refusal(str(e)) from None
    return cfgs, seeds
