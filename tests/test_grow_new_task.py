"""GROW's new-task weights: "copy" starts w^t, W^t from the previous task's, "fresh" from a new draw of the first
task's initial distribution; old tasks' generated weights stay bit-identical either way."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import hypercl
from hypercl.hypernetwork import HyperNetwork


def _learner(new_task_weights: str, init: str = "target_scale") -> hypercl.ContinualLearner:
    torch.manual_seed(0)
    target = nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 4))
    hnet = HyperNetwork(target, generator="lstm", hidden_size=16, chunk_size=64, init=init)
    return hypercl.ContinualLearner(hnet, strategy="grow", strategy_kwargs={"new_task_weights": new_task_weights},
                                    batch_size=16, progress=False)


def _data(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(64, 20, generator=g), torch.randint(0, 2, (64,), generator=g)


@pytest.mark.parametrize("init", ["target_scale", "von_oswald"])
def test_copy_and_fresh_new_task_weights(init: str) -> None:
    runs = {}
    for mode in ("copy", "fresh"):
        learner = _learner(mode, init)
        learner.fit_task(0, _data(0), iterations=5, num_classes=2)
        before = learner.hnet.generate_flat([0]).detach().clone()
        learner.fit_task(1, _data(1), iterations=1, num_classes=2)
        gen = learner.hnet.generator
        # old task's weights bit-identical after a new task was learned
        assert torch.equal(learner.hnet.generate_flat([0]), before)
        runs[mode] = gen
    copy, fresh = runs["copy"], runs["fresh"]
    # copy: task 1 started as task 0's trained weights (and trained 1 step: its w^1 is close to w^0)
    d_copy = (copy.task_weight_ih[1] - copy.task_weight_ih[0]).abs().max().item()
    d_fresh = (fresh.task_weight_ih[1] - fresh.task_weight_ih[0]).abs().max().item()
    assert d_copy < 0.05 < d_fresh
    w = fresh.task_weight_ih[1].detach()
    h = fresh.hidden_size
    if init == "von_oswald":
        bound = math.sqrt(6.0 / (w.shape[0] + w.shape[1]))
        assert fresh.task_bias_ih[1].abs().max().item() < 0.05  # zero bias + one Adam step (lr 1e-3)
    else:
        bound = 1.0 / math.sqrt(h)
    # a fresh draw fills U(-bound, bound) (one Adam step of 1e-3 moves it by at most ~1e-3)
    assert w.abs().max().item() <= bound + 2e-3 and w.abs().max().item() > 0.8 * bound
    assert abs(w.std().item() / (bound / math.sqrt(3)) - 1) < 0.2


def test_fresh_survives_a_checkpoint_restore(tmp_path) -> None:
    learner = _learner("fresh")
    learner.fit_task(0, _data(0), iterations=3, num_classes=2)
    learner.save(tmp_path / "g.pt")
    back = hypercl.ContinualLearner.load(tmp_path / "g.pt", model=nn.Sequential(nn.Linear(20, 16), nn.ReLU(),
                                                                                nn.Linear(16, 4)))
    assert back.strategy.new_task_weights == "fresh"
    back.fit_task(1, _data(1), iterations=1, num_classes=2)
    gen = back.hnet.generator
    assert (gen.task_weight_ih[1] - gen.task_weight_ih[0]).abs().max().item() > 0.05


def test_unknown_new_task_weights_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown new_task_weights 'zero'"):
        _learner("zero")
