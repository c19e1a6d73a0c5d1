"""``hypercl ablation``: the Figure 2 ablations (compression ratio, β) and the Split CIFAR speed extrapolation."""

from __future__ import annotations

import argparse
import shlex
import sys

import torch

from ..devices import device_name
from .checks import Refusal, check_data_root, check_out_folder

__all__ = ["cmd_ablation"]


def cmd_ablation(args: argparse.Namespace) -> int:
    from ..data import DatasetIntegrityError, DatasetNotFoundError
    from ..experiments.ablations import run_ablation, summary_lines
    from ..learner import NonFiniteLossError

    command = "hypercl " + " ".join(shlex.quote(a) for a in args.argv)
    problems = [
        f"--{name.replace('_', '-')} must be at least 1, got {v}"
        for name in ("seeds", "steps", "iterations", "epochs", "max_train_per_task", "max_test_per_task", "threads")
        for v in [getattr(args, name)]
        if v is not None and v < 1
    ]
    if args.values is not None and not args.values:
        problems.append("--values is empty; give comma-separated numbers")
    if args.values is not None and any(not v > 0 for v in args.values):
        problems.append(f"--values must all be positive, got {args.values}")
    if args.scenario is not None and not args.scenario:
        problems.append("--scenario is empty; give cl1, cl2, cl3, a list, or 'all'")
    if args.methods is not None and not args.methods.strip(" ,"):
        problems.append("--methods is empty; give comma-separated method names or leave it out")
    try:
        check_data_root(args.data_root)
        check_out_folder(args.out, sub=None, holds="the ablation JSON and PNG")
    except Refusal as e:
        problems.append(str(e))
    if problems:
        print(f"hypercl ablation: {problems[0]}", file=sys.stderr)
        return 2
    if args.threads is not None:
        torch.set_num_threads(max(1, args.threads))
    overrides = {}
    for key, value in (
        ("iterations", args.iterations),
        ("epochs", args.epochs),
        ("max_train_per_task", args.max_train_per_task),
        ("max_test_per_task", args.max_test_per_task),
        ("resnet_depth", args.resnet_depth),
        ("resnet_widths", args.resnet_widths),
        ("verify", False if args.no_verify else None),
    ):
        if value is not None:
            overrides[key] = value
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    print(
        f"hypercl ablation --kind {args.kind}"
        + (f" --benchmark {args.benchmark}" if args.kind != "cifar-speed" else "")
        + (" (quick)" if args.quick else "")
        + f" on {device_name(args.device)}"
    )
    try:
        result, json_path, png = run_ablation(
            args.kind,
            benchmark=args.benchmark,
            quick=args.quick,
            out=args.out,
            device=args.device,
            data_root=args.data_root,
            seeds=list(range(args.seeds)),
            values=args.values,
            overrides=overrides,
            scenarios=args.scenario,
            steps=args.steps,
            methods=methods,
            command=command,
            log=print,
        )
    except (DatasetNotFoundError, DatasetIntegrityError) as e:
        print(f"hypercl: data problem: {e}", file=sys.stderr)
        return 2
    except NonFiniteLossError as e:
        print(f"hypercl: training stopped: {e}", file=sys.stderr)
        return 3
    except ValueError as e:
        print(f"hypercl ablation: {e}", file=sys.stderr)
        return 2
    print()
    print("\n".join(summary_lines(result)))
    print(
        f"wrote {json_path}"
        + (f" and {png}" if png else " (no plot: matplotlib missing)")
        + f" in {result['total_wall_time_s']:.0f} s"
    )
    return 0
