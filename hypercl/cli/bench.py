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
    from .failures import failure_line, interrupt_code, interrupt_name, sigterm_as_interrupt

    command = "hypercl " + shlex.join(args.argv)
    try:
        with sigterm_as_interrupt():
            return bench_main(args)
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM
        print(
            f"hypercl bench: stopped by {interrupt_name(e)}; nothing written ({args.out} is written when every "
            f"measurement is done); run it again: {command}",
            file=sys.stderr,
        )
        return interrupt_code(e)
    except Exception as e:
        failure = failure_line(e, f"{command} (it starts over)")
        if failure is None:
            raise
        print(failure[0], file=sys.stderr)
        return failure[1]
