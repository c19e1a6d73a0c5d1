"""Task-inference criteria (hypercl.task_inference): the default equals the old entropy path, every criterion picks the
right task where input distributions are disjoint, reads no labels, and calls the hypernetwork once per evaluation."""


import pytest
import torch
from helpers import mnist_root, mnist_skip_reason, tiny_hnet
from torch import nn

import hypercl
from hypercl import task_inference as ti
from hypercl.scenarios import infer_task_by_entropy

ALL = ["entropy", "energy", "max_logit", "entropy_gradient", "entropy_gradient:mix=weights",
       "ensemble:samples=3,scale=0.3",
       "ensemble:samples=3,scale=0.3,measure=mi"]


def axis_tasks(num_tasks=3, n=200, d=10, seed=0):
    """Task t's inputs lie on axis t (label: the sign): disjoint input distributions."""
    g = torch.Generator().manual_seed(seed)
    tasks = []
    for t in range(num_tasks):
        pair = []
        for _ in range(2):
            sign = torch.randint(0, 2, (n,), generator=g) * 2 - 1
            x = 0.1 * torch.randn(n, d, generator=g)
            x[:, t] += 3.0 * sign
            pair.append((x, (sign > 0).long()))
        tasks.append(tuple(pair))
    return tasks


@pytest.fixture(scope="module")
def trained():
    tasks = axis_tasks()
    torch.manual_seed(0)
    learner = hypercl.ContinualLearner(tiny_hnet(generator="chunked_mlp"), strategy="hnet",
                                       strategy_kwargs={"beta": 0.05}, lr=1e-2, eval_batch_size=64)
    for t, (train, _) in enumerate(tasks):
        learner.fit_task(t, train, iterations=120)
    return learner, [te for _, te in tasks]


def old_entropy_path(learner, tests):
    """The computation evaluate() did before criteria existed: stacked logits, argmin entropy, that row's argmax."""
    learned = list(learner.learned_tasks)
    with torch.no_grad():
        learner.target.eval()
        stacked = learner.hnet.generate(learned)
        out = []
        for x, _ in tests:
            logits = learner.target.batched(stacked, x)
            mask = learner.heads.unit_mask(learned, logits.shape[-1], logits.device)
            rows = infer_task_by_entropy(logits, mask)
            pred = logits[rows, torch.arange(len(x))].masked_fill(~mask[rows], float("-inf")).argmax(-1)
            out.append((rows, pred))
    return out


def test_default_entropy_predictions_equal_the_old_path(trained):
    learner, tests = trained
    res = learner.evaluate(tests, scenarios=["cl2", "cl3"], record=False)
    named = learner.evaluate(tests, scenarios=["cl2", "cl3"], record=False, task_inference="entropy")
    for t, (rows, pred) in enumerate(old_entropy_path(learner, tests)):
        y = tests[t][1]
        assert res["cl3"]["inferred"][t] == rows.tolist() == named["cl3"]["inferred"][t]
        assert res["cl2"]["accuracy"][t] == (pred == y).sum().item() / len(y)
        assert res["cl3"]["accuracy"][t] == (2 * rows + pred == 2 * t + y).sum().item() / len(y)
        assert res["cl3"]["task_inference"][t] == (rows == t).sum().item() / len(y)
    assert res["cl3"]["task_inference_method"] == "entropy"


def test_confusion_matrix_counts_and_accuracy():
    c = ti.confusion_matrix(torch.tensor([0, 0, 1, 1, 1, 2]), torch.tensor([0, 1, 1, 1, 2, 0]), 3)
    assert c.tolist() == [[1, 1, 0], [0, 2, 1], [1, 0, 0]]
    assert ti.identification_accuracy(c) == [0.5, 2 / 3, 0.0]


def test_evaluate_reports_confusion_of_the_inferred_tasks(trained):
    learner, tests = trained
    res = learner.evaluate(tests, scenarios=["cl1", "cl3"], record=True)
    conf = torch.tensor(res["cl3"]["confusion"]["counts"])
    for t in range(3):
        inferred = torch.tensor(res["cl3"]["inferred"][t])
        assert conf[t].tolist() == torch.bincount(inferred, minlength=3).tolist()
        assert conf[t, t].item() / len(inferred) == res["cl3"]["task_inference"][t]
    assert "inferred" not in res["cl1"]
    r = learner.results("cl3")
    assert r["task_inference_confusion"][-1]["counts"] == conf.tolist()
    assert r["task_inference_method"] == "entropy"


def block_candidates(num_tasks=3, samples=0, seed=0):
    """Hand-made weights: task t's linear classifier reads only its own 2 input coordinates (a strong, certain rule);
    its ``samples`` extra weight sets agree on that block and carry large random weights on the other blocks."""
    d = 2 * num_tasks
    target = hypercl.wrap(nn.Linear(d, 2))
    w = torch.zeros(num_tasks, 2, d)
    for t in range(num_tasks):
        w[t, :, 2 * t: 2 * t + 2] = 6.0 * torch.eye(2)
    params = {"weight": w, "bias": torch.zeros(num_tasks, 2)}
    extra = None
    if samples:
        g = torch.Generator().manual_seed(seed)
        noise = 4.0 * torch.randn(samples, num_tasks, 2, d, generator=g)
        own = torch.zeros(1, num_tasks, 1, d, dtype=torch.bool)
        for t in range(num_tasks):
            own[0, t, 0, 2 * t: 2 * t + 2] = True
        ws = (w.unsqueeze(0) + noise.masked_fill(own, 0.0)).reshape(samples * num_tasks, 2, d)
        extra = {"weight": ws, "bias": torch.zeros(samples * num_tasks, 2)}
    return hypercl.task_inference.Candidates(target, list(range(num_tasks)), params, None, extra)


def block_inputs(num_tasks=3, n=50, seed=1):
    g = torch.Generator().manual_seed(seed)
    xs, true = [], []
    for t in range(num_tasks):
        x = 0.05 * torch.randn(n, 2 * num_tasks, generator=g)
        x[torch.arange(n), 2 * t + torch.randint(0, 2, (n,), generator=g)] += 1.0
        xs.append(x)
        true.append(torch.full((n,), t))
    return torch.cat(xs), torch.cat(true)


@pytest.mark.parametrize("spec", ALL)
def test_each_criterion_picks_the_task_of_disjoint_inputs(spec):
    crit = ti.get_criterion(spec)
    cands = block_candidates(samples=getattr(crit, "samples", 0))
    x, true = block_inputs()
    logits = cands.logits(x)
    mask = torch.ones(3, 2, dtype=torch.bool)
    assert torch.equal(crit.infer(logits, mask, x, cands), true)


def test_entropy_gradient_is_the_derivative_of_the_mixed_networks_entropy():
    cands = block_candidates()
    x, _ = block_inputs(n=4)
    mask = torch.ones(3, 2, dtype=torch.bool)
    got = ti.EntropyGradient().surprise(cands.logits(x), mask, x, cands)

    def ent(alpha):
        w = torch.einsum("t,tij->ij", alpha, cands.params["weight"])
        p = torch.softmax(x @ w.T, -1)
        return -(p * p.log()).sum(-1)

    want = torch.autograd.functional.jacobian(ent, torch.full((3,), 1 / 3)).T  # (T, B)
    assert torch.allclose(got, want, atol=1e-5)


def test_entropy_gradient_over_superposed_embeddings_is_the_derivative_through_the_hypernetwork(trained):
    learner, tests = trained
    x = tests[1][0][:5]
    crit = ti.get_criterion("entropy_gradient:mix=embeddings")
    cands = ti.make_candidates(learner.hnet, learner.target, [0, 1, 2], crit)
    with torch.no_grad():
        got = crit.surprise(cands.logits(x), torch.ones(3, 2, dtype=torch.bool), x, cands)
    emb = learner.hnet.task_embedding_matrix([0, 1, 2]).detach()

    def ent(alpha):
        params = learner.hnet.target.unflatten(learner.hnet.generate_flat([0], task_emb=(alpha @ emb)[None])[0])
        p = torch.softmax(learner.target(params, x), -1)
        return -(p * p.log()).sum(-1)

    want = torch.autograd.functional.jacobian(ent, torch.full((3,), 1 / 3)).T  # (T, B), backward through the hnet
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-4)
    own = ti.make_candidates(learner.hnet, learner.target, [0, 1, 2], ti.get_criterion("entropy"))
    assert all(torch.allclose(cands.params[n], own.params[n], atol=1e-6) for n in own.params)


class LabelsRaise:
    """A test set whose labels raise on access."""

    def __init__(self, x):
        self.x_test = x

    @property
    def y_test(self):
        raise AssertionError("a task-inference criterion read the labels")


@pytest.mark.parametrize("spec", ALL)
def test_no_criterion_reads_labels(trained, spec):
    learner, tests = trained
    x = torch.cat([te[0][:30] for te in tests])
    data = LabelsRaise(x)
    got = ti.infer_tasks(learner, data, spec)
    assert got.shape == (90,) and set(got.tolist()) <= {0, 1, 2}
    assert torch.equal(got, ti.infer_tasks(learner, x, spec, batch_size=7))  # per sample: batching does not matter


@pytest.mark.parametrize("spec", ALL)
def test_hypernetwork_called_once_per_evaluation_for_all_tasks(trained, spec):
    learner, tests = trained
    gen = learner.hnet.generator
    calls = []
    handle = gen.register_forward_hook(lambda mod, inp, out: calls.append(inp[0].shape[0]))
    try:
        res = learner.evaluate(tests, scenarios=["cl1", "cl2", "cl3"], record=False, task_inference=spec)
    finally:
        handle.remove()
    crit = ti.get_criterion(spec)
    rows = 3 * (1 + getattr(crit, "samples", 0)) + (getattr(crit, "mix", "weights") != "weights")  # + superposed
    assert calls == [rows]  # one generator call: every task (and every perturbed or superposed embedding) at once
    assert min(res["cl1"]["accuracy"].values()) > 0.9
    assert res["cl3"]["task_inference_method"] == ti.get_criterion(spec).spec()


def test_ensemble_samples_come_from_perturbed_embeddings(trained):
    learner, _ = trained
    crit = ti.get_criterion("ensemble:samples=2,scale=0")
    cands = ti.make_candidates(learner.hnet, learner.target, [0, 1, 2], crit)
    for name, w in cands.params.items():
        assert torch.allclose(cands.samples[name], w.repeat(2, *([1] * (w.dim() - 1))), atol=1e-6)
    crit = ti.get_criterion("ensemble:samples=2,scale=0.5")
    cands = ti.make_candidates(learner.hnet, learner.target, [0, 1, 2], crit)
    again = ti.make_candidates(learner.hnet, learner.target, [0, 1, 2], crit)
    w = cands.samples["0.weight"] if "0.weight" in cands.samples else next(iter(cands.samples.values()))
    assert not torch.allclose(w[:3], next(iter(cands.params.values())))
    assert all(torch.equal(cands.samples[n], again.samples[n]) for n in cands.samples)  # seeded: reproducible


def test_bad_criterion_names_and_settings_are_one_clear_error():
    with pytest.raises(ValueError, match="unknown task inference 'entropie'"):
        ti.get_criterion("entropie")
    with pytest.raises(ValueError, match="takes no settings"):
        ti.get_criterion("energy:scale=2")
    with pytest.raises(ValueError, match="samples must be at least 1"):
        ti.get_criterion("ensemble:samples=0")
    with pytest.raises(ValueError, match="not key=value"):
        ti.get_criterion("ensemble:samples")
    assert ti.get_criterion("ensemble:samples=4,measure=mi").spec() == "ensemble:samples=4,scale=0.5,measure=mi,seed=0"
    with pytest.raises(ValueError, match="unknown mix"):
        ti.get_criterion("entropy_gradient:mix=both")


@pytest.mark.skipif(mnist_root() is None, reason=mnist_skip_reason())
def test_cli_task_inference_option(tmp_path, capsys):
    import json

    from hypercl.cli import build_parser, main

    assert "--task-inference" in build_parser()._subparsers._group_actions[0].choices["run"].format_help()
    tiny = ["--quick", "--iterations", "3", "--max-train-per-task", "64", "--max-test-per-task", "40", "--no-progress"]
    assert main(["run", "--benchmark", "split_mnist", "--method", "hnet", "--task-inference", "entropie", *tiny]) == 2
    assert "unknown task inference 'entropie'" in capsys.readouterr().err
    rc = main(["run", "--benchmark", "split_mnist", "--method", "hnet", "--scenario", "cl3", "--task-inference",
               "energy", "--out", str(tmp_path), *tiny])
    assert rc == 0
    (path,) = tmp_path.glob("*.json")
    res = json.loads(path.read_text())
    assert res["config"]["evaluation"] == {"task_inference": "energy"}
    assert res["runs"][0]["scenarios"]["cl3"]["task_inference_method"] == "energy"
    assert "HNET @energy" in capsys.readouterr().out
