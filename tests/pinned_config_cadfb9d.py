"""A pinned copy of the configuration code as of commit cadfb9d (before the typed run configuration): the config
builders, the old ``RunConfig`` (dict round trip and fingerprint) and ``scripts/fidelity.py``'s ``variant_config`` /
``identity``. The fingerprint-stability tests compare today's code against these; never edit them.

Copied verbatim (``git show cadfb9d:<path>``); the published-default tables are imported from the package.
"""
# ruff: noqa
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass, field
from typing import Any, Optional

from hypercl.experiments.configs import (ALL_METHODS, BENCHMARK_CONFIGS, GROW_NEW_TASK, HNET_INIT, HNET_METHODS, QUICK,
                                         RECURRENT_INIT)
from hypercl.replay.runner import REPLAY_BENCHMARK_CONFIGS, REPLAY_METHOD_SPECS, REPLAY_METHODS, REPLAY_QUICK

# ---------------------------------------------------------------- hypercl/experiments/identity.py
#: bump when a change to the training/evaluation protocol makes old numbers incomparable with new ones
PROTOCOL_VERSION = 2


class ConfigError(ValueError):
    """A configuration value that cannot run; the message names the value and the fix."""


def _freeze(v: Any) -> Any:
    if isinstance(v, dict):
        return tuple(sorted((str(k), _freeze(x)) for k, x in v.items()))
    if isinstance(v, (list, tuple)):
        return tuple(_freeze(x) for x in v)
    return v


def _thaw_items(items: tuple) -> dict:
    return {k: _thaw(v) for k, v in items}


def _thaw(v: Any) -> Any:
    if isinstance(v, tuple):
        if v and all(isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str) for x in v):
            return _thaw_items(v)
        return [_thaw(x) for x in v]
    return v


@dataclass(frozen=True)
class BenchmarkConfig:
    name: str
    #: benchmark options passed to :func:`hypercl.data.get_benchmark` (num_tasks, pad_to, max_train_per_task, ...)
    options: tuple = ()
    #: per task, this many training samples are held out as a validation split (``task.val``); 0 = none
    val_size: int = 0

    def to_dict(self) -> dict:
        d = {"name": self.name, **_thaw_items(self.options)}
        if self.val_size:
            d["val_size"] = self.val_size
        return d


@dataclass(frozen=True)
class TargetConfig:
    model: str  # "mlp" or "resnet"
    options: tuple = ()

    def to_dict(self) -> dict:
        d = _thaw_items(self.options)
        if self.model == "resnet":
            d["model"] = "resnet"
        return d


@dataclass(frozen=True)
class HypernetworkConfig:
    generator: str
    chunk_size: int
    hidden_size: Any
    task_emb_dim: int
    chunk_emb_dim: int
    init: str
    options: tuple = ()

    def to_dict(self) -> dict:
        d = {"generator": self.generator, "chunk_size": self.chunk_size, "hidden_size": _thaw(self.hidden_size),
             "task_emb_dim": self.task_emb_dim, "chunk_emb_dim": self.chunk_emb_dim, "init": self.init}
        d.update(_thaw_items(self.options))
        return d


@dataclass(frozen=True)
class StrategyConfig:
    name: str
    kwargs: tuple = ()
    per_scenario_kwargs: tuple = ()

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"name": self.name, "kwargs": _thaw_items(self.kwargs)}
        if self.per_scenario_kwargs:
            d["per_scenario_kwargs"] = {s: _thaw_items(kw) for s, kw in self.per_scenario_kwargs}
        return d


@dataclass(frozen=True)
class TrainingConfig:
    optimizer: str
    lr: float
    batch_size: int
    iterations: Optional[int] = None
    epochs: Optional[int] = None
    eval_batch_size: Optional[int] = None
    augment: tuple = ()

    def to_dict(self) -> dict:
        d: dict[str, Any] = {"optimizer": self.optimizer, "lr": self.lr, "batch_size": self.batch_size}
        for k in ("iterations", "epochs", "eval_batch_size"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k)
        return d


@dataclass(frozen=True)
class RunConfig:
    method: str
    benchmark: BenchmarkConfig
    target: TargetConfig
    training: TrainingConfig
    strategy: StrategyConfig
    hypernetwork: Optional[HypernetworkConfig] = None
    output_layout: Optional[str] = None
    quick: bool = False
    protocol: int = PROTOCOL_VERSION
    #: parts of a config this module does not type (e.g. a replay method's VAE); still part of the fingerprint
    extra: tuple = field(default=())

    def to_dict(self) -> dict:
        """The plain-data config the runner and the results JSON use (the shape :func:`method_config` returns)."""
        d: dict[str, Any] = {"benchmark": self.benchmark.to_dict(), "method": self.method,
                             "target": self.target.to_dict(), "train": self.training.to_dict(), "quick": self.quick}
        if self.training.augment:
            d["augment"] = _thaw_items(self.training.augment)
        if self.hypernetwork is not None:
            d["hypernetwork"] = self.hypernetwork.to_dict()
        if self.output_layout is not None:
            d["output_layout"] = self.output_layout
        d["strategy"] = self.strategy.to_dict()
        d.update(_thaw_items(self.extra))
        d["protocol"] = self.protocol
        return d

    def fingerprint(self) -> str:
        """16 hex digits of the SHA-256 of the canonical JSON of :meth:`to_dict`."""
        return _hash(self.to_dict())

    @classmethod
    def from_dict(cls, cfg: dict) -> "RunConfig":
        cfg = dict(cfg)
        b = dict(cfg.pop("benchmark"))
        val = int(b.pop("val_size", 0) or 0)
        bench = BenchmarkConfig(name=b.pop("name"), options=_freeze(b), val_size=val)
        t = dict(cfg.pop("target"))
        target = TargetConfig(model=t.pop("model", "mlp"), options=_freeze(t))
        tr = dict(cfg.pop("train"))
        augment = cfg.pop("augment", None) or {}
        training = TrainingConfig(optimizer=tr.pop("optimizer"), lr=float(tr.pop("lr")),
                                  batch_size=int(tr.pop("batch_size")), iterations=tr.pop("iterations", None),
                                  epochs=tr.pop("epochs", None), eval_batch_size=tr.pop("eval_batch_size", None),
                                  augment=_freeze(augment))
        if tr:
            raise ConfigError(f"unknown training settings {sorted(tr)}")
        s = dict(cfg.pop("strategy"))
        strategy = StrategyConfig(name=s.pop("name"), kwargs=_freeze(s.pop("kwargs", {})),
                                  per_scenario_kwargs=_freeze(s.pop("per_scenario_kwargs", {})))
        h = cfg.pop("hypernetwork", None)
        hnet = None
        if h is not None:
            h = dict(h)
            hnet = HypernetworkConfig(generator=h.pop("generator"), chunk_size=int(h.pop("chunk_size")),
                                      hidden_size=_freeze(h.pop("hidden_size")), task_emb_dim=int(h.pop("task_emb_dim")),
                                      chunk_emb_dim=int(h.pop("chunk_emb_dim")), init=h.pop("init", "target_scale"),
                                      options=_freeze(h))
        method = cfg.pop("method")
        layout = cfg.pop("output_layout", None)
        quick = bool(cfg.pop("quick", False))
        protocol = int(cfg.pop("protocol", PROTOCOL_VERSION))
        return cls(method=method, benchmark=bench, target=target, training=training, strategy=strategy,
                   hypernetwork=hnet, output_layout=layout, quick=quick, protocol=protocol, extra=_freeze(cfg))

    def validate(self) -> "RunConfig":
        """Values that cannot run raise :class:`ConfigError` naming the option (before any data is loaded)."""
        tr = self.training
        if tr.iterations is not None and tr.iterations < 1:
            raise ConfigError(f"--iterations must be at least 1, got {tr.iterations}")
        if tr.epochs is not None and tr.epochs < 1:
            raise ConfigError(f"--epochs must be at least 1, got {tr.epochs}")
        if tr.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {tr.batch_size}")
        if not tr.lr > 0:
            raise ConfigError(f"--lr must be a positive number, got {tr.lr}")
        beta = dict(self.strategy.kwargs).get("beta")
        if beta is not None and not beta >= 0:
            raise ConfigError(f"--beta must be zero or positive, got {beta}")
        opts = dict(self.benchmark.options)
        for key in ("max_train_per_task", "max_test_per_task", "num_tasks"):
            v = opts.get(key)
            if v is not None and v < 1:
                raise ConfigError(f"--{key.replace('_', '-')} must be at least 1, got {v}")
        if self.benchmark.val_size < 0:
            raise ConfigError(f"--val-size must be zero or positive, got {self.benchmark.val_size}")
        mt = opts.get("max_train_per_task")
        if mt is not None and self.benchmark.val_size >= mt:
            raise ConfigError(f"--val-size {self.benchmark.val_size} leaves no training data of the "
                              f"{mt} per task (--max-train-per-task); choose a smaller --val-size")
        fs = dict(self.strategy.kwargs).get("fisher_samples")
        if fs is not None and fs < 1:
            raise ConfigError(f"--fisher-samples must be at least 1, got {fs}")
        k = dict(self.strategy.kwargs).get("reg_tasks_per_step")
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise ConfigError(f"--reg-tasks-per-step must be an integer of at least 1 (old tasks regularised per "
                              f"step; leave it out for all), got {k}")
        mode = dict(self.strategy.kwargs).get("targets")
        if mode is not None and mode not in ("stored", "online"):
            raise ConfigError(f"--reg-targets must be 'stored' or 'online', got {mode!r}")
        if self.hypernetwork is not None and self.hypernetwork.chunk_size < 1:
            raise ConfigError(f"--chunk-size must be at least 1, got {self.hypernetwork.chunk_size}")
        return self


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def _hash(obj: Any) -> str:
    return hashlib.sha256(_canonical(obj).encode("utf-8")).hexdigest()[:16]


def run_config(make_cfg: Any, benchmark: str, method: str, quick: bool = False, **overrides: Any) -> RunConfig:
    """A validated :class:`RunConfig` from a config builder (``method_config`` / ``replay_method_config``)."""
    return RunConfig.from_dict(make_cfg(benchmark, method, quick=quick, **overrides)).validate()


def run_identity(cfg: dict, tag: str, seed: int) -> dict:
    """The identity of one trained learner: the config fingerprint, the scenario(s) it was trained/evaluated for
    (``tag``: "all" = the hypernetwork's evaluation scenarios, else the baseline's scenario) and the seed."""
    fp = RunConfig.from_dict(cfg).fingerprint() if "protocol" in cfg else _hash(cfg)
    return {"fingerprint": fp, "scenario": tag, "seed": int(seed), "config": cfg,
            "id": _hash({"fingerprint": fp, "scenario": tag, "seed": int(seed)})}


def _flat(d: Any, prefix: str = "") -> dict:
    if isinstance(d, dict):
        out: dict = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}." if prefix or True else k))
        return out
    return {prefix[:-1]: d}


def identity_diff(old: dict, new: dict) -> list[str]:
    """``["train.iterations: 100 -> 2000", ...]``: the fields where two identities (or configs) differ."""
    a = _flat({"config": old.get("config", {}), "scenario": old.get("scenario"), "seed": old.get("seed")})
    b = _flat({"config": new.get("config", {}), "scenario": new.get("scenario"), "seed": new.get("seed")})
    out = []
    for k in sorted(set(a) | set(b)):
        if _canonical(a.get(k)) != _canonical(b.get(k)):
            out.append(f"{k.removeprefix('config.')}: {a.get(k, '(absent)')!r} -> {b.get(k, '(absent)')!r}")
    return out


def asdict(cfg: RunConfig) -> dict:  # pragma: no cover - convenience
    return dataclasses.asdict(cfg)

# ---------------------------------------------------------------- hypercl/experiments/configs.py
def _baseline_kwargs(benchmark: str, method: str) -> dict[str, dict[str, Any]]:
    """van de Ven & Tolias 2019's per-scenario hyper-parameters of a baseline (see hypercl.baselines)."""
    if method == "finetune":
        return {}
    from hypercl.baselines import PAPER_HYPERPARAMETERS

    per = copy.deepcopy(PAPER_HYPERPARAMETERS.get(benchmark, {}).get(method, {}))
    samples = BENCHMARK_CONFIGS[benchmark]["fisher_samples"]
    if method in ("ewc", "online_ewc") and samples is not None:
        for kw in per.values():  # the same Fisher subset as IWR on this benchmark (CPU time)
            if kw.get("fisher_samples") is None:
                kw["fisher_samples"] = samples
    return per


def method_config(benchmark: str, method: str, quick: bool = False, **overrides: Any) -> dict[str, Any]:
    """The full configuration of one method on one benchmark (plain data; stored in the results JSON)."""
    if benchmark not in BENCHMARK_CONFIGS:
        raise ValueError(f"unknown benchmark {benchmark!r}; valid: {sorted(BENCHMARK_CONFIGS)}")
    if method not in ALL_METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {list(ALL_METHODS)}")
    base = copy.deepcopy(BENCHMARK_CONFIGS[benchmark])
    cfg: dict[str, Any] = {
        "benchmark": base["benchmark"],
        "method": method,
        "target": base["target"],
        "train": base["train"],
        "quick": quick,
    }
    if "augment" in base:
        cfg["augment"] = base["augment"]
    if method in HNET_METHODS:
        generator, strategy = HNET_METHODS[method]
        gen_cfg = base["chunked_mlp"] if generator == "chunked_mlp" else base["recurrent"]
        cfg["hypernetwork"] = {"generator": generator, **gen_cfg, "init": HNET_INIT.get(method, RECURRENT_INIT)}
        cfg["output_layout"] = base["hnet_output_layout"]
        cfg["strategy"] = {"name": strategy, "kwargs": {}}
        if strategy in ("hnet", "iwr"):
            cfg["strategy"]["kwargs"] = dict(base["regularizer"])
        if strategy == "iwr":
            cfg["strategy"]["kwargs"]["fisher_samples"] = base["fisher_samples"]
        if strategy == "grow":
            cfg["strategy"]["kwargs"]["new_task_weights"] = GROW_NEW_TASK
    elif method == "scratch":  # one independent network per task: nothing to protect, each task its own weights
        cfg["output_layout"] = "shared"
        cfg["strategy"] = {"name": "none", "kwargs": {}}
    else:
        cfg["strategy"] = {"name": method, "kwargs": {}, "per_scenario_kwargs": _baseline_kwargs(benchmark, method)}
    if quick:
        q = QUICK[benchmark]
        if "iterations" in q:
            cfg["train"]["iterations"] = q["iterations"]
            cfg["train"].pop("epochs", None)
        if "epochs" in q:
            cfg["train"]["epochs"] = q["epochs"]
            cfg["train"].pop("iterations", None)
        cfg["benchmark"]["max_train_per_task"] = q["max_train_per_task"]
        cfg["benchmark"]["max_test_per_task"] = q["max_test_per_task"]
        if "num_tasks" in q:
            cfg["benchmark"]["num_tasks"] = q["num_tasks"]
        if cfg["strategy"]["name"] == "iwr":
            cfg["strategy"]["kwargs"]["fisher_samples"] = q["fisher_samples"]
        for kw in cfg["strategy"].get("per_scenario_kwargs", {}).values():
            if "fisher_samples" in kw:
                kw["fisher_samples"] = q["fisher_samples"]
    for key, value in overrides.items():
        if value is None:
            continue
        if key in ("iterations", "epochs"):  # one of the two: the last one given wins
            cfg["train"][key] = value
            cfg["train"].pop("epochs" if key == "iterations" else "iterations", None)
        elif key in ("batch_size", "lr"):
            cfg["train"][key] = value
        elif key in ("max_train_per_task", "max_test_per_task", "num_tasks"):
            cfg["benchmark"][key] = value
        elif key == "beta":
            if cfg["strategy"]["name"] in ("hnet", "iwr"):
                cfg["strategy"]["kwargs"]["beta"] = value
        elif key in ("chunk_size", "hidden_size"):
            if "hypernetwork" in cfg:  # methods without a hypernetwork (baselines, scratch) ignore them
                cfg["hypernetwork"][key] = value
        elif key == "strategy_kwargs":
            cfg["strategy"]["kwargs"].update(value)
        elif key in ("resnet_depth", "resnet_widths"):
            if cfg["target"].get("model") != "resnet":
                raise ValueError(f"override {key!r} needs a ResNet target (split_cifar)")
            cfg["target"][key.split("_", 1)[1]] = [int(w) for w in value] if key == "resnet_widths" else int(value)
        elif key == "val_size":  # per task, held out of the training data as a validation split
            if int(value):
                cfg["benchmark"]["val_size"] = int(value)
        elif key == "hnet_init":
            if "hypernetwork" in cfg:
                cfg["hypernetwork"]["init"] = value
        elif key == "grow_new_task":
            if cfg["strategy"]["name"] == "grow":
                cfg["strategy"]["kwargs"]["new_task_weights"] = value
        elif key == "verify":
            cfg["benchmark"]["verify"] = bool(value)
        elif key == "fisher_samples":
            if cfg["strategy"]["name"] == "iwr":
                cfg["strategy"]["kwargs"]["fisher_samples"] = int(value)
        elif key in ("reg_tasks_per_step", "reg_targets"):
            # eq. 2/3 options: enter the config (and the run identity) only when given, only for hnet/iwr strategies
            if cfg["strategy"]["name"] in ("hnet", "iwr"):
                name = "targets" if key == "reg_targets" else key
                cfg["strategy"]["kwargs"][name] = value if key == "reg_targets" else int(value)
        elif key == "task_inference":  # CL2/CL3 criterion (hypercl.task_inference): in the identity only when set
            if "hypernetwork" in cfg and value != "entropy":
                cfg.setdefault("evaluation", {})["task_inference"] = str(value)
        elif key == "augment":
            if not value:
                cfg.pop("augment", None)
        else:
            raise ValueError(f"unknown override {key!r}")
    return cfg

# ---------------------------------------------------------------- hypercl/replay/runner.py
_TRAIN_KEYS = ("iterations", "batch_size", "lr")
_BENCH_KEYS = ("max_train_per_task", "max_test_per_task", "num_tasks")
_DISTILL_KEYS = ("temperature", "replay_weight", "replay_batch_size")


def replay_method_config(benchmark: str, method: str, quick: bool = False, **overrides: Any) -> dict[str, Any]:
    """The full configuration (plain data) of a replay-setting method on a benchmark.

    ``overrides`` (``None`` values are ignored): ``iterations``, ``batch_size``, ``lr`` (classifier AND replay
    model), ``replay_iterations`` (replay model only), ``max_train_per_task``, ``max_test_per_task``, ``num_tasks``,
    ``beta``, ``chunk_size``, ``hidden_size``, ``strategy_kwargs`` (the replay hypernetwork; ignored by lwf/dgr),
    ``temperature``, ``replay_weight``, ``replay_batch_size``.
    """
    if benchmark not in REPLAY_BENCHMARK_CONFIGS:
        raise ValueError(f"unknown benchmark {benchmark!r}; valid: {sorted(REPLAY_BENCHMARK_CONFIGS)}")
    if method not in REPLAY_METHOD_SPECS:
        raise ValueError(f"unknown replay method {method!r}; valid: {REPLAY_METHODS}")
    base = copy.deepcopy(REPLAY_BENCHMARK_CONFIGS[benchmark])
    spec = REPLAY_METHOD_SPECS[method]
    cfg: dict[str, Any] = {
        "benchmark": base["benchmark"],
        "method": method,
        "setting": "replay",
        "quick": bool(quick),
        "classifier": base["classifier"],
        "train": base["train"],
        "replay": None,
        "distill": {"targets": spec["targets"], "temperature": base["distill"]["temperature"],
                    "mixing": spec["mixing"], "replay_weight": base["distill"]["replay_weight"],
                    "replay_batch_size": base["distill"]["replay_batch_size"], "source": spec["source"]},
        "sample_grid": {"per_task": 10, "seed": 0},
    }
    if spec["replay"] is not None:
        replay: dict[str, Any] = {"kind": spec["replay"], "vae": base["vae"], "train": base["replay_train"],
                                  "train_last_task": False}
        if spec["replay"] == "hnet":
            generator, strategy = spec["generator"], spec["strategy"]
            gen_cfg = base["chunked_mlp"] if generator == "chunked_mlp" else base["recurrent"]
            replay["hypernetwork"] = {"generator": generator, **gen_cfg}
            replay["strategy"] = {"name": strategy, "kwargs": {}}
            if strategy in ("hnet", "iwr"):
                replay["strategy"]["kwargs"] = dict(base["regularizer"])
            if strategy == "iwr":
                replay["strategy"]["kwargs"]["fisher_samples"] = base["fisher_samples"]
        cfg["replay"] = replay
    if quick:
        q = REPLAY_QUICK[benchmark]
        cfg["train"]["iterations"] = q["iterations"]
        for key in _BENCH_KEYS:
            if key in q:
                cfg["benchmark"][key] = q[key]
        if cfg["replay"] is not None:
            cfg["replay"]["train"]["iterations"] = q["replay_iterations"]
            strat = cfg["replay"].get("strategy")
            if strat is not None and strat["name"] == "iwr":
                strat["kwargs"]["fisher_samples"] = q["fisher_samples"]
    replay = cfg["replay"]
    hnet_replay = replay is not None and replay["kind"] == "hnet"
    for key, value in overrides.items():
        if value is None:
            continue
        if key in _TRAIN_KEYS:
            cfg["train"][key] = value
            if replay is not None:
                replay["train"][key] = value
        elif key == "replay_iterations":
            if replay is not None:
                replay["train"]["iterations"] = value
        elif key in _BENCH_KEYS:
            cfg["benchmark"][key] = value
        elif key in _DISTILL_KEYS:
            cfg["distill"][key] = value
        elif key == "beta":
            if hnet_replay and replay["strategy"]["name"] in ("hnet", "iwr"):
                replay["strategy"]["kwargs"]["beta"] = value
        elif key in ("chunk_size", "hidden_size"):
            if hnet_replay:
                replay["hypernetwork"][key] = value
        elif key == "strategy_kwargs":
            if hnet_replay:
                replay["strategy"]["kwargs"].update(value)
        else:
            raise ValueError(f"unknown override {key!r}")
    return cfg


# ---------------------------------------------------------------- scripts/fidelity.py (QUICK made an argument)
PROTOCOL = "fidelity-1"
VAL_SIZE = 1000
#: the init of the recurrent hypernetworks' rows (no public code to follow): see docs/results.md, "init choice"
FIDELITY_RECURRENT_INIT = "target_scale"

#: variant -> (method, hypernetwork init, GROW new-task weights or None, validation split size)
VARIANTS: dict[str, tuple[str, str, Optional[str], int]] = {
    "hnet": ("hnet", "von_oswald", None, 0),
    "hnet_iwr": ("hnet_iwr", "von_oswald", None, 0),
    "lstm_net": ("lstm_net", FIDELITY_RECURRENT_INIT, None, 0),
    "lstm_net_iwr": ("lstm_net_iwr", FIDELITY_RECURRENT_INIT, None, 0),
    "lstm_net_grow": ("lstm_net_grow", FIDELITY_RECURRENT_INIT, "copy", 0),
    "lstm_net_grow_fresh": ("lstm_net_grow", FIDELITY_RECURRENT_INIT, "fresh", 0),
    "hnet+cal": ("hnet", "von_oswald", None, VAL_SIZE),
    "lstm_net+cal": ("lstm_net", "target_scale", None, VAL_SIZE),
    "lstm_net_vo+cal": ("lstm_net", "von_oswald", None, VAL_SIZE),
    "lstm_net_grow+cal": ("lstm_net_grow", FIDELITY_RECURRENT_INIT, "copy", VAL_SIZE),
    "lstm_net_grow_fresh+cal": ("lstm_net_grow", FIDELITY_RECURRENT_INIT, "fresh", VAL_SIZE),
}

def variant_config(variant: str, QUICK: bool = False) -> dict:
    method, init, new_task, val_size = VARIANTS[variant]
    cfg = method_config("split_mnist", method, quick=QUICK)
    cfg["hypernetwork"]["init"] = init
    if new_task is not None:
        cfg["strategy"]["kwargs"]["new_task_weights"] = new_task
    if val_size:
        cfg["validation"] = {"size_per_task": val_size // 10 if QUICK else val_size, "split_seed": 2026,
                             "calibration": "temperature"}
    return cfg


def identity(cfg: dict) -> str:
    """The run identity (without the seed): a fingerprint of everything that decides the numbers."""
    blob = json.dumps({"protocol": PROTOCOL, "config": cfg}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


