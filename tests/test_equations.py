"""Eq. 2, eq. 3 and eq. 4 against direct hand computations."""

import pytest
import torch
import torch.nn.functional as F

import hypercl
from hypercl.regularizers import (diagonal_empirical_fisher, hnet_output_regularizer,
                                  importance_weighted_regularizer, normalize_fisher)
from hypercl.strategies import candidate_step
from helpers import tiny_hnet, tiny_mlp


def test_eq2_matches_direct_sum():
    cur, tgt = torch.randn(3, 20), torch.randn(3, 20)
    direct = 0.5 / 3 * sum(((tgt[t] - cur[t]) ** 2).sum() for t in range(3))
    assert torch.allclose(hnet_output_regularizer(cur, tgt, 0.5), direct)


def test_eq3_matches_direct_sum_and_reduces_to_eq2():
    cur, tgt, fi = torch.randn(2, 15), torch.randn(2, 15), torch.rand(2, 15)
    direct = 0.1 / 2 * sum(fi[t, i] * (tgt[t, i] - cur[t, i]) ** 2 for t in range(2) for i in range(15))
    assert torch.allclose(importance_weighted_regularizer(cur, tgt, fi, 0.1), direct)
    ones = torch.ones_like(fi)
    assert torch.allclose(importance_weighted_regularizer(cur, tgt, ones, 0.1), hnet_output_regularizer(cur, tgt, 0.1))


@pytest.mark.parametrize("weighted", [False, True])
def test_fused_penalty_gradient_equals_autograd_of_direct_formula(weighted):
    g = torch.Generator().manual_seed(3)
    cur = torch.randn(3, 50, generator=g, dtype=torch.float64, requires_grad=True)
    tgt, fi = torch.randn(3, 50, generator=g, dtype=torch.float64), torch.rand(3, 50, generator=g, dtype=torch.float64)
    w = fi if weighted else torch.ones_like(fi)
    fused = importance_weighted_regularizer(cur, tgt, fi, 0.3) if weighted else hnet_output_regularizer(cur, tgt, 0.3)
    (g_fused,) = torch.autograd.grad(fused, cur)
    direct = 0.3 / 3 * (w * (tgt - cur) ** 2).sum()
    (g_direct,) = torch.autograd.grad(direct, cur)
    assert torch.allclose(fused, direct) and torch.allclose(g_fused, g_direct)
    assert torch.autograd.gradcheck(lambda c: hnet_output_regularizer(c, tgt, 0.3), (cur,))


def test_fused_penalty_under_vmap_matches_per_member_values_and_gradients():
    from torch.func import grad, vmap
    cur, tgt, fi = torch.randn(4, 2, 30), torch.randn(4, 2, 30), torch.rand(4, 2, 30)
    fn = lambda c, t, f: importance_weighted_regularizer(c, t, f, 0.1)  # noqa: E731
    batched = vmap(grad(fn))(cur, tgt, fi)
    for k in range(4):
        assert torch.allclose(batched[k], grad(fn)(cur[k], tgt[k], fi[k]))
        assert torch.allclose(vmap(fn)(cur, tgt, fi)[k], fn(cur[k], tgt[k], fi[k]))


def test_regularizer_shape_errors():
    with pytest.raises(ValueError, match=r"\(T-1, N\)"):
        hnet_output_regularizer(torch.zeros(2, 3), torch.zeros(2, 4), 1.0)
    with pytest.raises(ValueError, match="fisher has shape"):
        importance_weighted_regularizer(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3), 1.0)
    with pytest.raises(ValueError, match="beta"):
        hypercl.HNETRegularizer(beta=-1)


def test_fisher_equals_explicit_per_sample_autograd_loop():
    model = tiny_mlp(d_in=5, hidden=7, d_out=3).eval()
    target = hypercl.wrap(model)
    params = {n: torch.randn(s) * 0.5 for n, s in target.param_shapes.items()}
    x, y = torch.randn(11, 5), torch.randint(0, 3, (11,))
    got = diagonal_empirical_fisher(target, params, [(x[:4], y[:4]), (x[4:], y[4:])], F.cross_entropy)
    expected = {n: torch.zeros(s) for n, s in target.param_shapes.items()}
    for i in range(11):
        p = {n: v.clone().requires_grad_(True) for n, v in params.items()}
        loss = F.cross_entropy(target(p, x[i : i + 1]), y[i : i + 1])
        grads = torch.autograd.grad(loss, list(p.values()))
        for n, g in zip(p, grads):
            expected[n] += g ** 2 / 11
    for n in expected:
        assert torch.allclose(got[n], expected[n], atol=1e-6), n


def test_fisher_normalisation():
    f = torch.rand(100) * 5
    assert normalize_fisher(f).mean().item() == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(normalize_fisher(f), f / f.mean())
    assert torch.equal(normalize_fisher(torch.zeros(4)), torch.ones(4))


def _learner_after_two_tasks(strategy, **kw):
    torch.manual_seed(0)
    learner = hypercl.ContinualLearner(tiny_hnet(), strategy=strategy, strategy_kwargs=kw, batch_size=32)
    for t in range(2):
        x, y = torch.randn(64, 10), torch.randint(0, 2, (64,))
        learner.fit_task(t, (x, y), iterations=5)
    learner.register_task(2, 2)
    learner.strategy.before_task(learner, 2)
    learner.optimizer = learner.make_task_optimizer()
    return learner


def test_hnet_strategy_penalty_is_eq2_over_all_old_tasks():
    learner = _learner_after_two_tasks("hnet", beta=0.3)
    hnet, st = learner.hnet, learner.strategy
    assert st.old_ids == [0, 1] and st.targets.shape == (2, hnet.target.num_params)
    with torch.no_grad():  # move the hypernetwork so the penalty is not zero
        for p in hnet.generator.parameters():
            p.add_(0.01 * torch.randn_like(p))
    direct = 0.3 / 2 * sum(((st.targets[t] - hnet.generate_flat([t])[0]) ** 2).sum() for t in range(2))
    assert torch.allclose(st.penalty(learner, 2), direct, rtol=1e-5)


def test_iwr_penalty_uses_each_tasks_fisher():
    learner = _learner_after_two_tasks("iwr", beta=0.2, fisher_samples=32)
    hnet, st = learner.hnet, learner.strategy
    assert set(st.fisher) == {0, 1}
    for f in st.fisher.values():
        assert f.shape == (hnet.target.num_params,) and f.mean().item() == pytest.approx(1.0, abs=1e-5)
    with torch.no_grad():
        for p in hnet.generator.parameters():
            p.add_(0.01 * torch.randn_like(p))
    direct = 0.2 / 2 * sum((st.fisher[t] * (st.targets[t] - hnet.generate_flat([t])[0]) ** 2).sum() for t in range(2))
    assert torch.allclose(st.penalty(learner, 2), direct, rtol=1e-5)


def test_lookahead_evaluates_old_weights_at_the_candidate_step():
    learner = _learner_after_two_tasks("hnet", beta=1.0, lookahead=True)
    hnet, st = learner.hnet, learner.strategy
    x, y = torch.randn(16, 10), torch.randint(0, 2, (16,))
    learner.optimizer.zero_grad()
    learner.task_loss(2, learner.task_logits(2, x), y).backward()
    steps = candidate_step(learner.optimizer)
    assert steps, "the task loss must give a candidate step"
    reg = st.penalty(learner, 2)
    saved = {p: p.detach().clone() for p in steps}
    with torch.no_grad():
        for p, d in steps.items():
            p.add_(d)
        shifted = hnet.generate_flat([0, 1])
        for p, v in saved.items():
            p.copy_(v)
    assert torch.allclose(reg, hnet_output_regularizer(shifted, st.targets, 1.0), rtol=1e-5)
    assert not torch.allclose(reg, hnet_output_regularizer(hnet.generate_flat([0, 1]), st.targets, 1.0))


@pytest.mark.parametrize("opt", ["adam", "sgd"])
def test_candidate_step_is_the_step_the_optimizer_takes(opt):
    p = torch.nn.Parameter(torch.randn(5))
    o = hypercl.learner.OPTIMIZERS[opt]([p], lr=0.1)
    for _ in range(3):  # give Adam some history
        o.zero_grad()
        (p ** 2).sum().backward()
        o.step()
    o.zero_grad()
    (p ** 3).sum().backward()
    predicted = candidate_step(o)[p]
    before = p.detach().clone()
    o.step()
    assert torch.allclose(p.detach() - before, predicted, atol=1e-6)
