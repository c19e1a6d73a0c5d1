"""Command line: ``hypercl run`` (train + evaluate + results JSON/PNG + table), ``hypercl table``, ``hypercl bench``,
``hypercl ablation`` (Figure 2 ablations and the Split CIFAR speed extrapolation).

Each command's code is in the module of its name (:mod:`~hypercl.cli.run`, :mod:`~hypercl.cli.table`,
:mod:`~hypercl.cli.bench`, :mod:`~hypercl.cli.ablation`); the parser is :mod:`~hypercl.cli.args`, the checks made
before any data is loaded :mod:`~hypercl.cli.checks` and :mod:`~hypercl.cli.run_checks`, the dispatch
:mod:`~hypercl.cli.main`.
"""

from .args import build_parser
from .main import main

__all__ = ["main", "build_parser"]
