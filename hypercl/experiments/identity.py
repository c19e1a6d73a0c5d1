"""The run configuration as one frozen, typed object, and its fingerprint: the run identity.

:func:`run_config` builds a :class:`RunConfig` (a frozen dataclass per part: benchmark, target, hypernetwork, strategy,
training) from the published defaults in :mod:`hypercl.experiments.configs` plus the user's overrides, and validates
it once. Its :meth:`RunConfig.fingerprint` hashes everything that decides the numbers of a run (benchmark and its
options, method, every hyper-parameter, quick, the protocol version); :func:`run_identity` adds the scenario where it
matters and the seed. The identity goes into every checkpoint and results file; ``--resume`` continues only a
checkpoint of the same identity, and file names carry the fingerprint so that different runs never collide.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Optional

__all__ = ["PROTOCOL_VERSION", "BenchmarkConfig", "TargetConfig", "HypernetworkConfig", "StrategyConfig",
           "TrainingConfig", "RunConfig", "run_config", "run_identity", "identity_diff", "ConfigError",
           "config_hash"]

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
        return config_hash(self.to_dict())

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


def config_hash(obj: Any) -> str:
    """16 hex digits of the SHA-256 of the canonical JSON of ``obj`` (sorted keys, no spaces)."""
    return hashlib.sha256(_canonical(obj).encode("utf-8")).hexdigest()[:16]


def run_config(make_cfg: Any, benchmark: str, method: str, quick: bool = False, **overrides: Any) -> RunConfig:
    """A validated :class:`RunConfig` from a config builder (``method_config`` / ``replay_method_config``)."""
    return RunConfig.from_dict(make_cfg(benchmark, method, quick=quick, **overrides)).validate()


def run_identity(cfg: dict, tag: str, seed: int) -> dict:
    """The identity of one trained learner: the config fingerprint, the scenario(s) it was trained/evaluated for
    (``tag``: "all" = the hypernetwork's evaluation scenarios, else the baseline's scenario) and the seed."""
    fp = RunConfig.from_dict(cfg).fingerprint() if "protocol" in cfg else config_hash(cfg)
    return {"fingerprint": fp, "scenario": tag, "seed": int(seed), "config": cfg,
            "id": config_hash({"fingerprint": fp, "scenario": tag, "seed": int(seed)})}


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
