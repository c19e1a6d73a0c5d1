"""``hypercl bench``: the speed benchmark (hypernetwork step against a plain target step)."""

from __future__ import annotations

import argparse
import shlex
import sys

from .checks import Refusal, check_out_folder

__all__ = ["cmd_bench"]


def cmd_bench(args: argparse.Namespace) -> int:
    from ..bench import main as bench_main

    if args.steps is not None and args.steps < 1:
        print(f"hypercl bench: --steps must be at least 1, got {args.steps}", file=sys.stderr)
        return 2
    if args.out.is_dir() or str(args.out).endswith("/"):
        args.out = args.out / "bench.json"  # --out takes a folder, like run
    try:
        check_out_folder(args.out.parent, sub=None, holds="bench.json")
    except Refusal as e:
        print(f"hypercl bench: {e}", file=sys.stderr)
        return 2
    from .failures import run_to_the_end

    command = "hypercl " + shlex.join(args.argv)
    done, code = run_to_the_end(
        "bench", command, f"{args.out} is written when every measurement is done", lambda: bench_main(args)
    )
    return done if done is not None else code
