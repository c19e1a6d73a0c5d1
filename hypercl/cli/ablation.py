"""``hypercl ablation``: the Figure 2 ablations (compression ratio, β) and the Split CIFAR speed extrapolation."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Optional

import torch

from ..config import BETA_MAX
from ..devices import device_name
from .checks import Refusal, check_data_root, check_out_folder

__all__ = ["ablation_problem", "cmd_ablation"]


def ablation_problem(args: argparse.Namespace) -> Optional[str]:
    """The first problem with the ``hypercl ablation`` arguments (``None``: none), found before any data is read."""
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
    elif args.values is not None:
        from ..experiments.ablations import MAX_COMPRESSION_RATIO

        top, what = (BETA_MAX, "β") if args.kind == "beta" else (MAX_COMPRESSION_RATIO, "compression ratio")
        if any(v > top for v in args.values):
            problems.append(f"--values: a {what} is at most {top:g}, got {max(args.values):g}")
    if args.scenario is not None and not args.scenario:
        problems.append("--scenario is empty; give cl1, cl2, cl3, a list, or 'all'")
    if args.methods is not None and not args.methods.strip(" ,"):
        problems.append("--methods is empty; give comma-separated method names or leave it out")
    try:
        check_data_root(args.data_root)
        check_out_folder(args.out, sub=None, holds="the ablation JSON and PNG")
    except Refusal as e:
        problems.append(str(e))
    return problems[0] if problems else None


def cmd_ablation(args: argparse.Namespace) -> int:
    from ..experiments.ablations import run_ablation, summary_lines
    from .failures import run_to_the_end

    command = "hypercl " + " ".join(shlex.quote(a) for a in args.argv)
    problem = ablation_problem(args)
    if problem is not None:
        print(f"hypercl ablation: {problem}", file=sys.stderr)
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
    done, code = run_to_the_end(
        "ablation",
        command,
        "the ablation writes its JSON and PNG when every point is done",
        lambda: run_ablation(
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
        ),
        refused=(ValueError,),
    )
    if done is None:
        return code
    result, json_path, png = done
    print()
    print("\n".join(summary_lines(result)))
    print(f"wrote {json_path}" + (f" and {png}" if png else " (no plot)") + f" in {result['total_wall_time_s']:.0f} s")
    return 0
