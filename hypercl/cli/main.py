"""``hypercl``: parse the command line and hand it to the command's module (run, table, bench, ablation)."""

from __future__ import annotations

import sys
from typing import Optional, Sequence

from ..allocator import keep_freed_memory
from .ablation import cmd_ablation
from .args import build_parser
from .bench import cmd_bench
from .run import cmd_run
from .table import cmd_table

__all__ = ["main", "COMMANDS"]

COMMANDS = {"run": cmd_run, "table": cmd_table, "bench": cmd_bench, "ablation": cmd_ablation}


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    if args.command != "table":
        keep_freed_memory()  # no page faults on the large per-step temporaries (hypercl/allocator.py)
    return COMMANDS[args.command](args)
