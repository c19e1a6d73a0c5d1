"""Plain-network baselines (hypercl.baselines): fine-tuning, EWC, Online EWC, SI."""

import pytest
import torch

import hypercl
import hypercl.baselines as bl
from hypercl.strategies import STRATEGIES, get_strategy
from helpers import conflicting_tasks, tiny_hnet, tiny_mlp

TASKS = conflicting_tasks()
TESTS = [te for _, te in TASKS]
NAMES = ("finetune", "ewc", "online_ewc", "si")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These problems are tiny: intra-op threads only add contention on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def direct_learner(strategy, scenario="cl1", hidden=8, **kw):
    kw.setdefault("batch_size", 64)
    kw.setdefault("lr", 2e-2)
    return hypercl.ContinualLearner(hypercl.DirectWeights(tiny_mlp(hidden=hidden, d_out=6)), strategy=strategy,
                                    scenario=scenario, **kw)


# ---------------------------------------------------------------------------------------------- registry, arguments
def test_registered_by_name_and_paper_values_build():
    for name in NAMES:
        assert STRATEGIES[name] is bl.BASELINES[name]
    assert isinstance(get_strategy("ewc", lambda_=5000), bl.EWC)
    learner = hypercl.ContinualLearner(hypercl.DirectWeights(tiny_mlp(d_out=6)), strategy="ewc",
                                       strategy_kwargs={"lambda_": 5000})
    assert learner.strategy.lambda_ == 5000.0
    for bench, methods in bl.PAPER_HYPERPARAMETERS.items():
        assert set(methods) == {"ewc", "online_ewc", "si"}
        for method, scenarios in methods.items():
            assert set(scenarios) == {"cl1", "cl2", "cl3"}
            for scen in scenarios:
                kw = bl.paper_hyperparameters(bench, method, scen)
                assert get_strategy(method, **kw).config().items() >= kw.items()
    assert bl.PAPER_HYPERPARAMETERS["split_mnist"]["online_ewc"]["cl2"] == {
        "lambda_": 1e8, "gamma": 0.7, "fisher_samples": None, "fisher_labels": "predicted"}
    with pytest.raises(ValueError, match="no reference hyperparameters"):
        bl.paper_hyperparameters("CIFAR", "ewc", "cl1")


@pytest.mark.parametrize("cls,kw", [(bl.EWC, {"lambda_": -1.0}), (bl.EWC, {"lambda_": float("nan")}),
                                    (bl.EWC, {"fisher_samples": 0}), (bl.EWC, {"fisher_labels": "sampled"}),
                                    (bl.OnlineEWC, {"gamma": 1.5}), (bl.SI, {"c": -1.0}), (bl.SI, {"xi": 0.0})])
def test_bad_arguments(cls, kw):
    with pytest.raises(ValueError):
        cls(**kw)


@pytest.mark.parametrize("name", NAMES)
def test_attach_to_a_hypernetwork_is_a_clear_error(name):
    with pytest.raises(ValueError, match="DirectWeights"):
        hypercl.ContinualLearner(tiny_hnet(), strategy=name)


# ---------------------------------------------------------------------------------------------- EWC
def test_ewc_penalty_equals_hand_computation_and_stores_theta_and_fisher():
    torch.manual_seed(0)
    learner = direct_learner(bl.EWC(lambda_=3.0))
    st = learner.strategy
    assert st.penalty(learner, 0) is None
    for t in range(2):
        learner.fit_task(t, TASKS[t][0], iterations=30, num_classes=2)
        w = learner.hnet.weights.detach()
        assert st.task_ids == list(range(t + 1)) and st.means.shape == st.fishers.shape == (t + 1, w.numel())
        assert torch.equal(st.means[t], w)
        # F_t is the raw (unnormalised) diagonal Fisher of the task, at the weights right after it
        assert torch.allclose(st.fishers[t], learner.task_fisher(t, TASKS[t][0], normalize=False), rtol=1e-5, atol=1e-9)
    assert st.fishers.mean() != pytest.approx(1.0)  # not normalised
    # known anchors and Fisher: λ/2 Σ_t Σ_i F_t,i (θ_i − θ*_t,i)²
    n = learner.hnet.weights.numel()
    st.means = torch.randn(2, n)
    st.fishers = torch.rand(2, n)
    theta = learner.hnet.weights.detach()
    hand = sum(0.5 * 3.0 * float(((st.fishers[t] * (theta - st.means[t]) ** 2)).sum()) for t in range(2))
    pen = st.penalty(learner, 2)
    assert pen.item() == pytest.approx(hand, rel=1e-5)
    learner.hnet.weights.grad = None
    pen.backward()  # the gradient reaches the shared weights: λ Σ_t F_t (θ − θ*_t)
    grad = 3.0 * (st.fishers * (theta - st.means)).sum(0)
    assert torch.allclose(learner.hnet.weights.grad, grad, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("scenario", ["cl1", "cl3"])
def test_predicted_label_fisher(scenario):
    torch.manual_seed(0)
    learner = direct_learner(bl.EWC(lambda_=1.0, fisher_labels="predicted"), scenario=scenario)
    for t in range(2):
        learner.fit_task(t, TASKS[t][0], iterations=20, num_classes=2)
    x, y = TASKS[1][0]
    with torch.no_grad():
        logits = learner.task_logits(1, x)
    if scenario == "cl1":  # per-task head: local labels over the task's own units
        pred = logits[:, 2:4].argmax(-1)
    else:  # expanding head over all classes seen: the global class minus the task's offset
        pred = logits[:, :4].argmax(-1) - 2
    assert not torch.equal(pred, y)  # the predictions differ from the labels somewhere
    manual = learner.task_fisher(1, (x, pred), normalize=False)
    assert torch.allclose(learner.strategy.fishers[1], manual, rtol=1e-5, atol=1e-9)


def test_online_ewc_accumulates_fisher_with_gamma_and_penalty_equals_hand_computation():
    torch.manual_seed(0)
    gamma, lam = 0.5, 2.0
    learner = direct_learner(bl.OnlineEWC(lambda_=lam, gamma=gamma))
    st = learner.strategy
    learner.fit_task(0, TASKS[0][0], iterations=30, num_classes=2)
    f0 = learner.task_fisher(0, TASKS[0][0], normalize=False)
    assert torch.allclose(st.fisher, f0, rtol=1e-5, atol=1e-9)
    learner.fit_task(1, TASKS[1][0], iterations=30, num_classes=2)
    f1 = learner.task_fisher(1, TASKS[1][0], normalize=False)
    assert torch.allclose(st.fisher, gamma * f0 + f1, rtol=1e-5, atol=1e-9)  # F̃ ← γ F̃ + F_t
    assert torch.equal(st.mean, learner.hnet.weights.detach()) and st.num_consolidated == 2
    n = learner.hnet.weights.numel()
    st.mean, st.fisher = torch.randn(n), torch.rand(n)
    theta = learner.hnet.weights.detach()
    # λ/2 Σ_i γ F̃_i (θ_i − θ*_i)²  (γ applied in the penalty as in van de Ven & Tolias' ewc_loss)
    hand = 0.5 * lam * gamma * float((st.fisher * (theta - st.mean) ** 2).sum())
    assert st.penalty(learner, 2).item() == pytest.approx(hand, rel=1e-5)


# ---------------------------------------------------------------------------------------------- SI
def test_si_importance_equals_manual_path_integral_with_plain_sgd():
    torch.manual_seed(0)
    lr, c, xi = 0.1, 0.7, 0.1
    model = tiny_mlp(hidden=8, d_out=4)  # multi-head: 2 tasks x 2 classes on a shared hidden layer
    learner = hypercl.ContinualLearner(hypercl.DirectWeights(model), strategy=bl.SI(c=c, xi=xi), scenario="cl1",
                                       optimizer="sgd", lr=lr, batch_size=32)
    st = learner.strategy
    w = learner.hnet.weights
    omega_total = torch.zeros_like(w)
    for t in range(2):
        start = w.detach().clone()
        grads, thetas = [], [start]

        def record(it, loss):  # called after after_step: w.grad is the gradient the step used
            grads.append(w.grad.detach().clone())
            thetas.append(w.detach().clone())

        learner.fit_task(t, TASKS[t][0], iterations=25, num_classes=2, callback=record)
        # ω = Σ_k −g_k · Δθ_k, with plain SGD Δθ_k = −lr g_k, so ω = lr Σ_k g_k²
        omega = sum(-g * (b - a) for g, a, b in zip(grads, thetas[:-1], thetas[1:]))
        assert torch.allclose(omega, lr * sum(g * g for g in grads), rtol=1e-4, atol=1e-7)
        omega_total = omega_total + omega / ((w.detach() - start) ** 2 + xi)
        assert torch.allclose(st.omega_sum, omega_total, rtol=1e-4, atol=1e-7)
        assert torch.equal(st.anchor, w.detach())
        assert torch.count_nonzero(st.omega) == 0  # ω reset for the next task
    # the penalty at weights away from the anchor
    theta = w.detach() + 0.01 * torch.randn_like(w)
    with torch.no_grad():
        w.copy_(theta)
    hand = c * float((st.omega_sum * (theta - st.anchor) ** 2).sum())  # c Σ_i Ω_i (θ_i − θ*_i)²
    assert st.penalty(learner, 2).item() == pytest.approx(hand, rel=1e-5)


def test_si_uses_the_total_loss_gradient():
    """The gradient SI accumulates is the one the optimizer used: task loss + SI penalty (van de Ven & Tolias)."""
    torch.manual_seed(0)
    c = 100.0
    learner = hypercl.ContinualLearner(hypercl.DirectWeights(tiny_mlp(hidden=8, d_out=4)), strategy=bl.SI(c=c),
                                       scenario="cl1", optimizer="sgd", lr=0.05, batch_size=400)
    learner.fit_task(0, TASKS[0][0], iterations=20, num_classes=2)
    st, w = learner.strategy, learner.hnet.weights
    omega0, anchor0 = st.omega_sum.clone(), st.anchor.clone()
    x, y = TASKS[1][0]  # 400 samples: every step is one full batch
    thetas, grads = [w.detach().clone()], []

    def record(it, loss):  # after the step: the gradient it used, and the weights it reached
        grads.append(w.grad.detach().clone())
        thetas.append(w.detach().clone())

    learner.fit_task(1, (x, y), iterations=4, num_classes=2, callback=record)
    for k in range(1, 4):
        wk = thetas[k].clone().requires_grad_(True)
        task_grad = torch.autograd.grad(learner.task_loss(1, learner.target(learner.target.unflatten(wk), x), y), wk)[0]
        total_grad = task_grad + 2 * c * omega0 * (thetas[k] - anchor0)
        assert torch.allclose(grads[k], total_grad, rtol=1e-4, atol=1e-6), k
        assert not torch.allclose(grads[k], task_grad, rtol=1e-3, atol=1e-5), k


# ---------------------------------------------------------------------------------------------- a continual run
def run_sequence(strategy, seed, **kw):
    torch.manual_seed(seed)
    learner = direct_learner(strategy, strategy_kwargs=kw, seed=seed)
    for t, (train, _) in enumerate(TASKS):
        learner.fit_task(t, train, iterations=200, num_classes=2)
        learner.evaluate(TESTS)
    return learner.results()


# Measured (hidden 8, Adam lr 2e-2, 200 steps/task, seeds 0-5), backward transfer:
#   finetune               -0.106 -0.085 -0.080 -0.151 -0.084 -0.125
#   ewc λ=100              +0.003  0.000  0.000 +0.003 -0.006 +0.001
#   online_ewc λ=100 γ=0.9 +0.001 +0.001 -0.003 +0.001 -0.003 +0.003
#   si c=1                 -0.010 -0.008 -0.001 -0.020 -0.014 +0.001
@pytest.mark.parametrize("seed", [0, 1])
def test_finetune_forgets_and_ewc_online_ewc_si_forget_much_less(seed):
    fine = run_sequence("finetune", seed)
    assert fine["during_average"] > 0.95  # each task was learned
    assert fine["backward_transfer"] < -0.06  # and then partly forgotten
    for name, kw in [("ewc", {"lambda_": 100.0}), ("online_ewc", {"lambda_": 100.0, "gamma": 0.9}), ("si", {"c": 1.0})]:
        r = run_sequence(name, seed, **kw)
        assert r["during_average"] > 0.85, name  # still learns the new tasks
        assert r["backward_transfer"] > -0.03, (name, r["backward_transfer"])
        assert r["backward_transfer"] - fine["backward_transfer"] > 0.05, name
        assert r["final_average"] > fine["final_average"], name


# ---------------------------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("name,kw", [("finetune", {}), ("ewc", {"lambda_": 10.0, "fisher_samples": 100}),
                                     ("online_ewc", {"lambda_": 10.0, "gamma": 0.8, "fisher_labels": "predicted"}),
                                     ("si", {"c": 0.5, "xi": 0.2})])
def test_checkpoint_round_trip_keeps_strategy_state(tmp_path, name, kw):
    torch.manual_seed(0)
    learner = direct_learner(name, strategy_kwargs=kw)
    for t in range(2):
        learner.fit_task(t, TASKS[t][0], iterations=20, num_classes=2)
    learner.save(tmp_path / "b.pt")
    back = hypercl.ContinualLearner.load(tmp_path / "b.pt", model=tiny_mlp(hidden=8, d_out=6))
    assert type(back.strategy) is type(learner.strategy)
    assert back.strategy.config() == learner.strategy.config()
    a, b = learner.strategy.state_dict(), back.strategy.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], torch.Tensor):
            assert torch.equal(a[k], b[k]), k
        else:
            assert a[k] == b[k], k
    pa, pb = learner.strategy.penalty(learner, 2), back.strategy.penalty(back, 2)
    assert (pa is None) == (name == "finetune")
    if pa is not None:
        assert torch.equal(pa, pb)
    back.fit_task(2, TASKS[2][0], iterations=5, num_classes=2)  # and training goes on
