"""hypercl.replay: the generated VAE, GROW's frozen replay, the replay losses and batches, and a quick end-to-end run."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from helpers import mnist_root, mnist_skip_reason

import hypercl
from hypercl import DirectWeights, HyperNetwork
from hypercl.models import mlp
from hypercl.models.vae import VAE, vae, vae_loss
from hypercl.replay import (
    REPLAY_METHODS,
    ReplayClassifier,
    VAELearner,
    masked_distillation_loss,
    masked_hard_label_loss,
    replay_method_config,
    run_replay_seed,
    wrap_vae_decoder,
)

DATA = mnist_root()
HAVE_MNIST = DATA is not None


@pytest.fixture(autouse=True)
def one_thread():
    """These tests use 1 thread: on a loaded 2-core machine, 2 OpenMP threads per process are much slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_vae_learner(strategy="hnet", generator="lstm", in_features=36, **kw):
    model = vae(in_features, hidden=[24, 24], latent_dim=4)
    hkw = dict(chunk_size=256, task_emb_dim=8, chunk_emb_dim=8,
               hidden_size=16 if generator in ("lstm", "gru") else (16, 16))
    hnet = HyperNetwork(wrap_vae_decoder(model), generator=generator, **hkw)
    skw = {} if strategy == "grow" else {"beta": 0.01}
    return VAELearner(hnet, strategy=strategy, strategy_kwargs=skw, lr=3e-3, batch_size=32, seed=0, **kw)


def patterns(n=128, d=36, k=3, seed=0):
    """Binary images made of ``k`` prototypes with a little pixel noise."""
    g = torch.Generator().manual_seed(seed)
    protos = (torch.rand(k, d, generator=g) > 0.5).float()
    x = protos[torch.randint(k, (n,), generator=g)]
    flip = torch.rand(n, d, generator=g) < 0.03
    return torch.where(flip, 1 - x, x)


# ------------------------------------------------------------------------------------------------------------- VAE
def test_vae_is_plain_module_and_loss_matches_direct_formula():
    model = vae(20, hidden=[8, 8], latent_dim=3)
    assert isinstance(model, VAE) and model.hypercl_spec["name"] == "vae"
    assert hypercl.wrap(model).num_params == sum(p.numel() for p in model.parameters())
    x = torch.rand(5, 20)
    logits, mu, logvar = model(x)
    assert logits.shape == (5, 20) and mu.shape == logvar.shape == (5, 3)
    p = torch.sigmoid(logits)
    bce = -(x * p.log() + (1 - x) * (1 - p).log()).mean(1)
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum(1) / 20
    torch.testing.assert_close(vae_loss(logits, mu, logvar, x, reduction="none"), bce + kl, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(vae_loss(logits, mu, logvar, x), (bce + kl).mean(), rtol=1e-5, atol=1e-6)
    # a fixed eps makes the forward deterministic
    eps = torch.zeros(5, 3)
    torch.testing.assert_close(model(x, eps=eps)[0], model.decode(model.encode(x)[0]))


def test_default_vae_matches_seed_paper():
    model = vae(784)
    assert [m.out_features for m in model.encoder if isinstance(m, torch.nn.Linear)] == [400, 400, 200]
    assert [m.out_features for m in model.decoder if isinstance(m, torch.nn.Linear)] == [400, 400, 784]


# ---------------------------------------------------------------------------------------------- generated VAE
def test_generated_vae_reconstructs_better_after_training():
    torch.manual_seed(0)
    learner = tiny_vae_learner("hnet")
    x = patterns()
    eps = torch.zeros(len(x), 4)

    def recon() -> float:
        with torch.no_grad():
            params = learner.hnet(0)
            logits, mu, logvar = learner.target(params, x, eps)  # the VAE with the GENERATED decoder
            return F.binary_cross_entropy_with_logits(logits, x).item()

    learner.hnet.add_task()
    before = recon()
    learner.learn(0, x, iterations=250)
    after = recon()
    assert after < 0.6 * before, (before, after)
    # the hypernetwork generated the decoder only; the encoder is the VAE's own (trained) network
    assert all(n.startswith("decoder.") for n in learner.target.param_shapes)


def test_grow_replay_is_bit_identical_after_a_later_task():
    torch.manual_seed(0)
    learner = tiny_vae_learner("grow")
    learner.learn(0, patterns(seed=0), iterations=30)
    z = torch.randn(6, 4)
    before = learner.sampler([0]).decode(z).clone()
    weights_before = learner.hnet.generate_flat([0]).detach().clone()
    learner.learn(1, patterns(seed=1), iterations=30)
    after = learner.sampler([0]).decode(z)
    assert torch.equal(before, after)
    assert torch.equal(weights_before, learner.hnet.generate_flat([0]).detach())
    # the later task did learn something of its own
    assert not torch.equal(learner.sampler([1]).decode(z)[0], after[0])


def test_sampler_one_hypernetwork_call_and_proportions():
    torch.manual_seed(0)
    learner = tiny_vae_learner("hnet", generator="chunked_mlp")
    for t in range(3):
        learner.learn(t, patterns(seed=t), iterations=5)
    calls = []
    handle = learner.hnet.generator.register_forward_hook(lambda *a: calls.append(1))
    sampler = learner.sampler()
    handle.remove()
    assert len(calls) == 1 and sampler.task_ids == [0, 1, 2]
    x, owner = sampler.sample(7, torch.Generator().manual_seed(0))
    assert x.shape == (21, 36) and float(x.min()) >= 0 and float(x.max()) <= 1
    assert owner.tolist() == [0] * 7 + [1] * 7 + [2] * 7
    # the vmapped decode equals decoding each task alone
    z = torch.randn(4, 4)
    stacked = sampler.decode(z)
    for row, t in enumerate([0, 1, 2]):
        alone = torch.sigmoid(learner.decoder_target(learner.strip(learner.hnet(t)), z))
        torch.testing.assert_close(stacked[row], alone, rtol=1e-5, atol=1e-6)


def test_iwr_fisher_of_the_decoder():
    torch.manual_seed(0)
    learner = tiny_vae_learner("iwr")
    learner.strategy.fisher_samples = 40
    learner.learn(0, patterns(), iterations=5)
    fisher = learner.strategy.fisher[0]
    assert fisher.shape == (learner.target.num_params,)
    assert torch.isfinite(fisher).all() and abs(float(fisher.mean()) - 1.0) < 1e-4 and float(fisher.min()) >= 0


# ------------------------------------------------------------------------------------------------------ losses
def test_distillation_loss_equals_direct_computation():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(6, 10, generator=g), torch.randn(6, 10, generator=g)
    T = 2.0
    # CL3: student on units 0..5, teacher on units 0..3 (new units get target probability 0)
    units = torch.arange(10)
    sm, tm = (units < 6).expand(6, -1), (units < 4).expand(6, -1)
    q = torch.softmax(t[:, :4] / T, dim=1)
    logp = torch.log_softmax(s[:, :6] / T, dim=1)[:, :4]
    direct = -(q * logp).sum(1).mean() * T**2
    torch.testing.assert_close(masked_distillation_loss(s, t, sm, tm, T), direct)
    # CL1: every sample on its own head
    heads = [(0, 2), (2, 4), (4, 6), (0, 2), (8, 10), (2, 4)]
    mask = torch.zeros(6, 10, dtype=torch.bool)
    for i, (a, b) in enumerate(heads):
        mask[i, a:b] = True
    per = [-(torch.softmax(t[i, a:b] / T, 0) * torch.log_softmax(s[i, a:b] / T, 0)).sum() for i, (a, b) in
           enumerate(heads)]
    torch.testing.assert_close(masked_distillation_loss(s, t, mask, mask, T), torch.stack(per).mean() * T**2)
    # hard labels: the teacher's argmax among its units, cross-entropy over the student's units
    y = t[:, :4].argmax(1)
    torch.testing.assert_close(masked_hard_label_loss(s, t, sm, tm), F.cross_entropy(s[:, :6], y))
    # gradients stay finite with masked units
    s.requires_grad_(True)
    masked_distillation_loss(s, t, sm, tm, T).backward()
    assert torch.isfinite(s.grad).all() and float(s.grad[:, 6:].abs().sum()) == 0.0
    with pytest.raises(ValueError, match="subset"):
        masked_distillation_loss(s, t, tm, sm, T)


class FixedSampler:
    """A deterministic task-conditioned sampler: sample n per task, task-major, owner = row."""

    conditional = True

    def __init__(self, task_ids, d=12):
        self.task_ids = list(task_ids)
        self.d = d

    def sample(self, n, generator=None):
        t = len(self.task_ids)
        x = torch.linspace(0, 1, t * n * self.d).reshape(t * n, self.d)
        return x, torch.arange(t).repeat_interleave(n)


def _classifier(scenario, **kw):
    out = 2 if scenario == "cl2" else 8
    return ReplayClassifier(DirectWeights(mlp(12, [16], out)), scenario=scenario, batch_size=16, seed=0, **kw)


def _task(t, n=40, d=12):
    g = torch.Generator().manual_seed(t)
    x = torch.rand(n, d, generator=g)
    return (x, (x[:, t % d] > 0.5).long())


@pytest.mark.parametrize("scenario", ["cl1", "cl2", "cl3"])
@pytest.mark.parametrize("targets", ["soft", "hard"])
def test_replay_batch_labels_proportions_and_loss(scenario, targets):
    torch.manual_seed(0)
    clf = _classifier(scenario, targets=targets, replay_batch_size=10, mixing="fixed", replay_weight=0.3)
    for t in range(3):
        clf.fit_task(t, _task(t), iterations=3, sampler=FixedSampler(range(t)) if t else None)
    seen = {}

    def grab(it, loss):
        if it == 0:
            x, y = _task(3)[0][:16], _task(3)[1][:16]
            seen["batch"] = clf.replay_batch(3, x)
            logits = clf.task_logits(3, x)
            seen["loss"] = clf.task_loss(3, logits, y)
            seen["parts"] = (logits, y, clf.hnet.weights.detach().clone(), seen["teacher"])

    seen["teacher"] = clf.hnet.weights.detach().clone()
    clf.fit_task(3, _task(3), iterations=1, sampler=FixedSampler([0, 1, 2]), callback=grab)
    b = seen["batch"]
    per_task = math.ceil(10 / 3)  # von Oswald: ceil(batch / #earlier tasks) per earlier task
    assert b.inputs.shape == (3 * per_task, 12)
    assert b.owner.tolist() == [0] * per_task + [1] * per_task + [2] * per_task
    teacher = clf.target(clf.target.unflatten(seen["teacher"]), b.inputs)
    torch.testing.assert_close(b.teacher_logits, teacher)
    labels = b.labels
    if scenario == "cl1":  # own head of each replayed sample's task
        for row, own in enumerate(b.owner.tolist()):
            assert b.student_mask[row].nonzero().flatten().tolist() == [2 * own, 2 * own + 1]
            assert torch.equal(b.student_mask[row], b.teacher_mask[row])
            assert labels[row] == 2 * own + teacher[row, 2 * own : 2 * own + 2].argmax()
    elif scenario == "cl2":
        assert b.student_mask.all() and b.teacher_mask.all()
        assert torch.equal(labels, teacher.argmax(1))
    else:  # expanding head: student on the 8 units seen so far, teacher on the 6 of the earlier tasks
        assert b.student_mask.sum(1).tolist() == [8] * len(b.inputs)
        assert b.teacher_mask.sum(1).tolist() == [6] * len(b.inputs)
        assert torch.equal(labels, teacher[:, :6].argmax(1))
    # the step's loss is (1 - w) L_task + w L_replay with w = 0.3, the replay part recomputed directly
    logits, y, weights, _ = seen["parts"]
    student = clf.target(clf.target.unflatten(weights), b.inputs)
    if targets == "soft":
        rl = masked_distillation_loss(student, teacher, b.student_mask, b.teacher_mask, 2.0)
    else:
        rl = F.cross_entropy(student.masked_fill(~b.student_mask, float("-inf")), labels)
    task = hypercl.ContinualLearner.task_loss(clf, 3, logits, y)  # the plain task loss on the scenario's units
    torch.testing.assert_close(seen["loss"], 0.7 * task + 0.3 * rl, rtol=1e-5, atol=1e-6)


def test_lwf_replays_current_inputs_on_every_earlier_head():
    torch.manual_seed(0)
    clf = _classifier("cl1", source="current", mixing="tasks")
    for t in range(2):
        clf.fit_task(t, _task(t), iterations=2)
    seen = {}

    def grab(it, loss):
        if it == 0:
            seen["x"] = _task(2)[0][:16]
            seen["batch"] = clf.replay_batch(2, seen["x"])
            seen["w"] = clf.replay_weight_for(2)

    clf.fit_task(2, _task(2), iterations=1, callback=grab)
    b = seen["batch"]
    assert torch.equal(b.inputs, seen["x"]) and b.owner is None
    assert b.index.tolist() == list(range(16)) * 2  # each current input on both earlier heads (averaged)
    assert b.student_mask[:16].nonzero()[:, 1].unique().tolist() == [0, 1]
    assert b.student_mask[16:].nonzero()[:, 1].unique().tolist() == [2, 3]
    assert seen["w"] == pytest.approx(1 - 1 / 3)  # van de Ven & Tolias: rnt = 1/task
    assert clf.train_log[2]["replay"] is True and clf.train_log[0]["replay"] is False


# ------------------------------------------------------------------------------------------------------ configs
def test_replay_method_configs():
    assert set(REPLAY_METHODS) == {"hnet+r", "hnet_iwr+r", "lstm_net+r", "lstm_net_iwr+r", "lstm_net_grow+r",
                                   "lwf", "dgr", "dgr+distill"}
    for bench in ("split_mnist", "permuted_mnist"):
        for m in REPLAY_METHODS:
            cfg = replay_method_config(bench, m, quick=True, beta=0.5, iterations=7, chunk_size=1000)
            assert cfg["method"] == m and cfg["train"]["iterations"] == 7 and cfg["quick"]
            if cfg["replay"] is not None:
                assert cfg["replay"]["vae"] == {"hidden": [400, 400], "latent_dim": 100, "activation": "relu"}
                assert cfg["replay"]["train"]["iterations"] == 7
    cfg = replay_method_config("split_mnist", "hnet+r")
    assert cfg["replay"]["hypernetwork"]["chunk_size"] == 50000 and cfg["replay"]["strategy"]["kwargs"]["beta"] == 0.01
    assert cfg["distill"] == {"targets": "soft", "temperature": 2.0, "mixing": "fixed", "replay_weight": 0.5,
                              "replay_batch_size": 128, "source": "generator"}
    assert replay_method_config("split_mnist", "dgr")["distill"]["targets"] == "hard"
    assert replay_method_config("split_mnist", "lwf")["replay"] is None
    assert replay_method_config("permuted_mnist", "lstm_net_grow+r", quick=True)["benchmark"]["num_tasks"] == 3
    with pytest.raises(ValueError, match="unknown override"):
        replay_method_config("split_mnist", "dgr", bogus=1)
    with pytest.raises(ValueError, match="unknown replay method"):
        replay_method_config("split_mnist", "hnet")


# ------------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def tiny_split():
    if not HAVE_MNIST:
        pytest.skip(mnist_skip_reason())
    from hypercl.data import SplitMNIST

    return SplitMNIST(root=DATA, download=False, max_train_per_task=96, max_test_per_task=40)


RESULT_KEYS = {"scenario", "tasks", "rows", "matrix", "task_inference_matrix", "task_inference_confusion",
               "task_inference_method", "final_average", "during", "during_average", "backward_transfer"}


def _check_results(out, scenarios):
    assert set(out) >= {"seed", "scenarios", "params", "wall_time_s", "train_log"}
    for s in scenarios:
        r = out["scenarios"][s]
        assert set(r) == RESULT_KEYS and r["scenario"] == s
        assert r["tasks"] == [0, 1, 2, 3, 4] and r["rows"] == [0, 1, 2, 3, 4]
        for i, row in enumerate(r["matrix"]):
            assert all((v is None) == (j > i) for j, v in enumerate(row))
            assert all(0.0 <= v <= 1.0 for v in row if v is not None)
        assert 0.0 <= r["final_average"] <= 1.0


def test_end_to_end_grow_replay_with_png_and_resume(tiny_split, tmp_path):
    cfg = replay_method_config("split_mnist", "lstm_net_grow+r", quick=True, iterations=4, replay_iterations=3)
    scen = ["cl1", "cl2", "cl3"]
    ckpt = tmp_path / "checkpoints"
    full = run_replay_seed(cfg, tiny_split, 0, scen, checkpoint_dir=ckpt)
    _check_results(full, scen)
    png = Path(full["samples_png"])
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(png.parent.glob(".*.tmp.png"))
    assert sorted(full["train_log"]["replay"]) == ["0", "1", "2", "3"]  # no replay model for the last task
    assert full["params"]["target"] == 515184  # the generated decoder of the 400-400, z=100 VAE

    # interrupted after task 2, then resumed: the same results as the uninterrupted run
    class Stop(Exception):
        pass

    def stop_after(t):
        if t == 2:
            raise Stop

    part = tmp_path / "part"
    with pytest.raises(Stop):
        run_replay_seed(cfg, tiny_split, 0, scen, checkpoint_dir=part, on_task=stop_after)
    resumed = run_replay_seed(cfg, tiny_split, 0, scen, checkpoint_dir=part, resume=True)
    for s in scen:
        assert resumed["scenarios"][s] == full["scenarios"][s]
    with pytest.raises(hypercl.CheckpointError, match="another configuration"):
        other = replay_method_config("split_mnist", "lstm_net_grow+r", quick=True, iterations=5, replay_iterations=3)
        run_replay_seed(other, tiny_split, 0, scen, checkpoint_dir=part, resume=True)


@pytest.mark.parametrize("method", ["dgr", "lwf", "hnet_iwr+r"])
def test_end_to_end_other_methods(tiny_split, tmp_path, method):
    cfg = replay_method_config("split_mnist", method, quick=True, iterations=3, replay_iterations=2,
                               strategy_kwargs={"fisher_samples": 16})
    out = run_replay_seed(cfg, tiny_split, 1, ["cl1", "cl3"], samples_path=tmp_path / "grid.png")
    _check_results(out, ["cl1", "cl3"])
    assert (out["samples_png"] is None) == (method == "lwf")
