"""--parallel-seeds: the seeds' hypernetworks trained as one ensemble equal the sequential runs, seed by seed."""

import pytest
import torch

import hypercl
from hypercl.ensemble import SeedEnsemble, ensemble_recurrence
from helpers import conflicting_tasks, tiny_hnet, tiny_mlp

CASES = [  # (generator, strategy, strategy kwargs)
    ("chunked_mlp", "hnet", {"beta": 0.05, "lookahead": True}),
    ("lstm", "iwr", {"beta": 0.05, "lookahead": True, "fisher_samples": 64}),
    ("lstm", "grow", {}),
    ("gru", "hnet", {"beta": 0.05}),
    ("lstm", "none", {}),
]


def _make(generator, strategy, kwargs):
    def make(seed):
        torch.manual_seed(seed)
        return hypercl.ContinualLearner(tiny_hnet(generator=generator), strategy=strategy, strategy_kwargs=kwargs,
                                        lr=5e-3, batch_size=32, seed=seed)
    return make


@pytest.mark.parametrize("generator,strategy,kwargs", CASES)
def test_ensemble_equals_sequential_runs_per_seed(generator, strategy, kwargs):
    tasks = conflicting_tasks(n=200)[:2]
    seeds = [0, 1, 2]
    make = _make(generator, strategy, kwargs)
    sequential = []
    for seed in seeds:
        learner = make(seed)
        for t, (train, _) in enumerate(tasks):
            learner.fit_task(t, train, iterations=25)
            learner.evaluate([te for _, te in tasks], scenarios=["cl1", "cl3"])
        sequential.append(learner)
    ens = SeedEnsemble.build(make, seeds)
    for t, (train, _) in enumerate(tasks):
        ens.fit_task(t, train, iterations=25)
        ens.evaluate([te for _, te in tasks], scenarios=["cl1", "cl3"])
    for seq, par in zip(sequential, ens.members):
        with torch.no_grad():
            w_seq, w_par = seq.hnet.generate_flat([0, 1]), par.hnet.generate_flat([0, 1])
        assert torch.allclose(w_seq, w_par, atol=1e-4, rtol=1e-4), (w_seq - w_par).abs().max()
        for s in ("cl1", "cl3"):
            a, b = seq.results(s)["matrix"], par.results(s)["matrix"]
            assert all(x == pytest.approx(y, abs=0.011) for ra, rb in zip(a, b) for x, y in zip(ra, rb) if x is not None)
        for n, p in seq.hnet.named_parameters():
            assert p.requires_grad == dict(par.hnet.named_parameters())[n].requires_grad
    # the seeds really differ from each other (not one model trained three times)
    w = [m.hnet.generate_flat([0]).detach() for m in ens.members]
    assert not torch.allclose(w[0], w[1])


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_ensemble_recurrence_equals_one_rnn_per_seed(cell):
    torch.manual_seed(0)
    rnns = [(torch.nn.LSTM if cell == "lstm" else torch.nn.GRU)(6, 5, batch_first=True) for _ in range(3)]
    x = torch.randn(3, 2, 7, 6)
    pre = torch.stack([x[i] @ r.weight_ih_l0.T + r.bias_ih_l0 for i, r in enumerate(rnns)])
    w_hh = torch.stack([r.weight_hh_l0 for r in rnns])
    b_hh = torch.stack([r.bias_hh_l0 for r in rnns])
    out = ensemble_recurrence(pre, w_hh, b_hh, cell)
    for i, r in enumerate(rnns):
        assert torch.allclose(out[i], r(x[i])[0], atol=1e-6)
    out.sum().backward()  # gradients reach the per-seed weights only through their own block


def test_ensemble_rejects_unsupported_learners():
    torch.manual_seed(0)
    plain = hypercl.ContinualLearner(hypercl.DirectWeights(tiny_mlp()), strategy="none")
    with pytest.raises(ValueError, match="hypernetworks"):
        SeedEnsemble([plain])
    bn = hypercl.ContinualLearner(tiny_hnet(tiny_mlp(bn=True)), strategy="hnet")
    with pytest.raises(ValueError, match="buffers"):
        SeedEnsemble([bn])
    a = hypercl.ContinualLearner(tiny_hnet(), strategy="hnet", lr=1e-3)
    b = hypercl.ContinualLearner(tiny_hnet(), strategy="hnet", lr=1e-2)
    with pytest.raises(ValueError, match="share configuration"):
        SeedEnsemble([a, b])


def test_ensemble_names_the_seed_of_a_non_finite_loss():
    ens = SeedEnsemble.build(_make("chunked_mlp", "none", {}), [0, 1])
    with torch.no_grad():
        next(ens.members[1].hnet.generator.parameters()).fill_(float("nan"))
    train = conflicting_tasks(n=64)[0][0]
    with pytest.raises(hypercl.NonFiniteLossError, match="seed 1 at task 0"):
        ens.fit_task(0, train, iterations=3)
