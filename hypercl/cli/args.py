"""The ``hypercl`` argument parser: every command's options, and the argument types that check one value each."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from .. import __version__

__all__ = [
    "build_parser",
    "Parser",
    "AllMethods",
    "methods",
    "int_list",
    "float_list",
    "scenarios",
    "device",
    "criteria",
    "finite",
    "folder",
]


class AllMethods(list):
    """``--method all``: METHODS, or the Table 3 methods on split_cifar (see cmd_run)."""


def methods(value: str) -> list[str]:
    from ..experiments import METHODS
    from ..experiments.configs import ALL_METHODS
    from ..replay import REPLAY_METHODS

    if value == "all":
        return AllMethods(METHODS)
    names = list(REPLAY_METHODS) if value == "replay" else [m.strip() for m in value.split(",") if m.strip()]
    valid = list(ALL_METHODS) + list(REPLAY_METHODS)
    bad = [m for m in names if m not in valid]
    if bad:
        raise argparse.ArgumentTypeError(
            f"unknown method(s) {bad}; valid: {valid}, 'all' (Table 1) or 'replay' (Table 2)"
        )
    return names


def int_list(value: str) -> list[int]:
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {value!r}") from None


def float_list(value: str) -> list[float]:
    try:
        values = [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {value!r}") from None
    bad = [v for v in values if not math.isfinite(v)]
    if bad:
        raise argparse.ArgumentTypeError(f"expected finite numbers, got {bad[0]} in {value!r}")
    return values


def finite(value: str) -> float:
    """A float argument that is a finite number (``inf``/``nan`` refused before anything is loaded)."""
    try:
        v = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {value!r}")
    return v


def folder(value: str) -> Path:
    """An ``--out`` path; an empty one would mean the current folder, so it is refused."""
    if not value.strip():
        raise argparse.ArgumentTypeError("is empty; give a folder (or leave --out out for the default)")
    return Path(value)


def out_file(value: str) -> Path:
    """An ``--out`` file path (``hypercl table``'s markdown); an empty one is refused."""
    if not value.strip():
        raise argparse.ArgumentTypeError("is empty; give a file path (or leave --out out to print only)")
    return Path(value)


def scenarios(value: str) -> list[str]:
    from ..scenarios import SCENARIOS

    names = list(SCENARIOS) if value == "all" else [s.strip() for s in value.split(",") if s.strip()]
    bad = [s for s in names if s not in SCENARIOS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown scenario(s) {bad}; valid: {list(SCENARIOS)} or 'all'")
    return names


def device(value: str) -> torch.device:
    try:
        dev = torch.device(value)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"unknown device {value!r}; use cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"device {value!r} is not supported by hypercl; use cpu, cuda or cuda:N")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"--device {value} was asked for, but torch sees no CUDA device here")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(f"--device {value}: only {torch.cuda.device_count()} CUDA device(s)")
    return dev


class Parser(argparse.ArgumentParser):
    """Bad arguments: one line on stderr (what is wrong, where to look), exit code 2, no usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def criteria() -> list[str]:
    """The task-inference criteria ``--task-inference`` accepts (listed in its help)."""
    from ..task_inference import criterion_names

    return criterion_names()


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="hypercl", description="Continual learning with hypernetworks.")
    parser.add_argument("--version", action="version", version=f"hypercl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train and evaluate methods on a benchmark; writes JSON + PNG, prints a table")
    run.add_argument(
        "--benchmark",
        required=True,
        choices=["split_mnist", "permuted_mnist", "split_cifar"],
        help="the benchmark (required)",
    )
    run.add_argument(
        "--method",
        type=methods,
        required=True,
        help="(required) a method, a comma-separated list, or 'all' (hnet, hnet_iwr, lstm_net, "
        "lstm_net_iwr, lstm_net_grow, gru_net, finetune, ewc, online_ewc, si; replay setting "
        "(Table 2): hnet+r, hnet_iwr+r, lstm_net+r, lstm_net_iwr+r, lstm_net_grow+r, lwf, dgr, "
        "dgr+distill or 'replay'; scratch: one independent network per task, CL1 only; on "
        "split_cifar 'all' = the Table 3 methods)",
    )
    run.add_argument(
        "--scenario", type=scenarios, default=["cl1"], help="cl1, cl2, cl3, a list, or 'all' (default: cl1)"
    )
    run.add_argument(
        "--seeds", type=int, default=1, help="number of seeds (seed-offset, seed-offset+1, ...; default: 1)"
    )
    run.add_argument("--seed-offset", type=int, default=0, help="the first seed (default: 0)")
    run.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the target network's forward (for CUDA; eager fallback with a warning; default: eager)",
    )
    run.add_argument(
        "--bf16",
        action="store_true",
        help="bf16 autocast of the target's training forward (for CUDA; default: float32)",
    )
    run.add_argument(
        "--parallel-seeds",
        action="store_true",
        help="train all seeds of a hypernetwork method as one vmapped ensemble (one process; default: "
        "one seed after another)",
    )
    run.add_argument("--device", type=device, default=torch.device("cpu"), help="cpu, cuda or cuda:N (default: cpu)")
    run.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's choice; 1 is faster on a busy machine)",
    )
    run.add_argument(
        "--wide",
        action="store_true",
        help="print the wide result table (sd, se, during averages, task inference, the paper's "
        "numbers; default: a compact table)",
    )
    run.add_argument("--out", type=folder, default=None, help="output folder (default results/<benchmark>)")
    run.add_argument(
        "--data-root", default=None, help="data folder (default: $HYPERCL_DATA, else ~/.cache/hypercl/data)"
    )
    run.add_argument(
        "--quick",
        action="store_true",
        help="reduced run: data subset and few steps (~1 min on CPU; default: the full protocol)",
    )
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue from the checkpoints in --out (default: refuse to overwrite them)",
    )
    run.add_argument(
        "--iterations",
        type=int,
        default=None,
        help="override: optimizer steps per task (default: the benchmark's, 2000 on split_mnist)",
    )
    run.add_argument("--lr", type=finite, default=None, help="override: learning rate (default: the benchmark's)")
    run.add_argument(
        "--beta",
        type=finite,
        default=None,
        help="override β of eq. 2/3 (default: the benchmark's, 0.01 on split_mnist)",
    )
    run.add_argument("--batch-size", type=int, default=None, help="override: minibatch size (default: the benchmark's)")
    run.add_argument(
        "--chunk-size",
        type=int,
        default=None,
        help="override: hypernetwork chunk size (default: the method's configured one)",
    )
    run.add_argument(
        "--max-train-per-task",
        type=int,
        default=None,
        help="use only the first N training samples per task (default: all)",
    )
    run.add_argument(
        "--max-test-per-task", type=int, default=None, help="use only the first N test samples per task (default: all)"
    )
    run.add_argument("--num-tasks", type=int, default=None, help="Permuted MNIST: number of tasks (default: 10)")
    run.add_argument("--no-progress", action="store_true", help="no progress bars (default: shown)")
    run.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="override: epochs per task (split_cifar trains by epochs, 200 by default)",
    )
    run.add_argument("--resnet-depth", type=int, default=None, help="split_cifar: ResNet depth 6n+2 (default 32)")
    run.add_argument(
        "--resnet-widths",
        type=int_list,
        default=None,
        help="split_cifar: the three stage widths, e.g. 4,4,4 (default 16,32,64)",
    )
    run.add_argument(
        "--fisher-samples",
        type=int,
        default=None,
        help="override: samples per task for eq. 4 (IWR; default: the benchmark's)",
    )
    run.add_argument("--no-augment", action="store_true", help="split_cifar: no random crop + flip (default: augment)")
    run.add_argument(
        "--no-verify",
        action="store_true",
        help="skip the md5 check of the dataset files (hand-made test files; default: check)",
    )
    run.add_argument(
        "--hnet-init",
        choices=["von_oswald", "target_scale"],
        default=None,
        help="hypernetwork init scheme (default per method: von_oswald for hnet/hnet_iwr; see "
        "hypercl/experiments/configs.py for the recurrent methods)",
    )
    run.add_argument(
        "--grow-new-task",
        choices=["copy", "fresh"],
        default=None,
        help="lstm_net_grow: a new task's weights start as a copy of the previous task's (default) or as a fresh draw",
    )
    run.add_argument(
        "--task-inference",
        default=None,
        metavar="NAME",
        help="CL2/CL3 task inference of a hypernetwork: " + ", ".join(criteria()) + " (default "
        "entropy); settings as NAME:key=value,..., e.g. ensemble:samples=8,scale=0.5,measure=mi "
        "(docs/task_inference.md)",
    )
    run.add_argument(
        "--off-task",
        default=None,
        metavar="SPEC",
        help="train each task's network to be uncertain on off-task inputs made from its own batch (for CL2/CL3 "
        "task inference): patch_shuffle or pixel_shuffle, with settings as KIND:weight=W,grid=G, e.g. "
        "patch_shuffle:weight=0.1,grid=4 (default: off; docs/task_inference.md)",
    )
    run.add_argument(
        "--reg-tasks-per-step",
        type=int,
        default=None,
        metavar="K",
        help="hnet/iwr regularisers: each step regularise K old tasks drawn at random (an unbiased "
        "estimate of eq. 2/3, step cost flat in the number of tasks; default: all old tasks)",
    )
    run.add_argument(
        "--reg-targets",
        choices=["stored", "online"],
        default=None,
        help="hnet/iwr regularisers: keep the old tasks' targets (stored, default) or generate them "
        "from a frozen copy of the hypernetwork each step (online: memory flat in the tasks)",
    )
    run.add_argument(
        "--val-size",
        type=int,
        default=None,
        help="per task, hold out N training samples as a validation split (default 0 = none)",
    )

    table = sub.add_parser("table", help="markdown table of results JSON files next to the paper's numbers")
    table.add_argument("files", nargs="+", help="results JSON files or folders of them (globs allowed)")
    table.add_argument("--out", type=out_file, default=None, help="also write the markdown table to this file")
    table.add_argument("--no-paper", action="store_true")

    bench = sub.add_parser("bench", help="speed benchmark: hypernetwork step vs plain target step (ratios)")
    bench.add_argument("--quick", action="store_true", help="tiny configs, a few steps (for tests)")
    bench.add_argument("--device", type=device, default=torch.device("cpu"))
    bench.add_argument(
        "--out",
        type=folder,
        default=Path("results/bench.json"),
        help="a JSON file, or a folder (then FOLDER/bench.json)",
    )
    bench.add_argument("--steps", type=int, default=None)
    bench.add_argument(
        "--task-scaling",
        action="store_true",
        help="only the long task-scaling run (step time and memory at T = 1, 10, 50, 100 for the "
        "regularisers with K = all and K = 8, and GROW) and the hypnettorch anchor",
    )
    bench.add_argument("--png", type=Path, default=None, help="with --task-scaling: also draw it to this PNG")

    abl = sub.add_parser(
        "ablation",
        help="Figure 2 ablations (compression ratio, β) or the Split CIFAR speed extrapolation; writes JSON + PNG",
    )
    abl.add_argument("--kind", required=True, choices=["compression", "beta", "cifar-speed"])
    abl.add_argument(
        "--benchmark",
        default="split_mnist",
        choices=["split_mnist", "permuted_mnist", "split_cifar"],
        help="compression/beta: the benchmark (split_mnist substitutes for the paper's Split CIFAR)",
    )
    abl.add_argument("--quick", action="store_true", help="reduced run (~1 min on 2 CPU cores)")
    abl.add_argument("--out", type=folder, default=Path("results/ablations"))
    abl.add_argument("--device", type=device, default=torch.device("cpu"))
    abl.add_argument("--data-root", default=None)
    abl.add_argument("--seeds", type=int, default=1)
    abl.add_argument(
        "--values",
        type=float_list,
        default=None,
        help="compression: ratios (default 0.1,0.25,0.5,1,2); beta: β values (default 1e-4..1)",
    )
    abl.add_argument(
        "--methods",
        default=None,
        help="comma-separated; compression: hnet,lstm_net; beta: lstm_net_iwr; cifar-speed: the Table 3 methods",
    )
    abl.add_argument(
        "--scenario",
        type=scenarios,
        default=None,
        help="scenarios evaluated (default: all for MNIST, cl1 for split_cifar)",
    )
    abl.add_argument(
        "--steps",
        type=int,
        default=None,
        help="cifar-speed: timed steps per task (default: a full epoch on cuda, 3 on cpu)",
    )
    abl.add_argument("--iterations", type=int, default=None)
    abl.add_argument("--epochs", type=int, default=None)
    abl.add_argument("--max-train-per-task", type=int, default=None)
    abl.add_argument("--max-test-per-task", type=int, default=None)
    abl.add_argument("--resnet-depth", type=int, default=None)
    abl.add_argument("--resnet-widths", type=int_list, default=None)
    abl.add_argument("--no-verify", action="store_true")
    abl.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads (default: torch's choice; 1 is faster on a busy machine)",
    )
    return parser
