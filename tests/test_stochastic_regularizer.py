"""reg_tasks_per_step=K (a random subset of old tasks per step, unbiased for eq. 2/3) and targets="online"."""

import itertools
import json
import sys
from pathlib import Path

import pytest
import torch

import hypercl
from hypercl.experiments.configs import BENCHMARK_CONFIGS, HNET_METHODS, method_config
from hypercl.experiments.identity import ConfigError, run_config
from hypercl.regularizers import hnet_output_regularizer
from hypercl.strategies.output_regularizers import draw_old_tasks
from helpers import tiny_hnet

T_OLD = 5


def _learner(strategy="hnet", tasks=T_OLD, **kw):
    """A learner about to learn task ``tasks`` after ``tasks`` short tasks, its hypernetwork moved off the targets."""
    torch.manual_seed(0)
    learner = hypercl.ContinualLearner(tiny_hnet(), strategy=strategy, strategy_kwargs={"beta": 0.3, **kw},
                                       batch_size=32, seed=5)
    g = torch.Generator().manual_seed(1)
    for t in range(tasks):
        x, y = torch.randn(64, 10, generator=g), torch.randint(0, 2, (64,), generator=g)
        learner.fit_task(t, (x, y), iterations=2)
    learner.register_task(tasks, 2)
    learner.strategy.before_task(learner, tasks)
    learner.optimizer = learner.make_task_optimizer()
    with torch.no_grad():  # move the hypernetwork so that every old task's term is non-zero
        for p in learner.hnet.generator.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return learner


def _direct_full(learner, fisher=None):
    """Eq. 2 (or eq. 3 with ``fisher``) over ALL old tasks, from the generated weights, term by term."""
    st, hnet = learner.strategy, learner.hnet
    terms = []
    for i, t in enumerate(st.old_ids):
        w = 1.0 if fisher is None else fisher[t]
        terms.append((w * (st.targets[i] - hnet.generate_flat([t])[0]) ** 2).sum())
    return st.beta / len(st.old_ids) * torch.stack(terms).sum(), torch.stack(terms)


@pytest.mark.parametrize("strategy,kw", [("hnet", {}), ("iwr", {"fisher_samples": 32})])
def test_mean_over_draws_equals_the_full_regulariser(strategy, kw):
    learner = _learner(strategy, reg_tasks_per_step=2, **kw)
    st = learner.strategy
    fisher = st.fisher if strategy == "iwr" else None
    with torch.no_grad():
        full, terms = _direct_full(learner, fisher)
        # exact unbiasedness: every K-subset is equally likely, and the average over all of them is eq. 2/3
        subsets = list(itertools.combinations(range(T_OLD), 2))
        over_subsets = torch.stack([st.beta / 2 * terms[list(s)].sum() for s in subsets]).mean()
        assert torch.allclose(over_subsets, full, rtol=1e-5)
        # the learner's own draws: 1500 steps, the mean within 5 standard errors of the full value
        values = torch.stack([st.penalty(learner, T_OLD) for _ in range(1500)])
    se = values.std() / len(values) ** 0.5
    assert values.std() > 0  # the draws do vary
    assert abs(values.mean() - full) < 5 * se, (values.mean().item(), full.item(), se.item())
    # each value is one of the subset values (the drawn tasks' terms, averaged over K)
    subset_values = torch.stack([st.beta / 2 * terms[list(s)].sum() for s in subsets])
    assert all(torch.isclose(v, subset_values, rtol=1e-5).any() for v in values[:50])


@pytest.mark.parametrize("k", [T_OLD, T_OLD + 3])
def test_k_at_least_the_old_tasks_is_exactly_the_full_regulariser(k):
    full = _learner(reg_tasks_per_step=None)
    sub = _learner(reg_tasks_per_step=k)
    before = sub.rng.get_state()
    with torch.no_grad():
        assert torch.equal(sub.strategy.penalty(sub, T_OLD), full.strategy.penalty(full, T_OLD))
    assert torch.equal(sub.rng.get_state(), before)  # nothing drawn


def test_k_none_is_the_paper_regulariser_bit_for_bit():
    learner = _learner()
    st, hnet = learner.strategy, learner.hnet
    before = learner.rng.get_state()
    with torch.no_grad():
        # the formula as computed before the option existed: all old tasks in one call against the stored targets
        raw_targets, scale_sq = hnet.to_raw_space(st.targets)
        expected = hnet_output_regularizer(hnet.generate_raw(st.old_ids), raw_targets, st.beta, scale_sq)
        assert torch.equal(st.penalty(learner, T_OLD), expected)
        assert torch.allclose(expected, _direct_full(learner)[0], rtol=1e-5)
    assert torch.equal(learner.rng.get_state(), before)


def test_only_the_drawn_tasks_are_generated(monkeypatch):
    learner = _learner(reg_tasks_per_step=2)
    calls = []
    original = learner.hnet.generate_raw

    def spy(ids, *a, **k):
        calls.append(list(ids))
        return original(ids, *a, **k)

    monkeypatch.setattr(learner.hnet, "generate_raw", spy)
    state = learner.rng.get_state()
    learner.strategy.penalty(learner, T_OLD)
    learner.rng.set_state(state)
    drawn = draw_old_tasks(T_OLD, 2, learner.rng)
    assert calls == [[learner.strategy.old_ids[i] for i in drawn.tolist()]]  # one batched call, the K drawn only


@pytest.mark.parametrize("strategy,kw", [("hnet", {}), ("iwr", {"fisher_samples": 32}), ("hnet", {"lookahead": True})])
@pytest.mark.parametrize("k", [None, 2])
def test_online_targets_give_the_stored_value(strategy, kw, k):
    stored = _learner(strategy, reg_tasks_per_step=k, **kw)
    online = _learner(strategy, reg_tasks_per_step=k, targets="online", **kw)
    assert online.strategy.targets is None and online.strategy.snapshot is not None
    if kw.get("lookahead"):
        x, y = torch.randn(16, 10), torch.randint(0, 2, (16,))
        for lr in (stored, online):
            lr.optimizer.zero_grad()
            lr.task_loss(T_OLD, lr.task_logits(T_OLD, x), y).backward()
    for _ in range(3):  # the same draws (same seed), the same values
        a, b = stored.strategy.penalty(stored, T_OLD), online.strategy.penalty(online, T_OLD)
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-8)
        ga = torch.autograd.grad(a, list(stored.hnet.generator.parameters()))
        gb = torch.autograd.grad(b, list(online.hnet.generator.parameters()))
        # the targets differ by float rounding ((Θ* − offset)/gain vs the raw output itself): relative to the largest
        assert all((x - y).abs().max() <= 1e-4 * x.abs().max() for x, y in zip(ga, gb))


def test_online_targets_hold_the_hypernetwork_not_t_times_n():
    stored = _learner(reg_tasks_per_step=2)
    online = _learner(reg_tasks_per_step=2, targets="online")
    for lr in (stored, online):
        lr.strategy.penalty(lr, T_OLD)  # stored: builds the raw-space copies once
    n = stored.hnet.target.num_params
    hnet_bytes = sum(p.numel() * 4 for p in online.hnet.parameters())
    assert online.strategy.held_bytes() == hnet_bytes  # the frozen copy Θ*_h, nothing per task
    # targets and their raw-space copy, (T-1) x N and (T-1) x P; the raw-space weight gain² once (P), shared
    padded = stored.hnet.plan.n_chunks * stored.hnet.plan.chunk_size
    assert stored.strategy.held_bytes() == (T_OLD * n + T_OLD * padded + padded) * 4


@pytest.mark.parametrize("kw", [{"reg_tasks_per_step": 1}, {"reg_tasks_per_step": 2, "targets": "online"}])
def test_resume_with_k_is_bit_exact(tmp_path, kw):
    from helpers import conflicting_tasks

    tasks = conflicting_tasks()
    tests = [te for _, te in tasks] + [tasks[0][1]]

    def make():
        torch.manual_seed(0)
        model = hypercl.models.mlp(10, [16], 2)
        return hypercl.ContinualLearner(tiny_hnet(model), strategy="iwr", lr=1e-2, seed=3,
                                        strategy_kwargs={"beta": 0.05, "fisher_samples": 100, **kw})

    seq = [tasks[0][0], tasks[1][0], tasks[2][0], tasks[0][0]]  # four tasks: three old ones at the last
    full = make()
    for t, train in enumerate(seq):
        full.fit_task(t, train, iterations=20)
        full.evaluate(tests)
    part = make()
    for t in range(2):
        part.fit_task(t, seq[t], iterations=20)
        part.evaluate(tests)
    part.save(tmp_path / "ckpt.pt")
    torch.manual_seed(1234)  # the checkpoint must restore every random state, the draws' generator included
    resumed = hypercl.ContinualLearner.load(tmp_path / "ckpt.pt")
    assert resumed.strategy.reg_tasks_per_step == kw["reg_tasks_per_step"]
    for t in (2, 3):
        resumed.fit_task(t, seq[t], iterations=20)
        resumed.evaluate(tests)
    assert resumed.results() == full.results()
    assert torch.equal(resumed.hnet.generate_flat([0, 1, 2, 3]), full.hnet.generate_flat([0, 1, 2, 3]))


def test_a_different_learner_seed_draws_other_tasks():
    a, b = _learner(reg_tasks_per_step=1), _learner(reg_tasks_per_step=1)
    b.rng.manual_seed(99)
    da = [draw_old_tasks(T_OLD, 1, a.rng).item() for _ in range(20)]
    db = [draw_old_tasks(T_OLD, 1, b.rng).item() for _ in range(20)]
    assert da != db and len(set(da)) > 1


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "3"])
def test_bad_k_is_refused(bad):
    with pytest.raises(ValueError, match="reg_tasks_per_step"):
        hypercl.strategies.HNETRegularizer(reg_tasks_per_step=bad)
    with pytest.raises(ValueError, match="targets"):
        hypercl.strategies.IWRegularizer(targets="fresh")


# ---------------------------------------------------------------------- config, identity, CLI
def test_todays_run_identities_are_unchanged():
    for bench in BENCHMARK_CONFIGS:
        for method in HNET_METHODS:
            base = run_config(method_config, bench, method).fingerprint()
            assert run_config(method_config, bench, method, reg_tasks_per_step=None, reg_targets=None).fingerprint() \
                == base
            if HNET_METHODS[method][1] in ("hnet", "iwr"):
                k8 = run_config(method_config, bench, method, reg_tasks_per_step=8)
                assert k8.fingerprint() != base and k8.to_json()["strategy"]["kwargs"]["reg_tasks_per_step"] == 8
    # the committed fidelity records: their identities still hash from today's configs
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import fidelity

    records = sorted((Path(__file__).resolve().parents[1] / "docs" / "fidelity" / "runs").glob("*.json"))
    assert records
    for path in records:
        rec = json.loads(path.read_text())
        if rec.get("kind") == "infer":  # task-inference records hash criterion and split too (tests/test_config.py)
            continue
        assert fidelity.identity(fidelity.variant_config(rec["variant"])) == rec["identity"], path.name


def test_config_refuses_bad_values_and_ignores_methods_without_a_regulariser():
    with pytest.raises(ConfigError, match="--reg-tasks-per-step"):
        run_config(method_config, "split_mnist", "hnet", reg_tasks_per_step=0)
    with pytest.raises(ConfigError, match="--reg-targets"):
        run_config(method_config, "split_mnist", "hnet", reg_targets="fresh")
    grow = method_config("split_mnist", "lstm_net_grow", reg_tasks_per_step=8, reg_targets="online")
    assert grow == method_config("split_mnist", "lstm_net_grow")


def test_cli_refuses_bad_k_in_one_line(tmp_path, capsys):
    from hypercl.cli import main

    args = ["run", "--benchmark", "split_mnist", "--method", "hnet", "--quick", "--out", str(tmp_path)]
    assert main([*args, "--reg-tasks-per-step", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--reg-tasks-per-step must be at least 1" in err
    assert main([*args, "--reg-tasks-per-step", "2", "--parallel-seeds"]) == 2
    assert "--parallel-seeds" in capsys.readouterr().err
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())
