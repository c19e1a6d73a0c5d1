"""The published configurations of the paper's MNIST experiments (Table 1), as plain data.

HNET baseline: the defaults of von Oswald et al. 2020's reference code, as given in the issue tracker (Split MNIST:
Adam 1e-3, 2000 iterations, batch 128, hnet (10, 10) ReLU, chunk 42000, embeddings 96/96, β 0.01, lookahead;
Permuted MNIST-10: inputs padded to 32×32, Adam 1e-4, 5000 iterations, hnet (25, 25) ELU, chunk 78000, embeddings
24/8, β 0.1). LSTM hypernetworks (seed paper 4.1): one layer, embeddings 96/96, hidden 64, batch 128, with a chunk
size that keeps them no larger than the HNET baseline (Split MNIST: 6000; Permuted MNIST: 30000). The LSTM runs use
the HNET baseline's optimiser, iterations and β (the paper does not give its own).

Split CIFAR-10/100 (seed paper 4.1/4.2.3, Table 3; the protocol of von Oswald et al. 2020): ResNet-32 target with
10 outputs (every task has 10 classes; hypernetworks use the "shared" output layout, one weight set per task), per-task
BatchNorm statistics, random crop (padding 4) + horizontal flip on the device, batch 32, 200 epochs per task, Adam
lr 1e-3, CL1. HNET: von Oswald et al.'s ResNet-32 defaults (GitHub chrhenning/hypercl, cifar/train_args.py, mode
``resnet_cifar``: ``hyper_chunks=7000``, ``hnet_arch=''`` (no hidden layer: one linear layer from ⟨e_t, c_j⟩ to the
chunk), ``temb_size=32``, ``emb_size=32``, ``beta=0.05``, ``lr=0.001``, ``batch_size=32``, ``epochs=200``; the
README's command adds ``--use_adam``; lookahead is on unless ``--no_lookahead``). LSTM hypernetworks: hidden 128,
embeddings 96/96, batch 32 (seed paper 4.1) and chunk size 2000, which keeps LSTM_NET (443,904 parameters with six
task embeddings) below HNET (457,336); the LSTM runs use HNET's optimiser and β (the paper gives neither).
"scratch" is training from scratch (:class:`~hypercl.independent.IndependentWeights`, one fresh ResNet-32 per task),
"finetune" one shared ResNet-32 (CL1: 60 outputs, one 10-unit head per task). Both run in CL1 only.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any, Optional

from ..config import (
    AugmentConfig,
    BenchmarkConfig,
    EvaluationConfig,
    FrozenMap,
    HypernetworkConfig,
    OffTaskConfig,
    RunConfig,
    StrategyConfig,
    TargetConfig,
    TrainingConfig,
)

__all__ = [
    "HNET_METHODS",
    "BASELINE_METHODS",
    "METHODS",
    "BENCHMARK_CONFIGS",
    "method_config",
    "QUICK",
    "EXTRA_METHODS",
    "ALL_METHODS",
    "CIFAR_METHODS",
    "CL1_ONLY",
    "HNET_INIT",
    "RECURRENT_INIT",
    "LSTM_INIT",
    "INIT_SCHEMES",
    "GROW_NEW_TASK",
    "method_run_config",
]

#: method name -> (generator, strategy)
HNET_METHODS: dict[str, tuple[str, str]] = {
    "hnet": ("chunked_mlp", "hnet"),
    "hnet_iwr": ("chunked_mlp", "iwr"),
    "lstm_net": ("lstm", "hnet"),
    "lstm_net_iwr": ("lstm", "iwr"),
    "lstm_net_grow": ("lstm", "grow"),
    "gru_net": ("gru", "hnet"),
}
#: hypernetwork init scheme per method (``HyperNetwork(init=...)``, ``--hnet-init``). HNET and HNET_IWR: von Oswald
#: et al.'s own init ("von_oswald": xavier weights, zero biases, N(0, 1) embeddings; mnist/train_utils.py of GitHub
#: chrhenning/hypercl). The recurrent (LSTM/GRU) methods: not decided yet -- RECURRENT_INIT is the one place to change
#: it (LSTM_INIT is the same constant under its older name).
RECURRENT_INIT = "target_scale"
LSTM_INIT = RECURRENT_INIT
HNET_INIT: dict[str, str] = {"hnet": "von_oswald", "hnet_iwr": "von_oswald"}
INIT_SCHEMES = ("von_oswald", "target_scale")
#: GROW (seed paper 3.3): a new task's w^t, W^t start as a copy of the previous task's (``--grow-new-task``)
GROW_NEW_TASK = "copy"
BASELINE_METHODS = ("finetune", "ewc", "online_ewc", "si")
METHODS = tuple(HNET_METHODS) + BASELINE_METHODS
#: methods outside METHODS (so ``--method all`` keeps its meaning): "scratch" = one independent network per task
EXTRA_METHODS = ("scratch",)
ALL_METHODS = METHODS + EXTRA_METHODS
#: the rows of the seed paper's Table 3 (``--method all`` on split_cifar)
CIFAR_METHODS = ("finetune", "scratch", "hnet", "hnet_iwr", "lstm_net", "lstm_net_iwr", "lstm_net_grow")
#: (benchmark or None for all, method) pairs that are run in CL1 only
CL1_ONLY = {(None, "scratch"), ("split_cifar", "finetune")}

BENCHMARK_CONFIGS: dict[str, dict[str, Any]] = {
    "split_mnist": {
        "benchmark": {"name": "split_mnist"},
        "target": {"hidden": [400, 400], "activation": "relu"},
        # hypernetwork targets keep von Oswald's multi-head layout (10 outputs, each task its own 2): 478,410 weights
        "hnet_output_layout": "per_task",
        "train": {"iterations": 2000, "batch_size": 128, "lr": 1e-3, "optimizer": "adam"},
        "chunked_mlp": {
            "hidden_size": [10, 10],
            "activation": "relu",
            "chunk_size": 42000,
            "task_emb_dim": 96,
            "chunk_emb_dim": 96,
        },
        "recurrent": {"hidden_size": 64, "chunk_size": 6000, "task_emb_dim": 96, "chunk_emb_dim": 96},
        "regularizer": {"beta": 0.01, "lookahead": True},
        "fisher_samples": None,
    },
    "permuted_mnist": {
        "benchmark": {"name": "permuted_mnist", "num_tasks": 10, "pad_to": 32, "first_identity": True},
        "target": {"hidden": [1000, 1000], "activation": "relu"},
        "hnet_output_layout": "shared",
        "train": {"iterations": 5000, "batch_size": 128, "lr": 1e-4, "optimizer": "adam"},
        "chunked_mlp": {
            "hidden_size": [25, 25],
            "activation": "elu",
            "chunk_size": 78000,
            "task_emb_dim": 24,
            "chunk_emb_dim": 8,
        },
        "recurrent": {"hidden_size": 64, "chunk_size": 30000, "task_emb_dim": 96, "chunk_emb_dim": 96},
        # lookahead on: von Oswald et al.'s mnist/train_args_default.py, ``_set_default_permuted``, sets
        # ``config.no_lookahead = False`` for Permuted MNIST (GitHub chrhenning/hypercl at commit
        # e32567889f772f8de783a437ff0beb2d426bc7b6)
        "regularizer": {"beta": 0.1, "lookahead": True},
        # eq. 4 on a random subset: 5000 of the 60000 samples per task keeps the Fisher pass short on a CPU
        "fisher_samples": 5000,
    },
    "split_cifar": {
        "benchmark": {"name": "split_cifar"},
        # ResNet-32 (resnet32(10)); depth/widths can be overridden (tests use a tiny cifar_resnet)
        "target": {"model": "resnet", "depth": 32, "widths": [16, 32, 64]},
        "hnet_output_layout": "shared",
        # eval_batch_size: test images per vmap call over all learned tasks' ResNets (6 x 500 images at once)
        "train": {"epochs": 200, "batch_size": 32, "lr": 1e-3, "optimizer": "adam", "eval_batch_size": 500},
        # random crop (4 px padding, padded with black in each task's normalised space) + horizontal flip
        "augment": {"kind": "random_crop_flip", "padding": 4, "fill": "black"},
        "chunked_mlp": {
            "hidden_size": [],
            "activation": "relu",
            "chunk_size": 7000,
            "task_emb_dim": 32,
            "chunk_emb_dim": 32,
        },
        "recurrent": {"hidden_size": 128, "chunk_size": 2000, "task_emb_dim": 96, "chunk_emb_dim": 96},
        "regularizer": {"beta": 0.05, "lookahead": True},
        # eq. 4 on 5000 samples per task: all of a CIFAR-100 split, a 10% subset of CIFAR-10 (our choice)
        "fisher_samples": 5000,
    },
}

#: --quick: a reduced run (subset of the data, fewer steps) that finishes in about a minute on 2 CPU cores
QUICK: dict[str, dict[str, Any]] = {
    "split_mnist": {"iterations": 100, "max_train_per_task": 2000, "max_test_per_task": 500, "fisher_samples": 500},
    "permuted_mnist": {
        "iterations": 100,
        "max_train_per_task": 2000,
        "max_test_per_task": 500,
        "num_tasks": 3,
        "fisher_samples": 500,
    },
    "split_cifar": {
        "epochs": 1,
        "max_train_per_task": 128,
        "max_test_per_task": 100,
        "num_tasks": 3,
        "fisher_samples": 32,
    },
}


def _baseline_kwargs(benchmark: str, method: str) -> dict[str, dict[str, Any]]:
    """van de Ven & Tolias 2019's per-scenario hyper-parameters of a baseline (see hypercl.baselines)."""
    if method == "finetune":
        return {}
    from ..baselines import PAPER_HYPERPARAMETERS

    per = copy.deepcopy(PAPER_HYPERPARAMETERS.get(benchmark, {}).get(method, {}))
    samples = BENCHMARK_CONFIGS[benchmark]["fisher_samples"]
    if method in ("ewc", "online_ewc") and samples is not None:
        for kw in per.values():  # the same Fisher subset as IWR on this benchmark (CPU time)
            if kw.get("fisher_samples") is None:
                kw["fisher_samples"] = samples
    return per


def _method_base(benchmark: str, method: str, quick: bool) -> RunConfig:
    """The published configuration of ``method`` on ``benchmark``, typed from the tables above (no overrides)."""
    base = BENCHMARK_CONFIGS[benchmark]
    hypernetwork: Optional[HypernetworkConfig] = None
    layout: Optional[str] = None
    if method in HNET_METHODS:
        generator, name = HNET_METHODS[method]
        gen = base["chunked_mlp"] if generator == "chunked_mlp" else base["recurrent"]
        init = HNET_INIT.get(method, RECURRENT_INIT)
        hypernetwork = HypernetworkConfig.from_json({"generator": generator, **gen, "init": init})
        layout = base["hnet_output_layout"]
        kwargs: dict[str, Any] = {}
        if name in ("hnet", "iwr"):
            kwargs.update(base["regularizer"])
        if name == "iwr":
            kwargs["fisher_samples"] = base["fisher_samples"]
        if name == "grow":
            kwargs["new_task_weights"] = GROW_NEW_TASK
        strategy = StrategyConfig(name, FrozenMap(kwargs))
    elif method == "scratch":  # one independent network per task: nothing to protect, each task its own weights
        layout = "shared"
        strategy = StrategyConfig("none")
    else:
        strategy = StrategyConfig(method, per_scenario_kwargs=FrozenMap(_baseline_kwargs(benchmark, method)))
    return RunConfig(
        method=method,
        benchmark=BenchmarkConfig.from_json(base["benchmark"]),
        target=TargetConfig.from_json(base["target"]),
        training=TrainingConfig.from_json(base["train"]),
        strategy=strategy,
        hypernetwork=hypernetwork,
        output_layout=layout,
        quick=quick,
        augment=AugmentConfig.from_json(base["augment"]) if "augment" in base else None,
        protocol=None,
    )


def _task_length(training: TrainingConfig, key: str, value: int) -> TrainingConfig:
    """``iterations`` or ``epochs`` (one of the two: the last one given wins)."""
    other = "epochs" if key == "iterations" else "iterations"
    change: dict[str, Any] = {key: value, other: None}
    return replace(training, **change)


def _with_fisher_samples(strategy: StrategyConfig, samples: int) -> StrategyConfig:
    """IWR's Fisher subset, and that of every baseline scenario that has one (the reduced ``quick`` runs)."""
    if strategy.name == "iwr":
        strategy = strategy.with_kwargs(fisher_samples=samples)
    per = strategy.per_scenario_kwargs
    if per is not None:
        scen = {
            k: {**kw, "fisher_samples": samples} if "fisher_samples" in kw else kw for k, kw in per.to_json().items()
        }
        strategy = replace(strategy, per_scenario_kwargs=FrozenMap(scen))
    return strategy


def _quick(cfg: RunConfig, q: dict[str, Any]) -> RunConfig:
    """The reduced ``quick`` protocol: fewer steps, a data subset, fewer tasks where given."""
    training = cfg.training
    for key in ("iterations", "epochs"):
        if key in q:
            training = _task_length(training, key, q[key])
    bench = replace(cfg.benchmark, max_train_per_task=q["max_train_per_task"], max_test_per_task=q["max_test_per_task"])
    if "num_tasks" in q:
        bench = replace(bench, num_tasks=q["num_tasks"])
    return cfg.replace(
        training=training, benchmark=bench, strategy=_with_fisher_samples(cfg.strategy, q["fisher_samples"])
    )


def _override(cfg: RunConfig, key: str, value: Any) -> RunConfig:
    """One keyword override of :func:`method_run_config` (see there)."""
    hnet, strategy = cfg.hypernetwork, cfg.strategy
    regularised = strategy.name in ("hnet", "iwr")
    if key in ("iterations", "epochs"):
        return cfg.replace(training=_task_length(cfg.training, key, value))
    if key == "batch_size":
        return cfg.replace(training=replace(cfg.training, batch_size=int(value)))
    if key == "lr":
        return cfg.replace(training=replace(cfg.training, lr=float(value)))
    if key in ("max_train_per_task", "max_test_per_task", "num_tasks"):
        return cfg.replace(benchmark=replace(cfg.benchmark, **{key: value}))
    if key == "beta":
        return cfg.replace(strategy=strategy.with_kwargs(beta=value)) if regularised else cfg
    if key in ("chunk_size", "hidden_size"):  # methods without a hypernetwork (baselines, scratch) ignore them
        if hnet is None:
            return cfg
        return cfg.replace(hypernetwork=hnet.resized(**{key: value}))
    if key == "strategy_kwargs":
        return cfg.replace(strategy=strategy.with_kwargs(**value))
    if key in ("resnet_depth", "resnet_widths"):
        if cfg.target.model != "resnet":
            raise ValueError(f"override {key!r} needs a ResNet target (split_cifar)")
        part = {"widths": tuple(int(w) for w in value)} if key == "resnet_widths" else {"depth": int(value)}
        return cfg.replace(target=replace(cfg.target, **part))
    if key == "val_size":  # per task, held out of the training data as a validation split
        return cfg.replace(benchmark=replace(cfg.benchmark, val_size=int(value))) if int(value) else cfg
    if key == "hnet_init":
        return cfg.replace(hypernetwork=replace(hnet, init=value)) if hnet is not None else cfg
    if key == "grow_new_task":
        return cfg.replace(strategy=strategy.with_kwargs(new_task_weights=value)) if strategy.name == "grow" else cfg
    if key == "verify":
        return cfg.replace(benchmark=replace(cfg.benchmark, verify=bool(value)))
    if key == "fisher_samples":
        return cfg.replace(strategy=strategy.with_kwargs(fisher_samples=int(value))) if strategy.name == "iwr" else cfg
    if key in ("reg_tasks_per_step", "reg_targets"):
        # eq. 2/3 options: enter the config (and the run identity) only when given, only for hnet/iwr strategies
        if not regularised:
            return cfg
        option = {"targets": value} if key == "reg_targets" else {key: int(value)}
        return cfg.replace(strategy=strategy.with_kwargs(**option))
    if key == "task_inference":  # CL2/CL3 criterion (hypercl.task_inference): in the identity only when set
        if hnet is None or value == "entropy":
            return cfg
        return cfg.replace(evaluation=EvaluationConfig(task_inference=str(value)))
    if key == "off_task":  # training-time off-task term (hypercl.off_task): in the identity only when set
        from ..off_task import OffTask, parse_off_task

        term = value if isinstance(value, OffTask) else parse_off_task(str(value))
        return cfg.replace(off_task=OffTaskConfig.from_json(term.to_json()))
    if key == "augment":
        return cfg if value else cfg.replace(augment=None)
    raise ValueError(f"unknown override {key!r}")


def method_run_config(benchmark: str, method: str, quick: bool = False, **overrides: Any) -> RunConfig:
    """The full configuration of one method on one benchmark: the published one (the tables above), reduced with
    ``quick``, then the keyword ``overrides`` in the order given (``None`` values are skipped).

    No protocol entry: its fingerprint is that of the configuration as the library's runs have always been
    identified; the CLI adds the protocol with :func:`hypercl.experiments.identity.run_config`."""
    if benchmark not in BENCHMARK_CONFIGS:
        raise ValueError(f"unknown benchmark {benchmark!r}; valid: {sorted(BENCHMARK_CONFIGS)}")
    if method not in ALL_METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {list(ALL_METHODS)}")
    cfg = _method_base(benchmark, method, quick)
    if quick:
        cfg = _quick(cfg, QUICK[benchmark])
    for key, value in overrides.items():
        if value is not None:
            cfg = _override(cfg, key, value)
    return cfg


def method_config(benchmark: str, method: str, quick: bool = False, **overrides: Any) -> dict[str, Any]:
    """:func:`method_run_config` in its plain-data form (what a results file stores)."""
    return method_run_config(benchmark, method, quick=quick, **overrides).to_json()
