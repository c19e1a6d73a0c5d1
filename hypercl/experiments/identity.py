"""The run identity: a config's fingerprint plus the scenario(s) and the seed of one trained learner.

The typed configuration itself (:class:`~hypercl.config.RunConfig`, one frozen dataclass per concern, and its
fingerprint) lives in :mod:`hypercl.config`; this module re-exports it. The identity goes into every checkpoint and
results file; ``--resume`` continues only a checkpoint of the same identity, and file names carry the fingerprint so
that different runs never collide.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Union

from ..config import (
    PROTOCOL_VERSION,
    AnyRunConfig,
    AugmentConfig,
    BenchmarkConfig,
    ConfigError,
    HypernetworkConfig,
    ReplayRunConfig,
    RunConfig,
    StrategyConfig,
    TargetConfig,
    TrainingConfig,
    ValidationConfig,
    as_config,
    canonical_json,
    config_hash,
    versioned,
)

__all__ = [
    "PROTOCOL_VERSION",
    "BenchmarkConfig",
    "TargetConfig",
    "HypernetworkConfig",
    "StrategyConfig",
    "TrainingConfig",
    "AugmentConfig",
    "ValidationConfig",
    "RunConfig",
    "ReplayRunConfig",
    "run_config",
    "run_identity",
    "identity_diff",
    "ConfigError",
    "config_hash",
]


def run_config(
    make_cfg: Callable[..., Union[AnyRunConfig, Mapping[str, Any]]],
    benchmark: str,
    method: str,
    quick: bool = False,
    **overrides: Any,
) -> AnyRunConfig:
    """The validated config of the current protocol from a config builder (``method_run_config`` for a
    :class:`RunConfig`, ``replay_run_config`` for a :class:`ReplayRunConfig`, or their plain-data forms
    ``method_config`` / ``replay_method_config``); the builder's ``ValueError`` (an unknown method or override) and
    :class:`ConfigError` (a value that cannot run) pass through."""
    made = make_cfg(benchmark, method, quick=quick, **overrides)
    if isinstance(made, Mapping):  # the plain-data form: read as a results file's config is read
        cfg = as_config({**made, "protocol": PROTOCOL_VERSION})
    else:
        cfg = versioned(made)
    return cfg.validate() if isinstance(cfg, RunConfig) else cfg


def run_identity(cfg: Union[AnyRunConfig, Mapping[str, Any]], tag: str, seed: int) -> dict:
    """The identity of one trained learner: the config fingerprint, the scenario(s) it was trained/evaluated for
    (``tag``: "all" = the hypernetwork's evaluation scenarios, else the baseline's scenario) and the seed."""
    cfg = as_config(cfg)
    fp = cfg.fingerprint()
    return {
        "fingerprint": fp,
        "scenario": tag,
        "seed": int(seed),
        "config": cfg.to_json(),
        "id": config_hash({"fingerprint": fp, "scenario": tag, "seed": int(seed)}),
    }


def _flat(d: Any, prefix: str = "") -> dict:
    if isinstance(d, dict):
        out: dict = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def identity_diff(old: dict, new: dict) -> list[str]:
    """``["train.iterations: 100 -> 2000", ...]``: the fields where two identities (or configs) differ."""
    a = _flat({"config": old.get("config", {}), "scenario": old.get("scenario"), "seed": old.get("seed")})
    b = _flat({"config": new.get("config", {}), "scenario": new.get("scenario"), "seed": new.get("seed")})
    out = []
    for k in sorted(set(a) | set(b)):
        if canonical_json(a.get(k)) != canonical_json(b.get(k)):
            out.append(f"{k.removeprefix('config.')}: {a.get(k, '(absent)')!r} -> {b.get(k, '(absent)')!r}")
    return out
