"""Experiments: the paper's configurations, the multi-seed runner, results files, plots and tables."""

from .configs import (
    ALL_METHODS,
    BASELINE_METHODS,
    BENCHMARK_CONFIGS,
    CIFAR_METHODS,
    HNET_METHODS,
    METHODS,
    method_config,
    method_run_config,
)
from .report import (
    PAPER_TABLE1,
    PAPER_TABLE3,
    format_table,
    format_table3,
    load_results,
    markdown_table,
    plot_matrices,
    write_results,
)
from .runner import build_benchmark, build_learner, run_seed
from .summary import summarize

__all__ = [
    "BASELINE_METHODS",
    "BENCHMARK_CONFIGS",
    "HNET_METHODS",
    "METHODS",
    "method_config",
    "method_run_config",
    "PAPER_TABLE1",
    "format_table",
    "load_results",
    "markdown_table",
    "plot_matrices",
    "write_results",
    "build_benchmark",
    "build_learner",
    "run_seed",
    "summarize",
    "ALL_METHODS",
    "CIFAR_METHODS",
    "PAPER_TABLE3",
    "format_table3",
]
