"""The continual learner: forgetting with and without protection, GROW exactness, BN per task, checkpoints."""

import os

import pytest
import torch

import hypercl
from hypercl.scenarios import infer_task_by_entropy, masked_entropy
from helpers import conflicting_tasks, tiny_hnet, tiny_mlp

TASKS = conflicting_tasks()
TESTS = [te for _, te in TASKS]


def run_sequence(strategy, seed=0, **kw):
    torch.manual_seed(seed)
    learner = hypercl.ContinualLearner(tiny_hnet(), strategy=strategy, strategy_kwargs=kw, batch_size=64,
                                       lr=1e-2, seed=seed)
    snapshots = []
    for t, (train, _) in enumerate(TASKS):
        learner.fit_task(t, train, iterations=150)
        learner.evaluate(TESTS)
        with torch.no_grad():
            snapshots.append(learner.hnet.generate_flat(list(range(t + 1))).clone())
    return learner, snapshots


@pytest.mark.parametrize("seed", [0, 1])
def test_no_regularizer_forgets_conflicting_tasks(seed):
    learner, _ = run_sequence("none", seed)
    r = learner.results()
    assert r["during_average"] > 0.9  # each task was learned
    assert r["backward_transfer"] < -0.15  # and then forgotten
    assert min(r["matrix"][-1][:2]) < 0.75


@pytest.mark.parametrize("strategy,kw", [("hnet", {"beta": 0.05}), ("iwr", {"beta": 0.05, "fisher_samples": 200}),
                                         ("hnet", {"beta": 0.05, "lookahead": True})])
def test_output_regularizers_keep_old_tasks(strategy, kw):
    learner, _ = run_sequence(strategy, **kw)
    r = learner.results()
    assert r["backward_transfer"] > -0.05
    assert min(r["matrix"][-1]) > 0.9


@pytest.mark.parametrize("generator", ["lstm", "gru"])
def test_grow_keeps_old_generated_weights_bit_identical(generator):
    torch.manual_seed(0)
    learner = hypercl.ContinualLearner(tiny_hnet(generator=generator), strategy="grow", batch_size=64, lr=1e-2)
    weights = []
    for t, (train, _) in enumerate(TASKS):
        learner.fit_task(t, train, iterations=100)
        learner.evaluate(TESTS)
        with torch.no_grad():  # one call per task: the same call shape before and after
            weights.append([learner.hnet.generate_flat([k])[0].clone() for k in range(t + 1)])
    for t in range(3):
        for later in range(t + 1, 3):
            assert torch.equal(weights[t][t], weights[later][t]), (t, later)
    r = learner.results()
    assert r["backward_transfer"] == 0.0 and min(r["matrix"][-1]) > 0.9
    # after the first task only the new task's own weights and embedding train
    gen = learner.hnet.generator
    assert not any(p.requires_grad for p in gen.shared_parameters())


def test_grow_needs_a_recurrent_generator():
    with pytest.raises(ValueError, match="recurrent generator"):
        hypercl.ContinualLearner(tiny_hnet(generator="chunked_mlp"), strategy="grow")


def test_old_task_embeddings_are_frozen_and_new_one_learns_from_task_loss_only():
    learner, _ = run_sequence("hnet", beta=0.05)
    emb = learner.hnet.task_embeddings
    assert not any(e.requires_grad for e in emb)
    learner.register_task(3, 2)
    learner.strategy.before_task(learner, 3)
    learner.hnet.generator.zero_grad()
    learner.strategy.penalty(learner, 3).backward()
    assert emb[3].grad is None  # the regulariser never reaches the new embedding


def test_entropy_inference_is_per_sample():
    logits = torch.tensor([[[5.0, -5.0], [0.1, 0.0]], [[0.0, 0.1], [-6.0, 6.0]]])  # (T=2, B=2, O=2)
    mask = torch.ones(2, 2, dtype=torch.bool)
    assert infer_task_by_entropy(logits, mask).tolist() == [0, 1]
    ent = masked_entropy(logits, torch.tensor([[True, False], [True, True]]))
    assert torch.allclose(ent[0], torch.zeros(2))  # one allowed unit: no uncertainty


def test_cl2_cl3_entropy_inference_on_separable_tasks_and_batched_equals_loop():
    """Task t's inputs lie on axis t (label: the sign): its own weights are confident on them, the other tasks'
    weights see them near their decision boundary, so per-sample entropy inference picks the right task."""
    g = torch.Generator().manual_seed(0)
    tasks = []
    for t in range(3):
        xs, ys = [], []
        for _ in range(2):
            sign = torch.randint(0, 2, (300,), generator=g) * 2 - 1
            x = 0.1 * torch.randn(300, 10, generator=g)
            x[:, t] += 3.0 * sign
            xs.append(x)
            ys.append((sign > 0).long())
        tasks.append(((xs[0], ys[0]), (xs[1], ys[1])))
    torch.manual_seed(0)
    learner = hypercl.ContinualLearner(tiny_hnet(), strategy="hnet", strategy_kwargs={"beta": 0.05}, lr=1e-2)
    for t, (train, _) in enumerate(tasks):
        learner.fit_task(t, train, iterations=150)
    tests = [te for _, te in tasks]
    res = learner.evaluate(tests, scenarios=["cl1", "cl2", "cl3"])
    assert res["cl1"]["task_inference"][0] is None
    # loop over tasks, one target call each, as a reference for the batched path
    with torch.no_grad():
        learner.target.eval()
        for t, (x, y) in enumerate(tests):
            ent = torch.stack([hypercl.scenarios.masked_entropy(
                learner.target(learner.hnet(k), x).unsqueeze(0), torch.ones(1, 2, dtype=torch.bool))[0]
                for k in range(3)])
            picked = ent.argmin(0)
            ti = (picked == t).float().mean().item()
            assert res["cl3"]["task_inference"][t] == pytest.approx(ti)
            assert ti > 0.8
            preds = torch.stack([learner.target(learner.hnet(k), x).argmax(-1) for k in range(3)])
            local = preds[picked, torch.arange(len(y))]
            assert res["cl2"]["accuracy"][t] == pytest.approx((local == y).float().mean().item())
            cl3 = (2 * picked + local == 2 * t + y).float().mean().item()
            assert res["cl3"]["accuracy"][t] == pytest.approx(cl3)


def test_per_task_batchnorm_statistics_are_kept_apart_and_used():
    torch.manual_seed(0)
    hnet = tiny_hnet(tiny_mlp(bn=True))
    learner = hypercl.ContinualLearner(hnet, strategy="hnet", lr=1e-2)
    data = []
    for t in range(2):
        x = torch.randn(200, 10) * (1 + 2 * t) + 3 * t
        data.append((x, (x[:, 0] > 3 * t).long()))
        learner.fit_task(t, data[t], iterations=40)
    b0, b1 = learner.task_buffers[0], learner.task_buffers[1]
    assert not torch.allclose(b0["1.running_mean"], b1["1.running_mean"])
    # the module's own statistics were never touched
    assert torch.equal(hnet.target.module[1].running_mean, torch.zeros(16))
    res = learner.evaluate(data, scenarios=["cl1"], record=False)
    learner.target.eval()
    with torch.no_grad():
        for t in range(2):
            out = learner.target(learner.hnet(t), data[t][0], buffers=learner.task_buffers[t])
            assert res["cl1"]["accuracy"][t] == pytest.approx((out.argmax(-1) == data[t][1]).float().mean().item())


def test_checkpoint_resume_reaches_identical_results(tmp_path):
    def make():
        torch.manual_seed(0)
        model = hypercl.models.mlp(10, [16], 2)
        return hypercl.ContinualLearner(tiny_hnet(model), strategy="iwr",
                                        strategy_kwargs={"beta": 0.05, "fisher_samples": 100}, lr=1e-2, seed=3)

    full = make()
    for t, (train, _) in enumerate(TASKS):
        full.fit_task(t, train, iterations=30)
        full.evaluate(TESTS)
    part = make()
    for t in range(2):
        part.fit_task(t, TASKS[t][0], iterations=30)
        part.evaluate(TESTS)
    part.save(tmp_path / "ckpt.pt")
    torch.manual_seed(1234)  # the checkpoint must restore every random state
    resumed = hypercl.ContinualLearner.load(tmp_path / "ckpt.pt")
    resumed.fit_task(2, TASKS[2][0], iterations=30)
    resumed.evaluate(TESTS)
    assert resumed.results() == full.results()
    assert torch.equal(resumed.hnet.generate_flat([0, 1, 2]), full.hnet.generate_flat([0, 1, 2]))


def test_grow_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    learner = hypercl.ContinualLearner(tiny_hnet(hypercl.models.mlp(10, [16], 2)), strategy="grow", lr=1e-2)
    learner.fit_task(0, TASKS[0][0], iterations=10)
    learner.save(tmp_path / "g.pt")
    back = hypercl.ContinualLearner.load(tmp_path / "g.pt")
    assert back.hnet.generator.growing
    assert torch.equal(back.hnet.generate_flat([0]), learner.hnet.generate_flat([0]))
    assert [p.requires_grad for p in back.hnet.parameters()] == [p.requires_grad for p in learner.hnet.parameters()]


def test_checkpoint_errors(tmp_path):
    learner = hypercl.ContinualLearner(tiny_hnet(hypercl.models.mlp(10, [16], 2)), strategy="hnet")
    learner.fit_task(0, TASKS[0][0], iterations=2)
    path = tmp_path / "c.pt"
    learner.save(path)
    good = path.read_bytes()
    (tmp_path / "bad.pt").write_bytes(good[: len(good) // 2])
    with pytest.raises(hypercl.CheckpointError, match="not a readable hypercl checkpoint"):
        hypercl.ContinualLearner.load(tmp_path / "bad.pt")
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(hypercl.CheckpointError, match="not a hypercl checkpoint"):
        hypercl.ContinualLearner.load(tmp_path / "other.pt")
    with pytest.raises(hypercl.CheckpointError, match="does not fit"):
        hypercl.ContinualLearner.load(path, model=tiny_mlp(hidden=17))
    custom = hypercl.ContinualLearner(tiny_hnet(tiny_mlp()), strategy="none")
    custom.fit_task(0, TASKS[0][0], iterations=1)
    custom.save(tmp_path / "custom.pt")
    with pytest.raises(hypercl.CheckpointError, match="pass model="):
        hypercl.ContinualLearner.load(tmp_path / "custom.pt")
    assert hypercl.ContinualLearner.load(tmp_path / "custom.pt", model=tiny_mlp()).learned_tasks == [0]
    # no temporary files are left behind
    assert sorted(os.listdir(tmp_path)) == ["bad.pt", "c.pt", "custom.pt", "other.pt"]


def test_non_finite_loss_names_task_and_iteration_and_keeps_checkpoint(tmp_path):
    learner = hypercl.ContinualLearner(tiny_hnet(hypercl.models.mlp(10, [16], 2)), strategy="hnet",
                                       batch_size=50, check_every=4)
    learner.fit_task(0, TASKS[0][0], iterations=2)
    learner.save(tmp_path / "last.pt")
    before = (tmp_path / "last.pt").read_bytes()
    x, y = TASKS[1][0]
    x = x[:100].clone()
    x[60] = float("nan")  # the second batch of the first pass (shuffle off by sorting not needed: any batch)
    with pytest.raises(hypercl.NonFiniteLossError, match=r"task 1, iteration [0-9]+"):
        learner.fit_task(1, (x, y[:100]), iterations=10)
    assert (tmp_path / "last.pt").read_bytes() == before


def test_bad_names_and_arguments():
    hnet = tiny_hnet()
    with pytest.raises(ValueError, match=r"unknown strategy 'ewc2'.*'grow'"):
        hypercl.ContinualLearner(hnet, strategy="ewc2")
    with pytest.raises(ValueError, match=r"unknown scenario 'cl4'.*'cl1', 'cl2', 'cl3'"):
        hypercl.ContinualLearner(hnet, scenario="cl4")
    learner = hypercl.ContinualLearner(hnet)
    with pytest.raises(ValueError, match="exactly one of iterations= or epochs="):
        learner.fit_task(0, TASKS[0][0])
    with pytest.raises(TypeError, match="HyperNetwork or DirectWeights"):
        hypercl.ContinualLearner(tiny_mlp())
    with pytest.raises(ValueError, match="tasks are registered in order"):
        learner.fit_task(2, TASKS[0][0], iterations=1)


def test_dataloader_like_iterable_and_epochs():
    x, y = TASKS[0][0]
    loader = [(x[i : i + 50], y[i : i + 50]) for i in range(0, 400, 50)]
    learner = hypercl.ContinualLearner(tiny_hnet(), lr=1e-2)
    log = learner.fit_task(0, loader, epochs=3, num_classes=2)
    assert log["steps"] == 24
    assert learner.evaluate([TASKS[0][1]])["cl1"]["accuracy"][0] > 0.8
