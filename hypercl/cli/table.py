"""``hypercl table``: the markdown table of results JSON files next to the paper's numbers."""

from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path

__all__ = ["cmd_table"]


def cmd_table(args: argparse.Namespace) -> int:
    from ..checkpoint import atomic_write_text
    from ..experiments import load_results, markdown_table

    files: list[str] = []
    for pattern in args.files:
        matched = sorted(glob.glob(pattern))
        for m in matched or [pattern]:
            if Path(m).is_dir():  # a results folder: every results JSON in it (the runs of all processes)
                files += sorted(str(p) for p in Path(m).glob("*.json") if p.name != "bench.json")
            else:
                files.append(m)
    if not files:
        print(f"hypercl table: no results JSON files in {' '.join(args.files)}", file=sys.stderr)
        return 2
    try:
        results = load_results(Path(f) for f in files)
    except ValueError as e:
        print(f"hypercl table: {e}", file=sys.stderr)
        return 2
    text = markdown_table(results, with_paper=not args.no_paper)
    if any(r.get("benchmark") == "split_cifar" for r in results):
        from ..experiments.report import format_table3

        text += "\n" + format_table3(results, with_paper=not args.no_paper, markdown=True)
    print(text)
    if args.out:
        atomic_write_text(text + "\n", args.out)
    return 0
