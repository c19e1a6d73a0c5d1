"""Command line: ``hypercl run`` (train + evaluate + results JSON/PNG + table), ``hypercl table``, ``hypercl bench``,
``hypercl ablation`` (Figure 2 ablations and the Split CIFAR speed extrapolation)."""

from __future__ import annotations

import argparse
import datetime as _dt
import glob
import shlex
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import torch

from . import __version__
from .allocator import keep_freed_memory

__all__ = ["main"]


class _AllMethods(list):
    """``--method all``: METHODS, or the Table 3 methods on split_cifar (see cmd_run)."""


def _methods(value: str) -> list[str]:
    from .experiments import METHODS
    from .experiments.configs import ALL_METHODS
    from .replay import REPLAY_METHODS

    if value == "all":
        return _AllMethods(METHODS)
    names = list(REPLAY_METHODS) if value == "replay" else [m.strip() for m in value.split(",") if m.strip()]
    valid = list(ALL_METHODS) + list(REPLAY_METHODS)
    bad = [m for m in names if m not in valid]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown method(s) {bad}; valid: {valid}, 'all' (Table 1) or 'replay' "
                                         "(Table 2)")
    return names


def _int_list(value: str) -> list[int]:
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {value!r}") from None


def _float_list(value: str) -> list[float]:
    try:
        return [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {value!r}") from None


def _scenarios(value: str) -> list[str]:
    from .scenarios import SCENARIOS

    names = list(SCENARIOS) if value == "all" else [s.strip() for s in value.split(",") if s.strip()]
    bad = [s for s in names if s not in SCENARIOS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown scenario(s) {bad}; valid: {list(SCENARIOS)} or 'all'")
    return names


def _device(value: str) -> torch.device:
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


class _Parser(argparse.ArgumentParser):
    """Bad arguments: one line on stderr (what is wrong, where to look), exit code 2, no usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _criteria() -> list[str]:
    from .task_inference import criterion_names

    return criterion_names()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hypercl", description="Continual learning with hypernetworks.")
    parser.add_argument("--version", action="version", version=f"hypercl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="train and evaluate methods on a benchmark; writes JSON + PNG, prints a table")
    run.add_argument("--benchmark", required=True, choices=["split_mnist", "permuted_mnist", "split_cifar"])
    run.add_argument("--method", type=_methods, required=True,
                     help="a method, a comma-separated list, or 'all' (hnet, hnet_iwr, lstm_net, lstm_net_iwr, "
                          "lstm_net_grow, gru_net, finetune, ewc, online_ewc, si; replay setting (Table 2): hnet+r, hnet_iwr+r, lstm_net+r, lstm_net_iwr+r, lstm_net_grow+r, lwf, dgr, dgr+distill or 'replay'; scratch: one independent network "
                          "per task, CL1 only; on split_cifar 'all' = the Table 3 methods)")
    run.add_argument("--scenario", type=_scenarios, default=["cl1"], help="cl1, cl2, cl3, a list, or 'all'")
    run.add_argument("--seeds", type=int, default=1, help="number of seeds (seed-offset, seed-offset+1, ...)")
    run.add_argument("--seed-offset", type=int, default=0)
    run.add_argument("--compile", action="store_true",
                     help="torch.compile the target network's forward (for CUDA; eager fallback with a warning)")
    run.add_argument("--bf16", action="store_true", help="bf16 autocast of the target's training forward (for CUDA)")
    run.add_argument("--parallel-seeds", action="store_true",
                     help="train all seeds of a hypernetwork method as one vmapped ensemble (one process)")
    run.add_argument("--device", type=_device, default=torch.device("cpu"))
    run.add_argument("--out", type=Path, default=None, help="output folder (default results/<benchmark>)")
    run.add_argument("--data-root", default=None, help="data folder (else $HYPERCL_DATA, else a cache folder)")
    run.add_argument("--quick", action="store_true", help="reduced run: data subset and few steps (~1 min on CPU)")
    run.add_argument("--resume", action="store_true", help="continue from the checkpoints in --out")
    run.add_argument("--iterations", type=int, default=None, help="override: optimizer steps per task")
    run.add_argument("--lr", type=float, default=None)
    run.add_argument("--beta", type=float, default=None, help="override β of eq. 2/3")
    run.add_argument("--batch-size", type=int, default=None)
    run.add_argument("--chunk-size", type=int, default=None)
    run.add_argument("--max-train-per-task", type=int, default=None)
    run.add_argument("--max-test-per-task", type=int, default=None)
    run.add_argument("--num-tasks", type=int, default=None, help="Permuted MNIST: number of tasks")
    run.add_argument("--no-progress", action="store_true")
    run.add_argument("--epochs", type=int, default=None,
                     help="override: epochs per task (split_cifar trains by epochs, 200 by default)")
    run.add_argument("--resnet-depth", type=int, default=None, help="split_cifar: ResNet depth 6n+2 (default 32)")
    run.add_argument("--resnet-widths", type=_int_list, default=None,
                     help="split_cifar: the three stage widths, e.g. 4,4,4 (default 16,32,64)")
    run.add_argument("--fisher-samples", type=int, default=None, help="override: samples per task for eq. 4 (IWR)")
    run.add_argument("--no-augment", action="store_true", help="split_cifar: no random crop + flip")
    run.add_argument("--no-verify", action="store_true",
                     help="skip the md5 check of the dataset files (hand-made test files)")
    run.add_argument("--hnet-init", choices=["von_oswald", "target_scale"], default=None,
                     help="hypernetwork init scheme (default per method: von_oswald for hnet/hnet_iwr; see "
                          "hypercl/experiments/configs.py for the recurrent methods)")
    run.add_argument("--grow-new-task", choices=["copy", "fresh"], default=None,
                     help="lstm_net_grow: a new task's weights start as a copy of the previous task's (default) "
                          "or as a fresh draw")
    run.add_argument("--task-inference", default=None, metavar="NAME",
                     help="CL2/CL3 task inference of a hypernetwork: " + ", ".join(_criteria()) + " (default "
                          "entropy); settings as NAME:key=value,..., e.g. ensemble:samples=8,scale=0.5,measure=mi "
                          "(docs/task_inference.md)")
    run.add_argument("--reg-tasks-per-step", type=int, default=None, metavar="K",
                     help="hnet/iwr regularisers: each step regularise K old tasks drawn at random (an unbiased "
                          "estimate of eq. 2/3, step cost flat in the number of tasks; default: all old tasks)")
    run.add_argument("--reg-targets", choices=["stored", "online"], default=None,
                     help="hnet/iwr regularisers: keep the old tasks' targets (stored, default) or generate them "
                          "from a frozen copy of the hypernetwork each step (online: memory flat in the tasks)")
    run.add_argument("--val-size", type=int, default=None,
                     help="per task, hold out N training samples as a validation split (default 0 = none)")

    table = sub.add_parser("table", help="markdown table of results JSON files next to the paper's numbers")
    table.add_argument("files", nargs="+", help="results JSON files or folders of them (globs allowed)")
    table.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    table.add_argument("--no-paper", action="store_true")

    bench = sub.add_parser("bench", help="speed benchmark: hypernetwork step vs plain target step (ratios)")
    bench.add_argument("--quick", action="store_true", help="tiny configs, a few steps (for tests)")
    bench.add_argument("--device", type=_device, default=torch.device("cpu"))
    bench.add_argument("--out", type=Path, default=Path("results/bench.json"),
                       help="a JSON file, or a folder (then FOLDER/bench.json)")
    bench.add_argument("--steps", type=int, default=None)
    bench.add_argument("--task-scaling", action="store_true",
                       help="only the long task-scaling run (step time and memory at T = 1, 10, 50, 100 for the "
                            "regularisers with K = all and K = 8, and GROW) and the hypnettorch anchor")
    bench.add_argument("--png", type=Path, default=None, help="with --task-scaling: also draw it to this PNG")

    abl = sub.add_parser("ablation", help="Figure 2 ablations (compression ratio, β) or the Split CIFAR speed "
                                          "extrapolation; writes JSON + PNG")
    abl.add_argument("--kind", required=True, choices=["compression", "beta", "cifar-speed"])
    abl.add_argument("--benchmark", default="split_mnist", choices=["split_mnist", "permuted_mnist", "split_cifar"],
                     help="compression/beta: the benchmark (split_mnist substitutes for the paper's Split CIFAR)")
    abl.add_argument("--quick", action="store_true", help="reduced run (~1 min on 2 CPU cores)")
    abl.add_argument("--out", type=Path, default=Path("results/ablations"))
    abl.add_argument("--device", type=_device, default=torch.device("cpu"))
    abl.add_argument("--data-root", default=None)
    abl.add_argument("--seeds", type=int, default=1)
    abl.add_argument("--values", type=_float_list, default=None,
                     help="compression: ratios (default 0.1,0.25,0.5,1,2); beta: β values (default 1e-4..1)")
    abl.add_argument("--methods", default=None,
                     help="comma-separated; compression: hnet,lstm_net; beta: lstm_net_iwr; cifar-speed: the "
                          "Table 3 methods")
    abl.add_argument("--scenario", type=_scenarios, default=None,
                     help="scenarios evaluated (default: all for MNIST, cl1 for split_cifar)")
    abl.add_argument("--steps", type=int, default=None,
                     help="cifar-speed: timed steps per task (default: a full epoch on cuda, 3 on cpu)")
    abl.add_argument("--iterations", type=int, default=None)
    abl.add_argument("--epochs", type=int, default=None)
    abl.add_argument("--max-train-per-task", type=int, default=None)
    abl.add_argument("--max-test-per-task", type=int, default=None)
    abl.add_argument("--resnet-depth", type=int, default=None)
    abl.add_argument("--resnet-widths", type=_int_list, default=None)
    abl.add_argument("--no-verify", action="store_true")
    abl.add_argument("--threads", type=int, default=None,
                     help="torch CPU threads (default: torch's choice; 1 is faster on a busy machine)")
    return parser


def cmd_run(args: argparse.Namespace) -> int:
    from .distributed import init_distributed, shutdown
    from .experiments.configs import CIFAR_METHODS, CL1_ONLY
    from .replay import is_replay_method

    if isinstance(args.method, _AllMethods) and args.benchmark == "split_cifar":
        args.method = list(CIFAR_METHODS)
    bad = [m for m in args.method if ((None, m) in CL1_ONLY or (args.benchmark, m) in CL1_ONLY)
           and args.scenario != ["cl1"]]
    if bad:
        print(f"hypercl: {', '.join(bad)} on {args.benchmark} runs in CL1 only; use --scenario cl1", file=sys.stderr)
        return 2
    if args.seeds < 1:
        print(f"hypercl: --seeds must be at least 1, got {args.seeds}", file=sys.stderr)
        return 2
    if args.iterations is not None and args.epochs is not None:
        print("hypercl: give --iterations or --epochs, not both", file=sys.stderr)
        return 2
    if args.reg_tasks_per_step is not None and args.reg_tasks_per_step < 1:
        print(f"hypercl: --reg-tasks-per-step must be at least 1 (old tasks regularised per step; leave it out for "
              f"all), got {args.reg_tasks_per_step}", file=sys.stderr)
        return 2
    if args.parallel_seeds and (args.reg_tasks_per_step is not None or args.reg_targets == "online"):
        print("hypercl: --parallel-seeds regularises all old tasks with stored targets; drop --parallel-seeds to use "
              "--reg-tasks-per-step or --reg-targets online", file=sys.stderr)
        return 2
    if (args.resnet_depth is not None or args.resnet_widths is not None) and args.benchmark != "split_cifar":
        print("hypercl: --resnet-depth/--resnet-widths apply to split_cifar only", file=sys.stderr)
        return 2
    if args.task_inference is not None:
        from .task_inference import get_criterion

        try:
            args.task_inference = get_criterion(args.task_inference).spec()
        except ValueError as e:
            print(f"hypercl: --task-inference: {e}", file=sys.stderr)
            return 2
        if args.parallel_seeds and args.task_inference != "entropy":
            print("hypercl: --parallel-seeds evaluates with entropy task inference only; drop --parallel-seeds to "
                  "use --task-inference", file=sys.stderr)
            return 2
    overrides = dict(iterations=args.iterations, lr=args.lr, beta=args.beta, batch_size=args.batch_size,
                     chunk_size=args.chunk_size, max_train_per_task=args.max_train_per_task,
                     max_test_per_task=args.max_test_per_task, num_tasks=args.num_tasks)
    # split_cifar / new options: only passed when given, so the MNIST configs (and their JSON) stay as they were
    for key, value in (("epochs", args.epochs), ("resnet_depth", args.resnet_depth),
                       ("resnet_widths", args.resnet_widths), ("fisher_samples", args.fisher_samples),
                       ("verify", False if args.no_verify else None), ("augment", False if args.no_augment else None),
                       ("hnet_init", args.hnet_init), ("grow_new_task", args.grow_new_task),
                       ("val_size", args.val_size), ("reg_tasks_per_step", args.reg_tasks_per_step),
                       ("task_inference", args.task_inference),
                       ("reg_targets", args.reg_targets)):
        if value is not None:
            overrides[key] = value
    args.overrides = overrides
    try:
        args.prepared = _prepare_jobs(args)
    except _Refusal as e:
        print(f"hypercl: {e}", file=sys.stderr)
        return 2
    ctx = init_distributed()  # None unless launched by torchrun with more than one process
    learner_kwargs: dict = {}
    if ctx is not None:
        if args.parallel_seeds or any(is_replay_method(m) for m in args.method):
            print("hypercl: --parallel-seeds and the replay methods do not run under torchrun", file=sys.stderr)
            shutdown()
            return 2
        args.device = ctx.device  # cuda:LOCAL_RANK (nccl) or cpu (gloo)
        args.no_progress = args.no_progress or not ctx.is_main
        learner_kwargs["distributed"] = ctx
    if args.compile:
        learner_kwargs["compile"] = True
    if args.bf16:
        learner_kwargs["autocast_dtype"] = torch.bfloat16
    try:
        return _run_jobs(args, ctx, learner_kwargs)
    finally:
        shutdown()


class _Refusal(Exception):
    """A bad argument found before any data is loaded: one line for the user."""


def _check_out_folder(out: Path, sub: Optional[str] = "checkpoints") -> None:
    if out.exists() and not out.is_dir():
        raise _Refusal(f"--out {out} is a file; give a folder (it will hold the results JSON, PNGs and checkpoints)")
    try:
        folder = out / sub if sub else out
        folder.mkdir(parents=True, exist_ok=True)
        import tempfile

        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test."):
            pass
    except OSError as e:
        raise _Refusal(f"--out {out} is not writable ({e.strerror or e}); choose a folder you can write") from None


def _check_data_root(value: Optional[str]) -> None:
    import os

    if value is None:
        return
    if not value.strip():
        raise _Refusal("--data-root is empty; give the folder holding MNIST/raw (or CIFAR), or leave it out")
    root = Path(value)
    if root.exists() and not root.is_dir():
        raise _Refusal(f"--data-root {root} is a file; give the folder holding MNIST/raw (or CIFAR)")
    if root.is_dir() and not os.access(root, os.R_OK | os.X_OK):
        raise _Refusal(f"--data-root {root} is not readable; fix its permissions or choose another folder")


def _target_weights(cfg: dict) -> Optional[int]:
    """The number of target weights of an MLP config (None for a ResNet: not checked here)."""
    if cfg["target"].get("model") == "resnet":
        return None
    b = cfg["benchmark"]
    dim = (b.get("pad_to") or 28) ** 2
    out = 10 if b["name"] == "permuted_mnist" or cfg.get("output_layout") == "per_task" else 2
    sizes = [dim] + list(cfg["target"]["hidden"]) + [out]
    return sum(a * c + c for a, c in zip(sizes[:-1], sizes[1:]))


def _replay_dir(cfg: dict, method: str, checkpoints: Path) -> Path:
    """A replay run's checkpoints live in a folder named by its fingerprint (hypercl/replay names the files)."""
    from .experiments.identity import _hash

    return checkpoints / f"{cfg['benchmark']['name']}_{method}_{_hash(cfg)}"


def _check_replay_checkpoints(cfg: dict, method: str, seeds: list, checkpoints: Path,
                              args: argparse.Namespace) -> None:
    import json

    from .experiments.identity import identity_diff

    folder = _replay_dir(cfg, method, checkpoints)
    mine = [p for s in seeds for p in folder.glob(f"*_seed{s}.pt")]
    if mine and not args.resume:
        raise _Refusal(f"{mine[0]} already holds this run (same configuration and seed); pass --resume to continue "
                       "it, or remove it to train again")
    if args.resume and not mine:
        for other in sorted(checkpoints.glob(f"{cfg['benchmark']['name']}_{method}_*/run.json")):
            if other.parent == folder or not any(other.parent.glob(f"*_seed{s}.pt") for s in seeds):
                continue
            try:
                stored = json.loads(other.read_text())
            except (OSError, ValueError):
                stored = {}
            diff = identity_diff({"config": stored}, {"config": cfg})
            raise _Refusal(f"--resume: no checkpoint of this run in {checkpoints}; {other.parent.name} is another "
                           f"run (differs in {'; '.join(diff[:6]) or 'identity'}); run without --resume to start "
                           "this one, or repeat the other run's settings")


def _prepare_jobs(args: argparse.Namespace) -> tuple[dict, list]:
    """Every check before data is loaded: returns {method: cfg} and the checkpoints to resume; raises _Refusal."""
    from .experiments import method_config
    from .experiments.identity import ConfigError, RunConfig
    from .experiments.runner import ResumeError, check_checkpoint, run_tags
    from .replay import is_replay_method, replay_method_config
    from .checkpoint import CheckpointError

    if not args.method:
        raise _Refusal("--method is empty; give a method, a comma-separated list, 'all' or 'replay'")
    if not args.scenario:
        raise _Refusal("--scenario is empty; give cl1, cl2, cl3, a comma-separated list, or 'all'")
    if args.seed_offset < 0:
        raise _Refusal(f"--seed-offset must be zero or positive, got {args.seed_offset}")
    if args.num_tasks is not None and args.benchmark == "split_mnist":
        raise _Refusal("--num-tasks does not apply to split_mnist (always 5 tasks); leave it out")
    if args.val_size is not None and args.val_size < 0:
        raise _Refusal(f"--val-size must be zero or positive, got {args.val_size}")

    _check_data_root(args.data_root)
    cfgs: dict[str, dict] = {}
    for method in args.method:
        make_cfg = replay_method_config if is_replay_method(method) else method_config
        try:
            cfg = make_cfg(args.benchmark, method, quick=args.quick, **args.overrides)
        except ValueError as e:
            raise _Refusal(str(e)) from None
        try:
            cfg = RunConfig.from_dict(cfg).validate().to_dict()
        except ConfigError as e:
            raise _Refusal(str(e)) from None
        except (KeyError, TypeError):  # a config shape RunConfig does not type (replay): fingerprinted as it is
            cfg = {**cfg, "protocol": RunConfig.__dataclass_fields__["protocol"].default}
        h = cfg.get("hypernetwork")
        n = _target_weights(cfg) if h else None
        if h and n is not None and int(h["chunk_size"]) > n:
            raise _Refusal(f"--chunk-size {h['chunk_size']} is larger than the target network of {method} "
                           f"({n:,} weights); choose at most {n}")
        cfgs[method] = cfg
    out = args.out or Path("results") / args.benchmark
    _check_out_folder(out)
    from .checkpoint import clean_stale_tmp

    for folder in (out, out / "checkpoints"):
        clean_stale_tmp(folder)
    seeds = list(range(args.seed_offset, args.seed_offset + args.seeds))
    for method, cfg in cfgs.items():
        if is_replay_method(method):
            _check_replay_checkpoints(cfg, method, seeds, out / "checkpoints", args)
            continue
        for seed in seeds:
            for _, tag in run_tags(method, args.scenario):
                try:
                    check_checkpoint(cfg, tag, seed, out / "checkpoints", resume=args.resume)
                except (ResumeError, CheckpointError) as e:
                    raise _Refusal(str(e)) from None
    return cfgs, seeds


def _run_jobs(args: argparse.Namespace, ctx, learner_kwargs: dict) -> int:  # noqa: ANN001 - DistributedContext
    from tqdm.auto import tqdm

    from .checkpoint import CheckpointError
    from .data import DatasetIntegrityError, DatasetNotFoundError
    from .experiments import format_table, plot_matrices, run_seed, summarize
    from .experiments.identity import RunConfig
    from .experiments.report import merge_results, results_path
    from .experiments.runner import ResumeError, build_benchmark, is_hnet_method, run_seeds_parallel
    from .learner import NonFiniteLossError
    from .replay import is_replay_method, run_replay_seed

    main_rank = ctx is None or ctx.is_main
    out = args.out or Path("results") / args.benchmark
    command = "hypercl " + " ".join(shlex.quote(a) for a in args.argv)
    cfgs, seeds = args.prepared
    results = []
    bench_cache: dict[str, object] = {}
    # one job per (method, seed), or per method when its seeds train as one ensemble (--parallel-seeds)
    jobs: list[tuple[str, list[int]]] = []
    for m in args.method:
        if args.parallel_seeds and is_hnet_method(m) and not is_replay_method(m):
            jobs.append((m, seeds))
        else:
            if args.parallel_seeds:
                print(f"hypercl: {m} is not a hypernetwork classifier; its seeds run one after another")
            jobs += [(m, [s]) for s in seeds]
    outer = tqdm(total=len(args.method) * len(seeds), desc="runs", disable=args.no_progress or not main_rank,
                 position=0)
    by_method: dict[str, list[dict]] = {}
    started: dict[str, float] = {}
    try:
        for method, job_seeds in jobs:
            replay = is_replay_method(method)
            cfg = cfgs[method]
            key = repr(cfg["benchmark"])
            if key not in bench_cache:
                if ctx is not None and not ctx.is_main:
                    torch.distributed.barrier()  # rank 0 downloads / verifies the files first
                bench_cache[key] = build_benchmark(cfg, args.data_root, args.device)
                if ctx is not None and ctx.is_main:
                    torch.distributed.barrier()
            bench = bench_cache[key]
            outer.set_description(f"{method} seed{'s' if len(job_seeds) > 1 else ''} "
                                  f"{','.join(map(str, job_seeds))}")
            started.setdefault(method, time.perf_counter())
            fingerprint = RunConfig.from_dict(cfg).fingerprint() if not replay else None
            if fingerprint is None:
                from .experiments.identity import _hash

                fingerprint = _hash(cfg)
            rpath = results_path(out, args.benchmark, method, args.quick, fingerprint)
            stem = rpath.stem
            if len(job_seeds) > 1:
                new_runs = run_seeds_parallel(cfg, bench, job_seeds, args.scenario, device=args.device,
                                              progress=not args.no_progress, checkpoint_dir=out / "checkpoints",
                                              resume=args.resume)
            elif replay:
                seed = job_seeds[0]
                rdir = _replay_dir(cfg, method, out / "checkpoints")
                if main_rank and not (rdir / "run.json").exists():
                    import json as _json

                    from .checkpoint import atomic_write_text

                    atomic_write_text(_json.dumps(cfg, indent=1), rdir / "run.json")  # the identity, for --resume
                new_runs = [run_replay_seed(cfg, bench, seed, args.scenario, device=args.device,
                                            progress=not args.no_progress, checkpoint_dir=rdir,
                                            resume=args.resume, samples_path=out / f"{stem}_samples_seed{seed}.png")]
            else:
                new_runs = [run_seed(cfg, bench, job_seeds[0], args.scenario, device=args.device,
                                     progress=not args.no_progress, checkpoint_dir=out / "checkpoints",
                                     resume=args.resume, learner_kwargs=learner_kwargs)]
            by_method.setdefault(method, []).extend(new_runs)
            outer.update(len(new_runs))
            if len(by_method[method]) == len(seeds):
                runs = by_method[method]
                result = {
                    "benchmark": args.benchmark, "method": method, "scenarios": args.scenario, "seeds": seeds,
                    "fingerprint": fingerprint, "protocol": cfg.get("protocol"), "reduced": bool(args.quick),
                    "run_kind": "reduced (--quick: data subset, few steps)" if args.quick else "full protocol",
                    "config": cfg, "summary": summarize(runs, args.scenario), "runs": runs,
                    "params": runs[0]["params"],
                    "wall_time_s": time.perf_counter() - started[method],
                    "parallel_seeds": len(job_seeds) > 1,
                    "world_size": ctx.world_size if ctx is not None else 1,
                    "flags": {"compile": bool(args.compile), "bf16": bool(args.bf16)},
                    "device": _device_name(args.device), "command": command,
                    "versions": {"hypercl": __version__, "torch": torch.__version__},
                    "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                }
                if main_rank:
                    result = merge_results(result, rpath)  # other processes' seeds of this run are kept
                    plot_matrices(result, out / f"{stem}.png")
                results.append(result)
    except (DatasetNotFoundError, DatasetIntegrityError) as e:
        outer.close()
        print(f"hypercl: data problem: {e}", file=sys.stderr)
        return 2
    except NonFiniteLossError as e:
        outer.close()
        print(f"hypercl: training stopped: {e}", file=sys.stderr)
        return 3
    except (CheckpointError, ResumeError) as e:
        outer.close()
        print(f"hypercl: checkpoint problem: {e}", file=sys.stderr)
        return 2
    except KeyError as e:
        outer.close()
        print(f"hypercl: checkpoint problem: a checkpoint lacks the entry {e}; remove it and train again",
              file=sys.stderr)
        return 2
    outer.close()
    if not main_rank:
        return 0
    print()
    print(format_table(results, scenarios=args.scenario))
    if args.benchmark == "split_cifar" and "cl1" in args.scenario:
        from .experiments.report import format_table3

        print(format_table3(results))
    print(f"results and heatmaps in {out}/ (device: {_device_name(args.device)})")
    return 0


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(dev)})"
    import os
    import platform

    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def cmd_table(args: argparse.Namespace) -> int:
    from .checkpoint import atomic_write_text
    from .experiments import load_results, markdown_table

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
        from .experiments.report import format_table3

        text += "\n" + format_table3(results, with_paper=not args.no_paper, markdown=True)
    print(text)
    if args.out:
        atomic_write_text(text + "\n", args.out)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import main as bench_main

    if args.steps is not None and args.steps < 1:
        print(f"hypercl bench: --steps must be at least 1, got {args.steps}", file=sys.stderr)
        return 2
    if args.out.is_dir() or str(args.out).endswith("/"):
        args.out = args.out / "bench.json"  # --out takes a folder, like run
    try:
        _check_out_folder(args.out.parent, sub=None)
    except _Refusal as e:
        print(f"hypercl bench: {e}", file=sys.stderr)
        return 2
    return bench_main(args)


def cmd_ablation(args: argparse.Namespace) -> int:
    from .data import DatasetIntegrityError, DatasetNotFoundError
    from .experiments.ablations import run_ablation, summary_lines
    from .learner import NonFiniteLossError

    command = "hypercl " + " ".join(shlex.quote(a) for a in args.argv)
    problems = [f"--{name.replace('_', '-')} must be at least 1, got {v}" for name in
                ("seeds", "steps", "iterations", "epochs", "max_train_per_task", "max_test_per_task", "threads")
                for v in [getattr(args, name)] if v is not None and v < 1]
    if args.values is not None and not args.values:
        problems.append("--values is empty; give comma-separated numbers")
    if args.values is not None and any(not v > 0 for v in args.values):
        problems.append(f"--values must all be positive, got {args.values}")
    if args.scenario is not None and not args.scenario:
        problems.append("--scenario is empty; give cl1, cl2, cl3, a list, or 'all'")
    if args.methods is not None and not args.methods.strip(" ,"):
        problems.append("--methods is empty; give comma-separated method names or leave it out")
    try:
        _check_data_root(args.data_root)
        _check_out_folder(args.out, sub=None)
    except _Refusal as e:
        problems.append(str(e))
    if problems:
        print(f"hypercl ablation: {problems[0]}", file=sys.stderr)
        return 2
    if args.threads is not None:
        torch.set_num_threads(max(1, args.threads))
    overrides = {}
    for key, value in (("iterations", args.iterations), ("epochs", args.epochs),
                       ("max_train_per_task", args.max_train_per_task), ("max_test_per_task", args.max_test_per_task),
                       ("resnet_depth", args.resnet_depth), ("resnet_widths", args.resnet_widths),
                       ("verify", False if args.no_verify else None)):
        if value is not None:
            overrides[key] = value
    methods = [m.strip() for m in args.methods.split(",") if m.strip()] if args.methods else None
    print(f"hypercl ablation --kind {args.kind}"
          + (f" --benchmark {args.benchmark}" if args.kind != "cifar-speed" else "")
          + (" (quick)" if args.quick else "") + f" on {_device_name(args.device)}")
    try:
        result, json_path, png = run_ablation(
            args.kind, benchmark=args.benchmark, quick=args.quick, out=args.out, device=args.device,
            data_root=args.data_root, seeds=list(range(args.seeds)), values=args.values, overrides=overrides,
            scenarios=args.scenario, steps=args.steps, methods=methods, command=command, log=print)
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
    print(f"wrote {json_path}" + (f" and {png}" if png else " (no plot: matplotlib missing)")
          + f" in {result['total_wall_time_s']:.0f} s")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    if args.command != "table":
        keep_freed_memory()  # no page faults on the large per-step temporaries (hypercl/allocator.py)
    return {"run": cmd_run, "table": cmd_table, "bench": cmd_bench, "ablation": cmd_ablation}[args.command](args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
