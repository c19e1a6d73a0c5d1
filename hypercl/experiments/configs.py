"""The published configurations of the paper's MNIST experiments (Table 1), as plain data.

HNET baseline: the defaults of von Oswald et al. 2020's reference code, as given in the issue tracker (Split MNIST:
Adam 1e-3, 2000 iterations, batch 128, hnet (10, 10) ReLU, chunk 42000, embeddings 96/96, β 0.01, lookahead;
Permuted MNIST-10: inputs padded to 32×32, Adam 1e-4, 5000 iterations, hnet (25, 25) ELU, chunk 78000, embeddings
24/8, β 0.1). LSTM hypernetworks (seed paper 4.1): one layer, embeddings 96/96, hidden 64, batch 128, with a chunk
size that keeps them no larger than the HNET baseline (Split MNIST: 6000; Permuted MNIST: 30000). The LSTM runs use
the HNET baseline's optimiser, iterations and β (the paper does not give its own).
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["HNET_METHODS", "BASELINE_METHODS", "METHODS", "BENCHMARK_CONFIGS", "method_config", "QUICK"]

#: method name -> (generator, strategy)
HNET_METHODS: dict[str, tuple[str, str]] = {
    "hnet": ("chunked_mlp", "hnet"),
    "hnet_iwr": ("chunked_mlp", "iwr"),
    "lstm_net": ("lstm", "hnet"),
    "lstm_net_iwr": ("lstm", "iwr"),
    "lstm_net_grow": ("lstm", "grow"),
    "gru_net": ("gru", "hnet"),
}
BASELINE_METHODS = ("finetune", "ewc", "online_ewc", "si")
METHODS = tuple(HNET_METHODS) + BASELINE_METHODS

BENCHMARK_CONFIGS: dict[str, dict[str, Any]] = {
    "split_mnist": {
        "benchmark": {"name": "split_mnist"},
        "target": {"hidden": [400, 400], "activation": "relu"},
        # hypernetwork targets keep von Oswald's multi-head layout (10 outputs, each task its own 2): 478,410 weights
        "hnet_output_layout": "per_task",
        "train": {"iterations": 2000, "batch_size": 128, "lr": 1e-3, "optimizer": "adam"},
        "chunked_mlp": {"hidden_size": [10, 10], "activation": "relu", "chunk_size": 42000, "task_emb_dim": 96,
                        "chunk_emb_dim": 96},
        "recurrent": {"hidden_size": 64, "chunk_size": 6000, "task_emb_dim": 96, "chunk_emb_dim": 96},
        "regularizer": {"beta": 0.01, "lookahead": True},
        "fisher_samples": None,
    },
    "permuted_mnist": {
        "benchmark": {"name": "permuted_mnist", "num_tasks": 10, "pad_to": 32, "first_identity": True},
        "target": {"hidden": [1000, 1000], "activation": "relu"},
        "hnet_output_layout": "shared",
        "train": {"iterations": 5000, "batch_size": 128, "lr": 1e-4, "optimizer": "adam"},
        "chunked_mlp": {"hidden_size": [25, 25], "activation": "elu", "chunk_size": 78000, "task_emb_dim": 24,
                        "chunk_emb_dim": 8},
        "recurrent": {"hidden_size": 64, "chunk_size": 30000, "task_emb_dim": 96, "chunk_emb_dim": 96},
        "regularizer": {"beta": 0.1, "lookahead": False},
        # eq. 4 on a random subset: 5000 of the 60000 samples per task keeps the Fisher pass short on a CPU
        "fisher_samples": 5000,
    },
}

#: --quick: a reduced run (subset of the data, fewer steps) that finishes in about a minute on 2 CPU cores
QUICK: dict[str, dict[str, Any]] = {
    "split_mnist": {"iterations": 100, "max_train_per_task": 2000, "max_test_per_task": 500, "fisher_samples": 500},
    "permuted_mnist": {"iterations": 100, "max_train_per_task": 2000, "max_test_per_task": 500, "num_tasks": 3,
                       "fisher_samples": 500},
}


def method_config(benchmark: str, method: str, quick: bool = False, **overrides: Any) -> dict[str, Any]:
    """The full configuration of one method on one benchmark (plain data; stored in the results JSON)."""
    if benchmark not in BENCHMARK_CONFIGS:
        raise ValueError(f"unknown benchmark {benchmark!r}; valid: {sorted(BENCHMARK_CONFIGS)}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {list(METHODS)}")
    base = copy.deepcopy(BENCHMARK_CONFIGS[benchmark])
    cfg: dict[str, Any] = {
        "benchmark": base["benchmark"],
        "method": method,
        "target": base["target"],
        "train": base["train"],
        "quick": quick,
    }
    if method in HNET_METHODS:
        generator, strategy = HNET_METHODS[method]
        gen_cfg = base["chunked_mlp"] if generator == "chunked_mlp" else base["recurrent"]
        cfg["hypernetwork"] = {"generator": generator, **gen_cfg}
        cfg["output_layout"] = base["hnet_output_layout"]
        cfg["strategy"] = {"name": strategy, "kwargs": {}}
        if strategy in ("hnet", "iwr"):
            cfg["strategy"]["kwargs"] = dict(base["regularizer"])
        if strategy == "iwr":
            cfg["strategy"]["kwargs"]["fisher_samples"] = base["fisher_samples"]
    else:
        cfg["strategy"] = {"name": method, "kwargs": {}}
    if quick:
        q = QUICK[benchmark]
        cfg["train"]["iterations"] = q["iterations"]
        cfg["benchmark"]["max_train_per_task"] = q["max_train_per_task"]
        cfg["benchmark"]["max_test_per_task"] = q["max_test_per_task"]
        if "num_tasks" in q:
            cfg["benchmark"]["num_tasks"] = q["num_tasks"]
        if cfg["strategy"]["name"] == "iwr":
            cfg["strategy"]["kwargs"]["fisher_samples"] = q["fisher_samples"]
    for key, value in overrides.items():
        if value is None:
            continue
        if key in ("iterations", "batch_size", "lr"):
            cfg["train"][key] = value
        elif key in ("max_train_per_task", "max_test_per_task", "num_tasks"):
            cfg["benchmark"][key] = value
        elif key == "beta":
            if cfg["strategy"]["name"] in ("hnet", "iwr"):
                cfg["strategy"]["kwargs"]["beta"] = value
        elif key in ("chunk_size", "hidden_size") and "hypernetwork" in cfg:
            cfg["hypernetwork"][key] = value
        elif key == "strategy_kwargs":
            cfg["strategy"]["kwargs"].update(value)
        else:
            raise ValueError(f"unknown override {key!r}")
    return cfg
