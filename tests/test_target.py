import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import hypercl


class Tied(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Linear(6, 4)
        self.dec = nn.Linear(4, 6)
        self.dec.weight = nn.Parameter(self.enc.weight.detach().T.contiguous())
        self.head = nn.Linear(4, 6, bias=False)
        self.head.weight = self.dec.weight  # tied: must appear once

    def forward(self, x):
        h = torch.relu(self.enc(x))
        return self.dec(h) * self.head(h)


class WithLSTM(nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.rnn = nn.LSTM(3, hidden, batch_first=True)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, 2)

    def forward(self, x):
        h, _ = self.rnn(x)
        h, _ = self.gru(h)
        return self.fc(h[:, -1])


def build(kind, width, depth):
    """A module of the given kind and its example input."""
    if kind == "mlp":
        layers = [nn.Linear(5, width)]
        for _ in range(depth):
            layers += [nn.Sequential(nn.ReLU(), nn.Linear(width, width))]
        return nn.Sequential(*layers), torch.randn(4, 5)
    if kind == "conv_bn":
        layers = [nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
        for _ in range(depth):
            layers += [nn.Sequential(nn.Conv2d(width, width, 3), nn.BatchNorm2d(width))]
        return nn.Sequential(*layers, nn.Flatten(), nn.LazyLinear(3)), torch.randn(2, 3, 8, 8)
    if kind == "rnn":
        return WithLSTM(width), torch.randn(2, 4, 3)
    return Tied(), torch.randn(3, 6)


modules = st.tuples(st.sampled_from(["mlp", "conv_bn", "rnn", "tied"]), st.integers(1, 6), st.integers(0, 2))


@settings(max_examples=40, deadline=None)
@given(spec=modules)
def test_flatten_round_trip_and_exact_call(spec):
    model, x = build(*spec)
    model(x)  # materialise lazy modules
    model.eval()
    target = hypercl.wrap(model)
    own = dict(model.named_parameters())
    assert list(target.param_shapes) == list(own)
    assert target.num_params == sum(p.numel() for p in own.values())
    flat = target.flatten(own)
    assert flat.shape == (target.num_params,)
    back = target.unflatten(flat)
    for name, p in own.items():
        assert torch.equal(back[name], p)
    with torch.no_grad():
        assert torch.equal(target(back, x), model(x))


def test_tied_weight_listed_once_and_stays_tied():
    model = Tied().eval()
    target = hypercl.wrap(model)
    assert "head.weight" not in target.param_shapes and "dec.weight" in target.param_shapes
    params = {n: torch.randn(s) for n, s in target.param_shapes.items()}
    x = torch.randn(2, 6)
    with torch.no_grad():
        w = params["dec.weight"]  # head uses the same tensor as dec
        h = torch.relu(x @ params["enc.weight"].T + params["enc.bias"])
        assert torch.allclose(target(params, x), (h @ w.T + params["dec.bias"]) * (h @ w.T), atol=1e-6)


def test_unflatten_gives_views():
    target = hypercl.wrap(nn.Linear(3, 2))
    flat = torch.arange(8.0)
    params = target.unflatten(flat)
    flat[0] = 100.0
    assert params["weight"][0, 0] == 100.0


@pytest.mark.parametrize("per_task", [False, True])
def test_batched_equals_loop(per_task):
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).eval()
    target = hypercl.wrap(model)
    T = 4
    stacked = target.unflatten(torch.randn(T, target.num_params))
    x = torch.randn(T, 6, 5) if per_task else torch.randn(6, 5)
    out = target.batched(stacked, x, x_per_task=per_task)
    assert out.shape == (T, 6, 3)
    for t in range(T):
        p = {n: v[t] for n, v in stacked.items()}
        assert torch.allclose(out[t], target(p, x[t] if per_task else x), atol=1e-6)


def test_batched_with_per_task_bn_buffers():
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.Linear(6, 2)).eval()
    target = hypercl.wrap(model)
    T = 3
    stacked = target.unflatten(torch.randn(T, target.num_params))
    bufs = [target.init_buffers() for _ in range(T)]
    for t, b in enumerate(bufs):
        b["1.running_mean"].fill_(float(t))
        b["1.running_var"].fill_(1.0 + t)
    stacked_bufs = {n: torch.stack([b[n] for b in bufs]) for n in bufs[0]}
    x = torch.randn(5, 4)
    out = target.batched(stacked, x, buffers=stacked_bufs, buffers_per_task=True)
    for t in range(T):
        p = {n: v[t] for n, v in stacked.items()}
        assert torch.allclose(out[t], target(p, x, buffers=bufs[t]), atol=1e-6)


def test_caller_buffers_receive_training_updates():
    model = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6)).train()
    target = hypercl.wrap(model)
    own_before = model[1].running_mean.clone()
    mine = target.init_buffers()
    target(target.named_parameters_dict(), torch.randn(16, 4) + 3.0, buffers=mine)
    assert not torch.equal(mine["1.running_mean"], own_before)  # the caller's stats moved
    assert torch.equal(model[1].running_mean, own_before)  # the module's own did not


def test_errors_name_the_problem():
    target = hypercl.wrap(nn.Linear(3, 2))
    with pytest.raises(ValueError, match="no trainable parameters"):
        hypercl.wrap(nn.ReLU())
    frozen = nn.Linear(2, 2).requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        hypercl.wrap(frozen)
    with pytest.raises(ValueError, match=r"missing \['bias'\]"):
        target.flatten({"weight": torch.zeros(2, 3)})
    with pytest.raises(ValueError, match=r"unexpected \['extra'\]"):
        target.flatten({"weight": torch.zeros(2, 3), "bias": torch.zeros(2), "extra": torch.zeros(1)})
    with pytest.raises(ValueError, match=r"'weight' has shape \(3, 2\), expected \(2, 3\)"):
        target({"weight": torch.zeros(3, 2), "bias": torch.zeros(2)}, torch.zeros(1, 3))
    with pytest.raises(ValueError, match="num_params=8"):
        target.unflatten(torch.zeros(7))
    with pytest.raises(TypeError, match="nn.Module"):
        hypercl.wrap(lambda x: x)


def test_gradients_flow_to_external_params():
    target = hypercl.wrap(nn.Linear(3, 2))
    flat = torch.randn(target.num_params, requires_grad=True)
    target(target.unflatten(flat), torch.randn(4, 3)).sum().backward()
    assert flat.grad is not None and flat.grad.abs().sum() > 0
    assert all(p.grad is None for p in target.module.parameters())
