"""init="von_oswald": the hypernetwork's parameters sit where von Oswald et al.'s code puts them (mnist/train_utils.py
lines 255-269 of github.com/chrhenning/hypercl): xavier-uniform weight matrices, zero biases, N(0, 1) task and chunk
embeddings, and the generated weights are the generator's raw outputs (no rescaling)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import hypercl
from hypercl.hypernetwork import HyperNetwork


def _target() -> nn.Module:
    return nn.Sequential(nn.Linear(784, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(), nn.Linear(100, 10))


def _fans(p: torch.Tensor) -> tuple[int, int]:
    # torch's convention for a 2-D tensor (rows, cols): fan_in = cols, fan_out = rows; the bound is symmetric anyway
    return p.shape[1] * (p[0][0].numel() if p.ndim > 2 else 1), p.shape[0]


@pytest.mark.parametrize("generator,kwargs", [("chunked_mlp", {"hidden_size": (10, 10), "chunk_size": 4000}),
                                              ("lstm", {"hidden_size": 16, "chunk_size": 4000})])
def test_von_oswald_init_places_parameters_like_the_original(generator: str, kwargs: dict) -> None:
    torch.manual_seed(0)
    hnet = HyperNetwork(_target(), generator=generator, init="von_oswald", num_tasks=3, **kwargs)
    seen_matrix = seen_bias = False
    for name, p in hnet.generator.named_parameters():
        if "embedding" in name:
            continue
        if p.ndim == 1:
            assert torch.count_nonzero(p) == 0, f"{name}: biases must start at zero"
            seen_bias = True
        else:
            fan_in, fan_out = _fans(p)
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            assert p.abs().max().item() <= bound + 1e-7, name
            # uniform(-a, a) has std a / sqrt(3); with >= 100 draws the sample std is within 25 % of it
            if p.numel() >= 100:
                assert abs(p.std().item() / (bound / math.sqrt(3)) - 1) < 0.25, name
                assert p.abs().max().item() > 0.8 * bound, name  # fills the interval, not a narrower init
            seen_matrix = True
    assert seen_matrix and seen_bias
    embs = torch.cat([hnet.generator.chunk_embeddings.reshape(-1)] + [e.reshape(-1) for e in hnet.task_embeddings])
    assert abs(embs.std().item() - 1.0) < 0.05 and abs(embs.mean().item()) < 0.05
    # no rescaling: the weights are the generator's raw outputs
    assert torch.equal(hnet.weight_gain, torch.ones_like(hnet.weight_gain))
    assert torch.equal(hnet.weight_offset, torch.zeros_like(hnet.weight_offset))
    raw = hnet.generate_raw([0, 2])[:, : hnet.plan.num_params]
    assert torch.equal(hnet.generate_flat([0, 2]), raw)
    # a task added later follows the same scheme (N(0, 1) embedding)
    hnet.add_task()
    assert hnet.task_embeddings[-1].shape == (hnet.task_emb_dim,)
    assert hnet.config["init"] == "von_oswald" and not hnet.init_scaling


def test_target_scale_init_is_unchanged_default_and_differs() -> None:
    torch.manual_seed(0)
    a = HyperNetwork(_target(), generator="chunked_mlp", hidden_size=(10, 10), chunk_size=4000, num_tasks=1)
    assert a.init == "target_scale" and a.config["init"] == "target_scale" and a.init_scaling
    assert not torch.equal(a.weight_gain, torch.ones_like(a.weight_gain))  # the target-scale map is on
    # its output layer keeps nn.Linear's non-zero biases; the original's are zero
    biases = [p for n, p in a.generator.named_parameters() if p.ndim == 1 and "embedding" not in n]
    assert any(torch.count_nonzero(b) > 0 for b in biases)


def test_unknown_init_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown init 'xavier'; valid"):
        HyperNetwork(_target(), generator="chunked_mlp", init="xavier")


def test_von_oswald_hnet_survives_a_checkpoint_round_trip(tmp_path) -> None:
    torch.manual_seed(0)
    hnet = HyperNetwork(_target(), generator="chunked_mlp", hidden_size=(10, 10), chunk_size=4000, init="von_oswald")
    learner = hypercl.ContinualLearner(hnet, strategy="hnet", batch_size=16, progress=False)
    x, y = torch.randn(64, 784), torch.randint(0, 2, (64,))
    learner.fit_task(0, (x, y), iterations=3, num_classes=2)
    learner.save(tmp_path / "c.pt")
    back = hypercl.ContinualLearner.load(tmp_path / "c.pt", model=_target())
    assert back.hnet.config["init"] == "von_oswald"
    assert torch.equal(back.hnet.generate_flat([0]), hnet.generate_flat([0]))
