"""LSTM_NET_GROW's new-task weights (seed paper 3.3): ``new_task_weights="copy"`` starts ``w^t``, ``W^t`` as the
previous task's, ``"fresh"`` as a new draw of the task-0 initial distribution under the hypernetwork's init scheme;
old tasks' generated weights stay bit-identical either way."""

from __future__ import annotations

import math

import pytest
import torch

import hypercl
from helpers import conflicting_tasks, tiny_hnet

TASKS = conflicting_tasks(n=200)


def _run(mode: str, init: str, generator: str = "lstm"):
    torch.manual_seed(0)
    hnet = tiny_hnet(generator=generator, init=init)
    learner = hypercl.ContinualLearner(hnet, strategy="grow", strategy_kwargs={"new_task_weights": mode},
                                       batch_size=64, lr=1e-2)
    gen = learner.hnet.generator
    snaps, weights = [], []
    for t, (train, _) in enumerate(TASKS):
        learner.fit_task(t, train, iterations=40)
        with torch.no_grad():
            weights.append([learner.hnet.generate_flat([k])[0].clone() for k in range(t + 1)])
        snaps.append([p.detach().clone() for p in gen.task_parameters(t)])
    return learner, snaps, weights


def _new_task_start(learner, t):
    """The parameters task ``t`` started from: register one more task and read its fresh/copied weights."""
    gen = learner.hnet.generator
    new = learner.hnet.add_task()
    assert new == t
    return [p.detach().clone() for p in gen.task_parameters(new)]


@pytest.mark.parametrize("init", ["target_scale", "von_oswald"])
@pytest.mark.parametrize("mode", ["copy", "fresh"])
def test_old_tasks_bit_identical(mode, init):
    learner, _, weights = _run(mode, init)
    for t in range(3):
        for later in range(t + 1, 3):
            assert torch.equal(weights[t][t], weights[later][t]), (mode, t, later)
    assert learner.strategy.config() == {"new_task_weights": mode}


@pytest.mark.parametrize("init", ["target_scale", "von_oswald"])
def test_copy_equals_previous_task(init):
    learner, snaps, _ = _run("copy", init)
    start = _new_task_start(learner, 3)
    assert all(torch.equal(a, b) for a, b in zip(start, snaps[-1]))


def test_fresh_von_oswald_matches_the_init_distribution():
    learner, snaps, _ = _run("fresh", "von_oswald")
    start = _new_task_start(learner, 3)
    assert not any(torch.equal(a, b) for a, b in zip(start, snaps[-1]) if a.ndim > 1)
    for p in start:
        if p.ndim == 1:
            assert torch.count_nonzero(p) == 0  # zero biases, as at task 0
        else:  # xavier_uniform_: U(±sqrt(6 / (fan_in + fan_out))), std bound / sqrt(3)
            bound = math.sqrt(6.0 / (p.shape[0] + p.shape[1]))
            assert p.abs().max().item() <= bound + 1e-7
            assert p.abs().max().item() > 0.8 * bound
            assert abs(p.std().item() / (bound / math.sqrt(3)) - 1) < 0.25


def test_fresh_target_scale_matches_the_task0_distribution():
    torch.manual_seed(0)
    hnet = tiny_hnet(generator="lstm")
    learner = hypercl.ContinualLearner(hnet, strategy="grow", strategy_kwargs={"new_task_weights": "fresh"},
                                       batch_size=64, lr=1e-2)
    learner.fit_task(0, TASKS[0][0], iterations=1)  # task 0 switches growth on (its weights = the initial ones)
    gen = learner.hnet.generator
    task0_init = [p.detach().clone() for p in gen.task_parameters(0)]
    start = _new_task_start(learner, 1)
    for a, b in zip(start, task0_init):
        assert a.shape == b.shape and not torch.equal(a, b)
        # same uniform family: max |.| within 25 % of task 0's (one Adam step moves it by ~lr only)
        assert abs(a.abs().max().item() / b.abs().max().item() - 1) < 0.25


def test_unknown_mode_rejected():
    with pytest.raises(ValueError, match="new_task_weights"):
        hypercl.ContinualLearner(tiny_hnet(), strategy="grow", strategy_kwargs={"new_task_weights": "zero"})


def test_fresh_follows_the_hnet_config_init_scheme():
    """The scheme is read from ``hnet.config["init"]``, not only from an attribute the hypernetwork sets."""
    torch.manual_seed(0)
    hnet = tiny_hnet(generator="lstm", init="von_oswald")
    hnet.generator.init_scheme = "target_scale"  # a stale attribute must not win over the hypernetwork's config
    learner = hypercl.ContinualLearner(hnet, strategy="grow", strategy_kwargs={"new_task_weights": "fresh"},
                                       batch_size=64, lr=1e-2)
    assert learner.hnet.generator.init_scheme == "von_oswald"
    learner.fit_task(0, TASKS[0][0], iterations=1)
    start = _new_task_start(learner, 1)
    assert all(torch.count_nonzero(p) == 0 for p in start if p.ndim == 1)  # von Oswald: zero biases
