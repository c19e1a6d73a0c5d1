"""The typed run configuration: identities and fingerprints equal those of the dict-based code it replaced (a pinned
copy in ``pinned_config_cadfb9d.py``), exact JSON round trips for every method and benchmark, and fingerprints that change
exactly when a field changes."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path
from typing import Any

import pinned_config_cadfb9d as old
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hypercl.config import (PROTOCOL_VERSION, ConfigError, FrozenMap, ReplayRunConfig, RunConfig, as_config,
                            canonical_json, config_hash)
from hypercl.experiments.configs import ALL_METHODS, BENCHMARK_CONFIGS, method_config, method_run_config
from hypercl.experiments.identity import run_config, run_identity
from hypercl.replay.runner import REPLAY_BENCHMARK_CONFIGS, REPLAY_METHODS, replay_method_config, replay_run_config

ROOT = Path(__file__).parents[1]
_SPEC = importlib.util.spec_from_file_location("fidelity_for_config_tests", ROOT / "scripts" / "fidelity.py")
fidelity = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(fidelity)

#: overrides the CLI passes (each alone), per benchmark kind
OVERRIDES: list[dict[str, Any]] = [
    {}, {"iterations": 7}, {"lr": 0.5}, {"batch_size": 3}, {"beta": 0.2}, {"chunk_size": 100},
    {"max_train_per_task": 50, "max_test_per_task": 20}, {"val_size": 10}, {"hnet_init": "target_scale"},
    {"grow_new_task": "fresh"}, {"fisher_samples": 3}, {"verify": False}, {"hidden_size": 8},
    {"strategy_kwargs": {"beta": 0.3}}, {"reg_tasks_per_step": 2}, {"reg_targets": "online"},
    {"task_inference": "energy"}, {"task_inference": "entropy"},
]
CIFAR_OVERRIDES: list[dict[str, Any]] = [{"epochs": 2}, {"resnet_depth": 8, "resnet_widths": [4, 4, 4]},
                                         {"augment": False}]
REPLAY_OVERRIDES: list[dict[str, Any]] = [
    {}, {"iterations": 7}, {"lr": 0.5}, {"replay_iterations": 9}, {"temperature": 3.0}, {"replay_weight": 0.1},
    {"replay_batch_size": 16}, {"beta": 0.2}, {"chunk_size": 100}, {"num_tasks": 2},
]


def _cases() -> list[tuple[str, str, bool, dict]]:
    out = []
    for bench in BENCHMARK_CONFIGS:
        extra = CIFAR_OVERRIDES if bench == "split_cifar" else [{"num_tasks": 2}] if bench == "permuted_mnist" else []
        for method in ALL_METHODS:
            for quick in (False, True):
                for over in OVERRIDES + extra:
                    out.append((bench, method, quick, over))
    return out


def _replay_cases() -> list[tuple[str, str, bool, dict]]:
    return [(b, m, q, o) for b in REPLAY_BENCHMARK_CONFIGS for m in REPLAY_METHODS for q in (False, True)
            for o in REPLAY_OVERRIDES]


def test_cli_fingerprints_equal_the_dict_based_code_for_every_method_benchmark_and_override() -> None:
    """What ``hypercl run`` fingerprints (results file names, checkpoint identities) is unchanged."""
    n = 0
    for bench, method, quick, over in _cases():
        before = old.RunConfig.from_dict(old.method_config(bench, method, quick=quick, **over)).validate()
        after = run_config(method_config, bench, method, quick=quick, **over)
        assert after.to_json() == before.to_dict(), (bench, method, quick, over)
        assert run_config(method_run_config, bench, method, quick=quick, **over) == after, (bench, method, over)
        assert after.fingerprint() == before.fingerprint(), (bench, method, quick, over)
        for tag, seed in (("cl1", 0), ("cl1+cl2+cl3", 3)):
            assert run_identity(after, tag, seed)["id"] == old.run_identity(before.to_dict(), tag, seed)["id"]
        n += 1
    assert n > 500


def test_replay_fingerprints_equal_the_dict_based_code() -> None:
    for bench, method, quick, over in _replay_cases():
        raw = {**old.replay_method_config(bench, method, quick=quick, **over), "protocol": PROTOCOL_VERSION}
        after = run_config(replay_method_config, bench, method, quick=quick, **over)
        assert isinstance(after, ReplayRunConfig)
        assert run_config(replay_run_config, bench, method, quick=quick, **over) == after, (bench, method, over)
        assert after.to_json() == raw
        assert after.fingerprint() == old._hash(raw), (bench, method, quick, over)  # the replay checkpoint folder


def test_library_fingerprints_of_unversioned_configs_are_unchanged() -> None:
    """``run_seed(method_config(...))`` (the ablations, scripts/fidelity.py, library users): the checkpoint identity
    of a config without a protocol entry is the hash of the config as given, as before."""
    for bench, method, quick, over in _cases():
        raw = old.method_config(bench, method, quick=quick, **over)
        for tag, seed in (("cl2", 1), ("cl1+cl2+cl3", 0)):
            assert run_identity(method_config(bench, method, quick=quick, **over), tag, seed) == \
                old.run_identity(raw, tag, seed), (bench, method, quick, over)


@pytest.mark.parametrize("quick", [False, True])
def test_fidelity_identities_of_every_variant_are_unchanged(quick: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fidelity, "QUICK", quick)
    for variant in old.VARIANTS:
        cfg = fidelity.variant_config(variant)
        assert cfg.to_json() == old.variant_config(variant, quick)
        assert fidelity.identity(cfg) == old.identity(old.variant_config(variant, quick)), variant
        assert run_identity(cfg, "cl1+cl2+cl3", 2) == old.run_identity(old.variant_config(variant, quick),
                                                                       "cl1+cl2+cl3", 2)


def test_committed_fidelity_records_keep_their_identities() -> None:
    records = sorted((ROOT / "docs" / "fidelity" / "runs").glob("*.json"))
    for path in records:
        rec = json.loads(path.read_text())
        cfg = RunConfig.from_json(rec["config"])
        assert cfg.to_json() == rec["config"], path.name
        if rec.get("kind") == "infer":  # a task-inference record: training config + criterion + split
            assert fidelity.infer_identity(rec["config"], rec["criterion"], rec["split"]) == rec["identity"], path.name
        else:
            assert fidelity.identity(cfg) == rec["identity"], path.name


def _all_configs() -> list[Any]:
    cfgs: list[Any] = [run_config(method_config, b, m, quick=q) for b in BENCHMARK_CONFIGS for m in ALL_METHODS
                       for q in (False, True)]
    cfgs += [as_config(method_config(b, m)) for b in BENCHMARK_CONFIGS for m in ALL_METHODS]  # unversioned
    cfgs += [run_config(replay_method_config, b, m, quick=q) for b in REPLAY_BENCHMARK_CONFIGS
             for m in REPLAY_METHODS for q in (False, True)]
    return cfgs


def test_every_config_survives_a_json_round_trip() -> None:
    for cfg in _all_configs():
        text = json.dumps(cfg.to_json())
        back = type(cfg).from_json(json.loads(text))
        assert back == cfg
        assert back.fingerprint() == cfg.fingerprint()
        assert as_config(json.loads(text)) == cfg  # replay or classifier config, told apart by its JSON


def test_a_stored_config_of_another_version_is_refused_with_the_entry_named() -> None:
    cfg = run_config(method_config, "split_mnist", "hnet").to_json()
    cfg["train"]["warmup"] = 10
    with pytest.raises(ConfigError, match=r"'train' has unknown settings \['warmup'\].*another version"):
        RunConfig.from_json(cfg)
    with pytest.raises(ConfigError, match="lacks"):
        RunConfig.from_json({"method": "hnet", "benchmark": {"name": "split_mnist"}})


# ------------------------------------------------------------------------------------- fingerprint property
def _leaves(obj: Any, path: tuple = ()) -> list[tuple[tuple, Any]]:
    """(path, value) of every scalar field of a config (nested dataclasses walked)."""
    out = []
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if v is None and ("Config" in str(f.type) or "FrozenMap" in str(f.type)):
            continue  # an absent part (no hypernetwork, no augmentation, ...): not a scalar field
        if dataclasses.is_dataclass(v):
            out += _leaves(v, path + (f.name,))
        else:
            out.append((path + (f.name,), v))
    return out


def _set(obj: Any, path: tuple, value: Any) -> Any:
    if len(path) == 1:
        return dataclasses.replace(obj, **{path[0]: value})
    return dataclasses.replace(obj, **{path[0]: _set(getattr(obj, path[0]), path[1:], value)})


def _other_value(draw: Any, value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, FrozenMap):
        key = draw(st.sampled_from(sorted(value) + ["new_option"]))
        return FrozenMap({**value.to_json(), key: draw(st.integers(-5, 10**6))})
    if isinstance(value, tuple):
        return tuple(draw(st.lists(st.integers(1, 2000), max_size=4)))
    if isinstance(value, float):
        return draw(st.floats(1e-6, 10.0))
    if isinstance(value, int):
        return draw(st.integers(0, 10**6))
    if isinstance(value, str):
        return draw(st.text("abcdefghij_", min_size=1, max_size=12))
    return draw(st.integers(1, 10**6))  # None: an unset option set


CONFIGS = _all_configs()


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_fingerprint_changes_exactly_when_a_field_changes(data: Any) -> None:
    cfg = data.draw(st.sampled_from(CONFIGS))
    path, value = data.draw(st.sampled_from(_leaves(cfg)))
    same = _set(cfg, path, value)
    assert same.fingerprint() == cfg.fingerprint()  # an unchanged field: the same identity
    new = _other_value(data.draw, value)
    assume(canonical_json(_thaw(new)) != canonical_json(_thaw(value)))
    changed = _set(cfg, path, new)
    assert changed.fingerprint() != cfg.fingerprint(), (path, value, new)


def _thaw(v: Any) -> Any:
    return v.to_json() if isinstance(v, FrozenMap) else list(v) if isinstance(v, tuple) else v


def test_config_hash_is_the_canonical_json_digest() -> None:
    import hashlib

    obj = {"b": [1, 2.5], "a": {"y": None, "x": True}}
    assert config_hash(obj) == hashlib.sha256(b'{"a":{"x":true,"y":null},"b":[1,2.5]}').hexdigest()[:16]


def test_the_old_dict_methods_still_work_with_a_deprecation_warning() -> None:
    raw = method_config("split_mnist", "lstm_net_iwr")
    with pytest.warns(DeprecationWarning, match="from_json"):
        cfg = RunConfig.from_dict(raw)
    assert cfg == run_config(method_config, "split_mnist", "lstm_net_iwr")
    with pytest.warns(DeprecationWarning, match="to_json"):
        assert cfg.to_dict() == cfg.to_json()


def test_grow_analysis_train_val_identities_are_unchanged() -> None:
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    import grow_analysis

    for variant in ("lstm_net_grow", "lstm_net_grow_fresh", "hnet"):
        before = old.variant_config(variant)
        before["benchmark"]["val_size"] = grow_analysis.VAL_SIZE
        assert fidelity.identity(grow_analysis.variant_config(variant, val=True)) == old.identity(before), variant


def test_names_moved_out_of_experiments_cifar_still_import_with_a_deprecation_warning() -> None:
    import hypercl.experiments.cifar as cifar
    import hypercl.experiments.cifar_speed as cifar_speed
    from hypercl.config import TargetConfig

    for name in ("cifar_speed", "plot_speed", "SyntheticCIFAR", "CIFAR_TRAIN_SIZES", "CIFAR_TEST_SIZES"):
        with pytest.warns(DeprecationWarning, match=f"cifar.{name} moved to hypercl.experiments.cifar_speed"):
            assert getattr(cifar, name) is getattr(cifar_speed, name)
    with pytest.raises(AttributeError):
        cifar.no_such_name  # noqa: B018
    with pytest.warns(DeprecationWarning, match="resnet_target"):
        old = cifar.resnet_target({"depth": 8, "widths": [4, 4, 4]}, 10)
    new = cifar.resnet_target(TargetConfig(model="resnet", depth=8, widths=(4, 4, 4)), 10)
    assert [p.shape for p in old.parameters()] == [p.shape for p in new.parameters()]
