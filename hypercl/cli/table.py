"""``hypercl table``: the markdown table of results JSON files next to the paper's numbers."""

from __future__ import annotations

import argparse
import glob
import sys
from pathlib import Path

__all__ = ["cmd_table"]


def cmd_table(args: argparse.Namespace) -> int:
    """The table of every readable results file; each damaged one is named on stderr in one line (exit 1 if any
    was skipped, 2 if none could be read)."""
    from ..checkpoint import FileWriteError, atomic_write_text, one_line
    from ..experiments import markdown_table
    from ..experiments.results_file import ResultsFileError, read_results

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
    results, bad = [], 0
    for f in files:
        try:
            results.append(read_results(f))
        except ResultsFileError as e:
            print(f"hypercl table: skipped {one_line(str(e), 600)}", file=sys.stderr)
            bad += 1
    if not results:  # each file was named above
        return 2
    text = markdown_table(results, with_paper=not args.no_paper)
    if any(r.get("benchmark") == "split_cifar" for r in results):
        from ..experiments.report import format_table3

        text += "\n" + format_table3(results, with_paper=not args.no_paper, markdown=True)
    print(text)
    if args.out:
        try:
            atomic_write_text(text + "\n", args.out)
        except FileWriteError as e:
            print(f"hypercl table: {one_line(str(e))}", file=sys.stderr)
            return 4
    return 1 if bad else 0
