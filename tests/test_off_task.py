"""The training-time off-task uncertainty term (hypercl.off_task): its inputs, its loss, its place in training, its
configuration."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import hypercl
from hypercl.config import ConfigError, RunConfig
from hypercl.experiments.configs import method_config
from hypercl.off_task import OffTask, parse_off_task, uniform_kl


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 5), grid=st.sampled_from([2, 4, 7]), seed=st.integers(0, 2**16))
def test_patch_shuffle_moves_whole_patches(n, grid, seed):
    x = torch.rand(n, 784, generator=torch.Generator().manual_seed(seed))
    out = OffTask("patch_shuffle", grid=grid).make(x, torch.Generator().manual_seed(seed + 1))
    p = 28 // grid

    def patches(t):
        img = t.reshape(n, grid, p, grid, p).permute(0, 1, 3, 2, 4).reshape(n, grid * grid, p * p)
        return [sorted(map(tuple, img[i].tolist())) for i in range(n)]

    assert out.shape == x.shape and patches(out) == patches(x)  # the same patches per sample, in another order


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 5), d=st.integers(2, 50), seed=st.integers(0, 2**16))
def test_pixel_shuffle_is_a_permutation_of_each_sample(n, d, seed):
    x = torch.rand(n, d, generator=torch.Generator().manual_seed(seed))
    out = OffTask("pixel_shuffle").make(x, torch.Generator().manual_seed(seed + 1))
    assert torch.equal(out.sort(dim=1).values, x.sort(dim=1).values)


def test_the_draws_come_from_the_generator():
    x = torch.rand(8, 784)
    term = OffTask("patch_shuffle", grid=4)
    a = term.make(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, term.make(x, torch.Generator().manual_seed(3)))
    assert not torch.equal(a, term.make(x, torch.Generator().manual_seed(4)))


def test_uniform_kl_equals_the_kl_divergence_computed_directly():
    z = torch.randn(6, 3, dtype=torch.float64)
    p = torch.softmax(z, -1)
    u = torch.full_like(p, 1 / 3)
    direct = (u * (u.log() - p.log())).sum(-1).mean()
    assert float(uniform_kl(z)) == pytest.approx(float(direct), rel=1e-12)
    assert float(uniform_kl(torch.zeros(4, 5))) == pytest.approx(0.0, abs=1e-7)
    assert float(OffTask(weight=0.3).loss(z)) == pytest.approx(0.3 * float(direct), rel=1e-12)


def _learner(off_task, seed=0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))
    hnet = hypercl.HyperNetwork(model, generator="chunked_mlp", hidden_size=[16], chunk_size=200)
    return hypercl.ContinualLearner(hnet, strategy="hnet", batch_size=32, seed=seed, off_task=off_task)


def _task(seed):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (256,), generator=g)
    x = torch.randn(256, 16, generator=g) * 0.3 + (2.0 * y[:, None] - 1.0) * torch.linspace(-1, 1, 16)
    return x, y


def test_the_term_raises_the_networks_entropy_on_off_task_inputs_and_keeps_its_own_task():
    """Trained with the term, a task's network is less certain on shuffled inputs than the same run without it,
    and as accurate on its own task."""
    x, y = _task(0)
    term = OffTask("pixel_shuffle", weight=1.0)
    off = term.make(x, torch.Generator().manual_seed(99))
    res = {}
    for name, t in (("plain", None), ("off_task", term)):
        learner = _learner(t)
        learner.fit_task(0, (x, y), iterations=150)
        with torch.no_grad():
            params = learner.hnet(0)
            p = torch.softmax(learner.target(params, off), -1)
            ent = -(p * p.clamp_min(1e-30).log()).sum(-1).mean()
            acc = (learner.target(params, x).argmax(1) == y).float().mean()
        res[name] = (float(ent), float(acc))
    assert res["plain"][1] >= 0.95 and res["off_task"][1] >= 0.95
    assert res["off_task"][0] > res["plain"][0] + 0.2 and res["off_task"][0] > 0.5 * math.log(2)


def test_the_term_adds_to_the_task_loss_in_the_training_step():
    x, y = _task(1)
    term = OffTask("pixel_shuffle", weight=0.7)
    learner = _learner(term)
    learner.begin_task(0, 2)
    state = learner.rng.get_state()
    with torch.no_grad():
        logits = learner.task_logits(0, x[:32])
        off = learner.task_logits(0, term.make(x[:32], learner.rng))
    learner.rng.set_state(state)
    expect = learner.task_loss(0, logits, y[:32]) + term.loss(off)
    assert float(learner.train_step(0, x[:32], y[:32])) == pytest.approx(float(expect), rel=1e-5)


def test_batchnorm_target_is_one_clear_error():
    model = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 2))
    learner = hypercl.ContinualLearner(hypercl.HyperNetwork(model, generator="chunked_mlp"), strategy="hnet",
                                       off_task=OffTask("pixel_shuffle"))
    with pytest.raises(hypercl.batches.DataError, match="BatchNorm"):
        learner.fit_task(0, _task(0), iterations=1)


def test_spec_parsing_and_bad_settings():
    assert parse_off_task("patch_shuffle:weight=0.5,grid=7") == OffTask("patch_shuffle", 0.5, 7)
    assert parse_off_task("patch_shuffle:weight=0.2;grid=7") == OffTask("patch_shuffle", 0.2, 7)
    assert parse_off_task("pixel_shuffle") == OffTask("pixel_shuffle")
    assert parse_off_task(OffTask("patch_shuffle", 0.25, 4).spec()) == OffTask("patch_shuffle", 0.25, 4)
    for spec, msg in (("blur", "unknown off-task kind 'blur'"), ("patch_shuffle:scale=2", "valid options"),
                      ("patch_shuffle:weight=-1", "finite number > 0"), ("patch_shuffle:grid=1", "at least 2"),
                      ("patch_shuffle:weight=x", "not a number")):
        with pytest.raises(ValueError, match=msg):
            parse_off_task(spec)
    with pytest.raises(ValueError, match="not a square"):
        OffTask("patch_shuffle").make(torch.rand(2, 10))
    with pytest.raises(ValueError, match="do not split"):
        OffTask("patch_shuffle", grid=3).make(torch.rand(2, 784))


def test_config_carries_the_term_only_when_set():
    plain = RunConfig.from_json(method_config("split_mnist", "hnet", quick=True))
    with_term = RunConfig.from_json(method_config("split_mnist", "hnet", quick=True, off_task="patch_shuffle:weight=0.5"))
    assert "off_task" not in plain.to_json()  # existing run identities are unchanged
    assert with_term.to_json()["off_task"] == {"kind": "patch_shuffle", "weight": 0.5, "grid": 4}
    assert with_term.fingerprint() != plain.fingerprint()
    assert RunConfig.from_json(with_term.to_json()) == with_term
    bad = with_term.to_json()
    bad["off_task"]["weight"] = 0.0
    with pytest.raises(ConfigError, match="--off-task"):
        RunConfig.from_json(bad).validate()


def test_cli_refuses_a_bad_spec_in_one_line(capsys, tmp_path):
    from hypercl.cli import main

    code = main(["run", "--benchmark", "split_mnist", "--method", "hnet", "--quick", "--off-task", "blur",
                 "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--off-task" in err[0] and "blur" in err[0]


def test_cli_refuses_the_term_for_a_replay_method(capsys, tmp_path):
    from hypercl.cli import main

    code = main(["run", "--benchmark", "split_mnist", "--method", "lstm_net_grow+r", "--quick", "--off-task",
                 "patch_shuffle", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "replay method" in err[0]
