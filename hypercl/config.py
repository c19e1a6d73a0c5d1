"""The run configuration: one frozen, typed dataclass per concern, plain JSON only at the boundary.

A classifier run (:class:`RunConfig`) is a benchmark, a target network, a hypernetwork (absent for the baselines), a
strategy, the training settings, the CIFAR augmentation (absent on MNIST) and an optional validation split with
calibration; a replay-setting run (:class:`ReplayRunConfig`) has a classifier, a replay model and the distillation
settings instead. The runners take these objects and read their fields; :meth:`to_json` / :meth:`from_json` convert
to and from the plain-data form stored in results files and checkpoints (``from_json(cfg.to_json()) == cfg``).

The fingerprint (:meth:`RunConfig.fingerprint`) is 16 hex digits of the SHA-256 of the canonical JSON (sorted keys,
no spaces) of :meth:`to_json`: the run identity. ``None`` fields are left out of the JSON, so a field added with a
``None`` default does not change the identity of the configs that do not set it. ``protocol`` is the version of the
training/evaluation protocol; a config read from JSON without one (a config built by hand, as
``scripts/fidelity.py`` does) keeps it absent, and its fingerprint is that of the JSON as given.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Iterator, Mapping, Optional, Sequence, TypeVar, Union, cast

__all__ = [
    "PROTOCOL_VERSION",
    "ConfigError",
    "FrozenMap",
    "BenchmarkConfig",
    "TargetConfig",
    "HypernetworkConfig",
    "StrategyConfig",
    "TrainingConfig",
    "AugmentConfig",
    "ValidationConfig",
    "EvaluationConfig",
    "RunConfig",
    "ClassifierConfig",
    "VAEConfig",
    "ReplayModelConfig",
    "DistillConfig",
    "SampleGridConfig",
    "ReplayRunConfig",
    "AnyRunConfig",
    "config_hash",
    "canonical_json",
    "config_from_json",
    "as_config",
    "versioned",
]

#: bump when a change to the training/evaluation protocol makes old numbers incomparable with new ones
PROTOCOL_VERSION = 2

#: the largest ``--lr`` / ``--beta`` accepted, far above every published setting (the seed paper's grids stay at
#: lr <= 0.01 and beta <= 1); values beyond them (``1e308``) overflow float32 in the first steps, so they are refused
#: as typos before any data is loaded
LR_MAX = 10.0
BETA_MAX = 1e6


class ConfigError(ValueError):
    """A configuration value that cannot run, or a stored config this version cannot read; the message names the
    value and the fix."""


def canonical_json(obj: Any) -> str:
    """``obj`` as JSON with sorted keys and no spaces (what fingerprints hash)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(obj: Any) -> str:
    """16 hex digits of the SHA-256 of the canonical JSON of ``obj`` (sorted keys, no spaces)."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()[:16]


class FrozenMap(Mapping[str, Any]):
    """An immutable, hashable ``{name: value}`` (values plain JSON data, nested dicts frozen too): the keyword
    arguments of a strategy constructor, which differ per strategy and are passed through as given."""

    __slots__ = ("_items",)

    def __init__(self, items: Union[Mapping[str, Any], Sequence[tuple[str, Any]], None] = None) -> None:
        pairs = list(items.items()) if isinstance(items, Mapping) else list(items or ())
        self._items: tuple[tuple[str, Any], ...] = tuple((str(k), _freeze(v)) for k, v in pairs)

    def __getitem__(self, key: str) -> Any:
        for k, v in self._items:
            if k == key:
                return v
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return (k for k, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._items, key=lambda kv: kv[0])))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return dict(self.items()) == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrozenMap({dict(self._items)!r})"

    def to_json(self) -> dict[str, Any]:
        """A plain ``dict`` (nested maps too), in insertion order."""
        return {k: _thaw(v) for k, v in self._items}


def _freeze(v: Any) -> Any:
    if isinstance(v, FrozenMap):
        return v
    if isinstance(v, Mapping):
        return FrozenMap(v)
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    return v


def _thaw(v: Any) -> Any:
    if isinstance(v, FrozenMap):
        return v.to_json()
    if isinstance(v, tuple):
        return [_thaw(x) for x in v]
    return v


def _ints(v: Any) -> Union[int, tuple[int, ...]]:
    return tuple(int(x) for x in v) if isinstance(v, (list, tuple)) else int(v)


def _take(d: dict[str, Any], where: str, known: Sequence[str]) -> dict[str, Any]:
    """``d`` after checking it holds only ``known`` keys (a stored config of another version is refused clearly)."""
    if not isinstance(d, Mapping):
        raise ConfigError(f"config entry {where!r} must be an object, got {type(d).__name__}")
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise ConfigError(
            f"config entry {where!r} has unknown settings {unknown} (known: {list(known)}); it was "
            "written by another version of hypercl: run it again with this version"
        )
    return dict(d)


def _json(obj: Any, names: Sequence[str]) -> dict[str, Any]:
    """``{name: value}`` of the fields in ``names`` whose value is not None (tuples as lists)."""
    return {n: _thaw(getattr(obj, n)) for n in names if getattr(obj, n) is not None}


_F = TypeVar("_F", bound="_FlatJson")


class _FlatJson:
    """A config part whose JSON is its non-None fields, in ``_FIELDS`` order, under the entry ``_KEY``."""

    _KEY: ClassVar[str]
    _FIELDS: ClassVar[tuple[str, ...]]

    def to_json(self) -> dict[str, Any]:
        return _json(self, self._FIELDS)

    @classmethod
    def from_json(cls: type[_F], d: Mapping[str, Any]) -> _F:
        return cast(Any, cls)(**_take(dict(d), cls._KEY, cls._FIELDS))


@dataclass(frozen=True)
class BenchmarkConfig:
    """Which benchmark and how much of it (the keyword arguments of :func:`hypercl.data.get_benchmark`)."""

    name: str
    num_tasks: Optional[int] = None
    pad_to: Optional[int] = None
    first_identity: Optional[bool] = None
    max_train_per_task: Optional[int] = None
    max_test_per_task: Optional[int] = None
    verify: Optional[bool] = None
    #: per task, this many training samples are held out as a validation split (``task.val``); 0 = none
    val_size: int = 0

    _OPTIONS = ("num_tasks", "pad_to", "first_identity", "max_train_per_task", "max_test_per_task", "verify")

    def options(self) -> dict[str, Any]:
        """The benchmark's constructor arguments that are set (``val_size`` included when not 0)."""
        out = _json(self, self._OPTIONS)
        if self.val_size:
            out["val_size"] = self.val_size
        return out

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, **self.options()}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> BenchmarkConfig:
        d = _take(dict(d), "benchmark", ("name", *cls._OPTIONS, "val_size"))
        return cls(name=d.pop("name"), val_size=int(d.pop("val_size", 0) or 0), **d)


@dataclass(frozen=True)
class TargetConfig:
    """The target network: an MLP (``hidden`` widths, ``activation``) or a CIFAR ResNet (``depth``, stage
    ``widths``)."""

    model: str = "mlp"
    hidden: Optional[tuple[int, ...]] = None
    activation: Optional[str] = None
    depth: Optional[int] = None
    widths: Optional[tuple[int, ...]] = None

    @property
    def is_resnet(self) -> bool:
        return self.model == "resnet"

    def to_json(self) -> dict[str, Any]:
        out = _json(self, ("hidden", "activation", "depth", "widths"))
        if self.model != "mlp":
            out["model"] = self.model
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> TargetConfig:
        d = _take(dict(d), "target", ("model", "hidden", "activation", "depth", "widths"))
        return cls(
            model=d.get("model", "mlp"),
            hidden=_freeze(d.get("hidden")),
            activation=d.get("activation"),
            depth=d.get("depth"),
            widths=_freeze(d.get("widths")),
        )


@dataclass(frozen=True)
class HypernetworkConfig:
    """The hypernetwork: generator kind and sizes, chunk size, embedding sizes, init scheme (``None``: the
    generator's own, as a replay model's hypernetwork)."""

    generator: str
    chunk_size: int
    hidden_size: Union[int, tuple[int, ...]]
    task_emb_dim: int
    chunk_emb_dim: int
    init: Optional[str] = None
    activation: Optional[str] = None

    _ORDER = ("generator", "hidden_size", "activation", "chunk_size", "task_emb_dim", "chunk_emb_dim", "init")

    def resized(
        self, chunk_size: Optional[int] = None, hidden_size: Union[int, Sequence[int], None] = None
    ) -> HypernetworkConfig:
        """A copy with the chunk size and/or the hidden size(s) changed (``None``: kept)."""
        out = self
        if chunk_size is not None:
            out = replace(out, chunk_size=int(chunk_size))
        if hidden_size is not None:
            out = replace(out, hidden_size=_ints(hidden_size))
        return out

    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :class:`~hypercl.HyperNetwork` besides the target and the generator kind."""
        out = _json(self, self._ORDER)
        del out["generator"]
        return out

    def to_json(self) -> dict[str, Any]:
        return _json(self, self._ORDER)

    @classmethod
    def from_json(cls, d: Mapping[str, Any], default_init: Optional[str] = None) -> HypernetworkConfig:
        d = _take(dict(d), "hypernetwork", cls._ORDER)
        return cls(
            generator=d["generator"],
            chunk_size=int(d["chunk_size"]),
            hidden_size=_ints(d["hidden_size"]),
            task_emb_dim=int(d["task_emb_dim"]),
            chunk_emb_dim=int(d["chunk_emb_dim"]),
            init=d.get("init", default_init),
            activation=d.get("activation"),
        )


@dataclass(frozen=True)
class StrategyConfig:
    """The continual-learning strategy by name, with its constructor's keyword arguments (per scenario for the
    baselines, whose hyper-parameters differ between CL1, CL2 and CL3)."""

    name: str
    kwargs: FrozenMap = field(default_factory=FrozenMap)
    per_scenario_kwargs: Optional[FrozenMap] = None

    @property
    def beta(self) -> Optional[float]:
        return self.kwargs.get("beta")

    @property
    def fisher_samples(self) -> Optional[int]:
        return self.kwargs.get("fisher_samples")

    def with_kwargs(self, **changes: Any) -> StrategyConfig:
        """A copy with some constructor keyword arguments set (an existing one keeps its place)."""
        return replace(self, kwargs=FrozenMap({**self.kwargs.to_json(), **changes}))

    def kwargs_for(self, scenario: Optional[str] = None) -> dict[str, Any]:
        """The constructor's keyword arguments for ``scenario`` (its per-scenario ones, then the common ones)."""
        per = self.per_scenario_kwargs.get(scenario) if self.per_scenario_kwargs is not None and scenario else None
        return {**(per.to_json() if per is not None else {}), **self.kwargs.to_json()}

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "kwargs": self.kwargs.to_json()}
        if self.per_scenario_kwargs is not None:
            out["per_scenario_kwargs"] = self.per_scenario_kwargs.to_json()
        return out

    @classmethod
    def from_json(cls, d: Mapping[str, Any], keep_empty: bool = False) -> StrategyConfig:
        """``keep_empty``: an empty ``per_scenario_kwargs`` stays in the JSON (else it is left out, as the
        protocol-versioned configs have always stored it)."""
        d = _take(dict(d), "strategy", ("name", "kwargs", "per_scenario_kwargs"))
        per = d.get("per_scenario_kwargs")
        return cls(
            name=d["name"],
            kwargs=FrozenMap(d.get("kwargs") or {}),
            per_scenario_kwargs=FrozenMap(per) if per or (keep_empty and per is not None) else None,
        )


@dataclass(frozen=True)
class TrainingConfig:
    """Optimizer, learning rate, batch size and the length of a task (``iterations`` or ``epochs``)."""

    optimizer: str
    lr: float
    batch_size: int
    iterations: Optional[int] = None
    epochs: Optional[int] = None
    #: test samples per evaluation batch (``None``: the learner's default)
    eval_batch_size: Optional[int] = None

    _ORDER = ("optimizer", "lr", "batch_size", "iterations", "epochs", "eval_batch_size")

    def to_json(self) -> dict[str, Any]:
        return _json(self, self._ORDER)

    @classmethod
    def from_json(cls, d: Mapping[str, Any], where: str = "train") -> TrainingConfig:
        d = _take(dict(d), where, cls._ORDER)
        return cls(
            optimizer=d["optimizer"],
            lr=float(d["lr"]),
            batch_size=int(d["batch_size"]),
            iterations=d.get("iterations"),
            epochs=d.get("epochs"),
            eval_batch_size=d.get("eval_batch_size"),
        )


@dataclass(frozen=True)
class AugmentConfig(_FlatJson):
    """Split CIFAR's on-device training augmentation: random crop (``padding``, filled with ``fill``) + flip."""

    kind: Optional[str] = None
    padding: Optional[int] = None
    fill: Optional[str] = None

    _KEY = "augment"
    _FIELDS = ("kind", "padding", "fill")


@dataclass(frozen=True)
class EvaluationConfig(_FlatJson):
    """How CL2/CL3 are evaluated: the task-inference criterion (:mod:`hypercl.task_inference`; ``None``: entropy)."""

    task_inference: Optional[str] = None

    _KEY = "evaluation"
    _FIELDS = ("task_inference",)


@dataclass(frozen=True)
class OffTaskConfig(_FlatJson):
    """The training-time off-task uncertainty term (:mod:`hypercl.off_task`): ``kind``, ``weight``, ``grid``."""

    kind: str
    weight: float
    grid: Optional[int] = None

    _KEY = "off_task"
    _FIELDS = ("kind", "weight", "grid")


@dataclass(frozen=True)
class ValidationConfig(_FlatJson):
    """Evaluation on a held-out validation split: ``size_per_task`` training samples per task carved with
    ``split_seed``, and the ``calibration`` fitted on it (``scripts/fidelity.py``'s calibrated rows)."""

    size_per_task: int
    split_seed: int
    calibration: Optional[str] = None

    _KEY = "validation"
    _FIELDS = ("size_per_task", "split_seed", "calibration")


_R = TypeVar("_R", bound="_RunIdentity")


class _RunIdentity:
    """The identity of a whole run configuration: its JSON's fingerprint; copies with fields changed."""

    def to_json(self) -> dict[str, Any]:
        raise NotImplementedError

    def fingerprint(self) -> str:
        """16 hex digits of the SHA-256 of the canonical JSON of :meth:`to_json`: the run identity."""
        return config_hash(self.to_json())

    def replace(self: _R, **changes: Any) -> _R:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return cast(Any, replace)(self, **changes)


@dataclass(frozen=True)
class RunConfig(_RunIdentity):
    """One classifier run: everything that decides its numbers (see the module docstring)."""

    method: str
    benchmark: BenchmarkConfig
    target: TargetConfig
    training: TrainingConfig
    strategy: StrategyConfig
    hypernetwork: Optional[HypernetworkConfig] = None
    output_layout: Optional[str] = None
    quick: bool = False
    #: Split CIFAR's training augmentation (``None``: no augmentation)
    augment: Optional[AugmentConfig] = None
    #: a held-out validation split with calibration (``None``: none)
    validation: Optional[ValidationConfig] = None
    #: the CL2/CL3 task-inference criterion (``None``: entropy)
    evaluation: Optional[EvaluationConfig] = None
    #: the training-time off-task uncertainty term (``None``: none)
    off_task: Optional[OffTaskConfig] = None
    #: the protocol version; ``None`` only for a config read from JSON that had none
    protocol: Optional[int] = PROTOCOL_VERSION

    def to_json(self) -> dict[str, Any]:
        """The plain-data form (results files, checkpoints, fingerprint)."""
        d: dict[str, Any] = {
            "benchmark": self.benchmark.to_json(),
            "method": self.method,
            "target": self.target.to_json(),
            "train": self.training.to_json(),
            "quick": self.quick,
        }
        if self.augment is not None:
            d["augment"] = self.augment.to_json()
        if self.hypernetwork is not None:
            d["hypernetwork"] = self.hypernetwork.to_json()
        if self.output_layout is not None:
            d["output_layout"] = self.output_layout
        d["strategy"] = self.strategy.to_json()
        if self.validation is not None:
            d["validation"] = self.validation.to_json()
        if self.evaluation is not None:
            d["evaluation"] = self.evaluation.to_json()
        if self.off_task is not None:
            d["off_task"] = self.off_task.to_json()
        if self.protocol is not None:
            d["protocol"] = self.protocol
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> RunConfig:
        """The config of a JSON object (a results file's ``"config"``); unknown or missing entries raise
        :class:`ConfigError` naming them."""
        d = _take(
            dict(d),
            "config",
            (
                "benchmark",
                "method",
                "target",
                "train",
                "quick",
                "augment",
                "hypernetwork",
                "output_layout",
                "strategy",
                "validation",
                "evaluation",
                "off_task",
                "protocol",
            ),
        )
        missing = [k for k in ("benchmark", "method", "target", "train", "strategy") if k not in d]
        if missing:
            raise ConfigError(
                f"the config lacks {missing}; it is not a hypercl run configuration (a replay run's "
                "has 'classifier' and 'distill': ReplayRunConfig)"
            )
        versioned = "protocol" in d
        h = d.get("hypernetwork")
        return cls(
            method=d["method"],
            benchmark=BenchmarkConfig.from_json(d["benchmark"]),
            target=TargetConfig.from_json(d["target"]),
            training=TrainingConfig.from_json(d["train"]),
            strategy=StrategyConfig.from_json(d["strategy"], keep_empty=not versioned),
            hypernetwork=HypernetworkConfig.from_json(h, default_init="target_scale" if versioned else None)
            if h is not None
            else None,
            output_layout=d.get("output_layout"),
            quick=bool(d.get("quick", False)),
            augment=AugmentConfig.from_json(d["augment"]) if d.get("augment") else None,
            validation=ValidationConfig.from_json(d["validation"]) if d.get("validation") else None,
            evaluation=EvaluationConfig.from_json(d["evaluation"]) if d.get("evaluation") else None,
            off_task=OffTaskConfig.from_json(d["off_task"]) if d.get("off_task") else None,
            protocol=int(d["protocol"]) if versioned else None,
        )

    def to_dict(self) -> dict[str, Any]:
        """Deprecated: :meth:`to_json`."""
        warnings.warn("RunConfig.to_dict is deprecated; use to_json", DeprecationWarning, stacklevel=2)
        return self.to_json()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunConfig:
        """Deprecated: :meth:`from_json` (which keeps an absent ``protocol`` absent; this reads it as the current
        one, as it always did)."""
        warnings.warn("RunConfig.from_dict is deprecated; use from_json", DeprecationWarning, stacklevel=2)
        return cls.from_json({"protocol": PROTOCOL_VERSION, **d})

    def versioned(self) -> RunConfig:
        """This config under the current protocol, as the CLI runs it: equal to reading its JSON form with the
        ``protocol`` entry added (an empty ``per_scenario_kwargs`` is left out, a missing ``init`` is
        ``target_scale``)."""
        strategy = self.strategy
        if strategy.per_scenario_kwargs is not None and not len(strategy.per_scenario_kwargs):
            strategy = replace(strategy, per_scenario_kwargs=None)
        h = self.hypernetwork
        if h is not None and h.init is None:
            h = replace(h, init="target_scale")
        return replace(self, strategy=strategy, hypernetwork=h, protocol=PROTOCOL_VERSION)

    def validate(self) -> RunConfig:
        """Values that cannot run raise :class:`ConfigError` naming the option (before any data is loaded)."""
        tr = self.training
        if tr.iterations is not None and tr.iterations < 1:
            raise ConfigError(f"--iterations must be at least 1, got {tr.iterations}")
        if tr.epochs is not None and tr.epochs < 1:
            raise ConfigError(f"--epochs must be at least 1, got {tr.epochs}")
        if tr.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {tr.batch_size}")
        if not (isinstance(tr.lr, (int, float)) and 0 < tr.lr <= LR_MAX):  # also refuses nan and inf
            raise ConfigError(f"--lr must be a finite number in (0, {LR_MAX:g}], got {tr.lr}")
        beta = self.strategy.beta
        if beta is not None and not (isinstance(beta, (int, float)) and 0 <= beta <= BETA_MAX):
            raise ConfigError(f"--beta must be a finite number in [0, {BETA_MAX:g}], got {beta}")
        b = self.benchmark
        for key in ("max_train_per_task", "max_test_per_task", "num_tasks"):
            v = getattr(b, key)
            if v is not None and v < 1:
                raise ConfigError(f"--{key.replace('_', '-')} must be at least 1, got {v}")
        if b.val_size < 0:
            raise ConfigError(f"--val-size must be zero or positive, got {b.val_size}")
        if b.max_train_per_task is not None and b.val_size >= b.max_train_per_task:
            raise ConfigError(
                f"--val-size {b.val_size} leaves no training data of the {b.max_train_per_task} per "
                "task (--max-train-per-task); choose a smaller --val-size"
            )
        fs = self.strategy.fisher_samples
        if fs is not None and fs < 1:
            raise ConfigError(f"--fisher-samples must be at least 1, got {fs}")
        k = self.strategy.kwargs.get("reg_tasks_per_step")
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise ConfigError(
                f"--reg-tasks-per-step must be an integer of at least 1 (old tasks regularised per "
                f"step; leave it out for all), got {k}"
            )
        mode = self.strategy.kwargs.get("targets")
        if mode is not None and mode not in ("stored", "online"):
            raise ConfigError(f"--reg-targets must be 'stored' or 'online', got {mode!r}")
        if self.off_task is not None:
            from .off_task import OffTask

            try:
                OffTask(**self.off_task.to_json())
            except (TypeError, ValueError) as e:
                raise ConfigError(f"--off-task: {e}") from None
        if self.hypernetwork is not None and self.hypernetwork.chunk_size < 1:
            raise ConfigError(f"--chunk-size must be at least 1, got {self.hypernetwork.chunk_size}")
        return self


@dataclass(frozen=True)
class ClassifierConfig:
    """A replay run's classifier: an MLP of ``hidden`` widths."""

    hidden: tuple[int, ...]
    activation: str

    def to_json(self) -> dict[str, Any]:
        return _json(self, ("hidden", "activation"))

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ClassifierConfig:
        d = _take(dict(d), "classifier", ("hidden", "activation"))
        return cls(hidden=_freeze(d["hidden"]), activation=d["activation"])


@dataclass(frozen=True)
class VAEConfig:
    """The replay model's VAE: encoder/decoder widths, latent size, activation."""

    hidden: tuple[int, ...]
    latent_dim: int
    activation: str

    def to_json(self) -> dict[str, Any]:
        return _json(self, ("hidden", "latent_dim", "activation"))

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> VAEConfig:
        d = _take(dict(d), "replay.vae", ("hidden", "latent_dim", "activation"))
        return cls(hidden=_freeze(d["hidden"]), latent_dim=d["latent_dim"], activation=d["activation"])


@dataclass(frozen=True)
class ReplayModelConfig:
    """The generative replay model: ``kind`` "hnet" (VAE decoder generated by a hypernetwork, protected by
    ``strategy``) or "plain" (one VAE); its training; whether it also learns the last task."""

    kind: str
    vae: VAEConfig
    training: TrainingConfig
    train_last_task: bool = False
    hypernetwork: Optional[HypernetworkConfig] = None
    strategy: Optional[StrategyConfig] = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "kind": self.kind,
            "vae": self.vae.to_json(),
            "train": self.training.to_json(),
            "train_last_task": self.train_last_task,
        }
        if self.hypernetwork is not None:
            d["hypernetwork"] = self.hypernetwork.to_json()
        if self.strategy is not None:
            d["strategy"] = self.strategy.to_json()
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ReplayModelConfig:
        d = _take(dict(d), "replay", ("kind", "vae", "train", "train_last_task", "hypernetwork", "strategy"))
        h, s = d.get("hypernetwork"), d.get("strategy")
        return cls(
            kind=d["kind"],
            vae=VAEConfig.from_json(d["vae"]),
            training=TrainingConfig.from_json(d["train"], "replay.train"),
            train_last_task=bool(d.get("train_last_task", False)),
            hypernetwork=HypernetworkConfig.from_json(h) if h is not None else None,
            strategy=StrategyConfig.from_json(s, keep_empty=True) if s is not None else None,
        )


@dataclass(frozen=True)
class DistillConfig(_FlatJson):
    """How replayed samples train the classifier: soft/hard ``targets``, KD ``temperature``, ``mixing`` of the
    current and replayed losses, their weight and batch size, and where replayed inputs come from (``source``)."""

    targets: str
    temperature: float
    mixing: str
    replay_weight: float
    replay_batch_size: int
    source: str

    _KEY = "distill"
    _FIELDS = ("targets", "temperature", "mixing", "replay_weight", "replay_batch_size", "source")


@dataclass(frozen=True)
class SampleGridConfig(_FlatJson):
    """The PNG grid of replayed samples written after a replay run: samples per task and the sampling seed."""

    per_task: int = 10
    seed: int = 0

    _KEY = "sample_grid"
    _FIELDS = ("per_task", "seed")


@dataclass(frozen=True)
class ReplayRunConfig(_RunIdentity):
    """One replay-setting run (the seed paper's Table 2): classifier, replay model (``None``: LwF, no generator),
    distillation settings."""

    method: str
    benchmark: BenchmarkConfig
    classifier: ClassifierConfig
    training: TrainingConfig
    distill: DistillConfig
    replay: Optional[ReplayModelConfig] = None
    quick: bool = False
    sample_grid: SampleGridConfig = SampleGridConfig()
    setting: str = "replay"
    protocol: Optional[int] = PROTOCOL_VERSION

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "benchmark": self.benchmark.to_json(),
            "method": self.method,
            "setting": self.setting,
            "quick": self.quick,
            "classifier": self.classifier.to_json(),
            "train": self.training.to_json(),
            "replay": self.replay.to_json() if self.replay is not None else None,
            "distill": self.distill.to_json(),
            "sample_grid": self.sample_grid.to_json(),
        }
        if self.protocol is not None:
            d["protocol"] = self.protocol
        return d

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> ReplayRunConfig:
        d = _take(
            dict(d),
            "config",
            (
                "benchmark",
                "method",
                "setting",
                "quick",
                "classifier",
                "train",
                "replay",
                "distill",
                "sample_grid",
                "protocol",
            ),
        )
        r = d.get("replay")
        return cls(
            method=d["method"],
            benchmark=BenchmarkConfig.from_json(d["benchmark"]),
            classifier=ClassifierConfig.from_json(d["classifier"]),
            training=TrainingConfig.from_json(d["train"]),
            distill=DistillConfig.from_json(d["distill"]),
            replay=ReplayModelConfig.from_json(r) if r is not None else None,
            quick=bool(d.get("quick", False)),
            sample_grid=SampleGridConfig.from_json(d.get("sample_grid", {})),
            setting=d.get("setting", "replay"),
            protocol=int(d["protocol"]) if "protocol" in d else None,
        )


AnyRunConfig = Union[RunConfig, ReplayRunConfig]


def versioned(cfg: AnyRunConfig) -> AnyRunConfig:
    """``cfg`` under the current protocol (:meth:`RunConfig.versioned`; a replay config only gains the entry)."""
    return cfg.versioned() if isinstance(cfg, RunConfig) else replace(cfg, protocol=PROTOCOL_VERSION)


def config_from_json(d: Mapping[str, Any]) -> AnyRunConfig:
    """A :class:`ReplayRunConfig` for a replay run's JSON (``"setting": "replay"``), else a :class:`RunConfig`."""
    return ReplayRunConfig.from_json(d) if d.get("setting") == "replay" else RunConfig.from_json(d)


def as_config(cfg: Union[AnyRunConfig, Mapping[str, Any]]) -> AnyRunConfig:
    """``cfg`` itself, or the config of its JSON form (a dict as :func:`~hypercl.experiments.method_config` builds it
    or a results file stores it): the one place a plain-data config enters the library."""
    if isinstance(cfg, (RunConfig, ReplayRunConfig)):
        return cfg
    if isinstance(cfg, Mapping):
        return config_from_json(cfg)
    raise ConfigError(f"expected a RunConfig, a ReplayRunConfig or its JSON form (a dict), got {type(cfg).__name__}")
