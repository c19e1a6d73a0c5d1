import math

import pytest
import torch
from torch import nn

import hypercl
from hypercl import ChunkPlan
from hypercl.hypernetwork import default_chunk_size

KINDS = ["lstm", "gru", "chunked_mlp", "mlp"]


def small_target():
    return hypercl.wrap(nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)))


def make(kind, **kw):
    kw.setdefault("chunk_size", None if kind == "mlp" else 10)
    return hypercl.HyperNetwork(small_target(), generator=kind, task_emb_dim=5, chunk_emb_dim=4,
                                hidden_size=7 if kind in ("lstm", "gru") else (9, 9), num_tasks=3, **kw)


@pytest.mark.parametrize("kind", KINDS)
def test_output_shapes(kind):
    h = make(kind)
    flat = h.generate_flat([0, 1, 2])
    assert flat.shape == (3, h.target.num_params)
    raw = h.generator(h.task_embedding_matrix([0, 2]), [0, 2])
    assert raw.shape == (2, h.plan.n_chunks, h.plan.chunk_size)
    params = h(1)
    assert {n: tuple(v.shape) for n, v in params.items()} == {n: tuple(s) for n, s in h.target.param_shapes.items()}
    stacked = h.generate([0, 1])
    assert all(v.shape[0] == 2 for v in stacked.values())


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_reach_generator_task_and_chunk_embeddings(kind):
    h = make(kind)
    x = torch.randn(4, 6)
    h.target(h(1), x).pow(2).sum().backward()
    for name, p in h.generator.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert h.task_embeddings[1].grad is not None and h.task_embeddings[1].grad.abs().sum() > 0
    assert h.task_embeddings[0].grad is None and h.task_embeddings[2].grad is None  # other tasks untouched
    if kind != "mlp":
        assert h.generator.chunk_embeddings.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", KINDS)
def test_batch_of_tasks_equals_single_calls(kind):
    h = make(kind)
    together = h.generate_flat([2, 0, 1])
    for row, t in enumerate([2, 0, 1]):
        assert torch.allclose(together[row], h.generate_flat([t])[0], atol=1e-6)


def test_recurrent_chunks_depend_on_earlier_chunks_but_mlp_chunks_do_not():
    """LSTM_NET's chunk j depends on chunk embeddings c_1..c_j (eq. 1); HNET's chunks are independent."""
    for kind, depends in [("lstm", True), ("gru", True), ("chunked_mlp", False)]:
        h = make(kind)
        before = h.generator(h.task_embedding_matrix([0]), [0]).detach()
        with torch.no_grad():
            h.generator.chunk_embeddings[0] += 1.0
        after = h.generator(h.task_embedding_matrix([0]), [0]).detach()
        changed_later = not torch.allclose(before[0, 1:], after[0, 1:])
        assert changed_later == depends, kind


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_growth_mode_equals_plain_recurrence_at_switch(kind):
    """GROW's precomputed input projection + identity-input fused op computes the same gates as nn.LSTM/GRU."""
    h = make(kind)
    before = h.generate_flat([0, 1, 2]).detach()
    h.generator.enable_growth(h.num_tasks)
    after = h.generate_flat([0, 1, 2]).detach()
    assert torch.allclose(before, after, atol=1e-6)
    new = h.add_task()
    assert len(h.generator.task_weight_ih) == 4
    assert torch.equal(h.generator.task_weight_ih[new], h.generator.task_weight_ih[new - 1])


def test_init_scaling_matches_target_init_scale():
    model = nn.Sequential(nn.Linear(100, 50), nn.BatchNorm1d(50), nn.ReLU(), nn.Linear(50, 10))
    target = hypercl.wrap(model)
    for kind in KINDS:
        h = hypercl.HyperNetwork(target, generator=kind, num_tasks=2)
        params = h(0)
        for name in ["0.weight", "3.weight"]:
            own = dict(model.named_parameters())[name].std().item()
            assert 0.4 * own < params[name].std().item() < 2.5 * own, (kind, name)
        # BatchNorm gain starts near its init value 1, not near 0
        assert abs(params["1.weight"].mean().item() - 1.0) < 0.2, kind


def test_default_chunk_size_keeps_hypernetwork_smaller_than_target():
    target = hypercl.wrap(nn.Sequential(nn.Linear(784, 400), nn.ReLU(), nn.Linear(400, 400), nn.ReLU(),
                                        nn.Linear(400, 10)))
    for kind in ["lstm", "gru", "chunked_mlp"]:
        h = hypercl.HyperNetwork(target, generator=kind, num_tasks=1)
        assert h.compression_ratio < 1.0, kind
        c = h.plan.chunk_size
        # the fewest chunks: twice the chunk size would make the generator larger than the target
        bigger = default_chunk_size(target.num_params, kind, 96, 96, h.generator.hidden_size
                                    if kind != "chunked_mlp" else (10, 10))
        assert bigger == c
        assert math.ceil(target.num_params / c) & (math.ceil(target.num_params / c) - 1) == 0  # power of two
    assert hypercl.HyperNetwork(target, generator="mlp").plan.n_chunks == 1


def test_parameter_counts():
    h = make("chunked_mlp")
    manual = sum(p.numel() for p in h.generator.parameters()) + 3 * 5
    assert h.num_params == manual
    assert h.compression_ratio == pytest.approx(manual / h.target.num_params)


def test_hnet_errors():
    h = make("lstm")
    with pytest.raises(KeyError, match=r"unknown task id\(s\) \[3\].*add_task"):
        h(3)
    with pytest.raises(KeyError, match="unknown task id"):
        h.generate([0, -1])
    with pytest.raises(ValueError, match="unknown generator 'transformer'"):
        hypercl.HyperNetwork(small_target(), generator="transformer")
    with pytest.raises(ValueError, match="one-chunk plan"):
        hypercl.MLPGenerator(ChunkPlan(100, 10), 4)
    gen = hypercl.LSTMGenerator(ChunkPlan(50, 10), 4)
    with pytest.raises(ValueError, match="plan is for 50 weights"):
        hypercl.HyperNetwork(small_target(), generator=gen, task_emb_dim=4)
    with pytest.raises(ValueError, match=r"shape \(B, 4\)"):
        gen(torch.randn(2, 5))


def test_generator_instance_and_target_module_accepted():
    target = small_target()
    gen = hypercl.ChunkedMLPGenerator(ChunkPlan(target.num_params, 20), task_emb_dim=8, chunk_emb_dim=3)
    h = hypercl.HyperNetwork(target.module, generator=gen, task_emb_dim=8, num_tasks=1)
    assert h.generator is gen and h.target.num_params == target.num_params
    assert h.generate_flat(0).shape == (1, target.num_params)
    # the target's own parameters are not hypernetwork parameters
    ids = {id(p) for p in h.parameters()}
    assert not any(id(p) in ids for p in target.module.parameters())
