"""CIFAR ResNets: layout, parameter count, functional exactness, and per-task BatchNorm under vmap."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import hypercl
from hypercl.models import MODELS, CifarResNet, ResNet32, build_model, cifar_resnet, model_spec, resnet32

T = 3  # tasks in the per-task BatchNorm tests


def count(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_resnet32_parameter_count_and_layout():
    m = resnet32()
    assert isinstance(m, ResNet32) and isinstance(m, CifarResNet)
    # 466,906 = 464,154 (convs, BNs, head as in the option-A ResNet-32) + 2,752 (two 1x1 conv + BN projections).
    assert count(m) == 466_906
    assert count(resnet32(100)) == 466_906 + 90 * 65
    convs = [mod for mod in m.modules() if isinstance(mod, nn.Conv2d)]
    assert sum(c.kernel_size == (3, 3) for c in convs) == 31  # + the linear head = 32 weighted layers
    assert [c.out_channels for c in convs if c.kernel_size == (1, 1)] == [32, 64]  # projections, stages 2, 3
    assert all(c.bias is None for c in convs)
    assert sum(isinstance(mod, nn.BatchNorm2d) for mod in m.modules()) == 31 + 2
    assert [len(s) for s in (m.stage1, m.stage2, m.stage3)] == [5, 5, 5]
    assert m.stage2[0].conv1.stride == (2, 2) and m.stage3[0].conv1.stride == (2, 2)
    assert isinstance(m.stage1[0].shortcut, nn.Identity) and isinstance(m.stage2[1].shortcut, nn.Identity)


def test_output_shape_and_registry_rebuild():
    m = resnet32().eval()
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert model_spec(m) == {"name": "resnet32", "kwargs": {"num_classes": 10}}
    assert {"resnet32", "cifar_resnet"} <= set(MODELS)
    tiny = cifar_resnet(8, 3)
    spec = model_spec(tiny)
    again = build_model(spec["name"], **spec["kwargs"])
    assert [(n, p.shape) for n, p in again.named_parameters()] == [(n, p.shape) for n, p in tiny.named_parameters()]
    assert tiny(torch.randn(4, 3, 8, 8)).shape == (4, 3)
    assert count(cifar_resnet(20)) == 272_474  # ResNet-20, option B


@pytest.mark.parametrize("depth", [7, 10, 2, 0])
def test_bad_depth(depth):
    with pytest.raises(ValueError, match="6n\\+2"):
        CifarResNet(depth)


def test_wrap_is_bit_exact_in_eval():
    m = resnet32().eval()
    target = hypercl.wrap(m)
    assert target.num_params == 466_906
    assert len(target.buffer_names) == 3 * 33  # running_mean, running_var, num_batches_tracked per BN
    x = torch.randn(2, 3, 32, 32)
    params = target.unflatten(target.flatten(dict(m.named_parameters())))
    with torch.no_grad():
        assert torch.equal(target(params, x), m(x))


# --------------------------------------------------------------------------- per-task BatchNorm under vmap
def tiny_target(train: bool):
    model = cifar_resnet(8, 3).train(train)
    return hypercl.wrap(model)


def per_task_buffers(target, seed: int = 1):
    """T different buffer sets (random running statistics), as a list and stacked along a task dim."""
    g = torch.Generator().manual_seed(seed)
    bufs = []
    for _ in range(T):
        b = target.init_buffers()
        for name, v in b.items():
            if name.endswith("running_mean"):
                v.copy_(torch.randn(v.shape, generator=g) * 0.5)
            elif name.endswith("running_var"):
                v.copy_(torch.rand(v.shape, generator=g) + 0.5)
        bufs.append(b)
    stacked = {n: torch.stack([b[n] for b in bufs]) for n in bufs[0]}
    return bufs, stacked


def task_params(stacked, t):
    return {n: v[t] for n, v in stacked.items()}


def test_bn_per_task_eval_matches_loop():
    target = tiny_target(train=False)
    stacked = target.unflatten(torch.stack([target.flatten(target.named_parameters_dict())] * T)
                               + 0.05 * torch.randn(T, target.num_params))
    bufs, stacked_bufs = per_task_buffers(target)
    x = torch.randn(5, 3, 8, 8)
    out = target.batched(stacked, x, buffers=stacked_bufs, buffers_per_task=True)
    assert out.shape == (T, 5, 3)
    loop = [target(task_params(stacked, t), x, buffers=bufs[t]) for t in range(T)]
    for t in range(T):
        assert torch.allclose(out[t], loop[t], atol=1e-5, rtol=1e-5)
    # the task's own statistics matter: the same weights with task 0's buffers give another output
    other = target(task_params(stacked, 1), x, buffers=bufs[0])
    assert not torch.allclose(other, loop[1], atol=1e-3)
    # eval mode leaves the buffers alone
    for t in range(T):
        for n in bufs[t]:
            assert torch.equal(stacked_bufs[n][t], bufs[t][n])


@pytest.mark.parametrize("x_per_task", [False, True])
def test_bn_per_task_train_matches_loop_and_updates_own_buffers(x_per_task):
    target = tiny_target(train=True)
    own_before = copy.deepcopy(target.init_buffers())
    flat = torch.stack([target.flatten(target.named_parameters_dict())] * T) + 0.05 * torch.randn(T, target.num_params)
    flat.requires_grad_(True)
    stacked = target.unflatten(flat)
    bufs, stacked_bufs = per_task_buffers(target)
    start = {n: v.clone() for n, v in stacked_bufs.items()}
    for step in range(2):  # two steps: the running statistics accumulate per task
        x = torch.randn(T, 6, 3, 8, 8) if x_per_task else torch.randn(6, 3, 8, 8)
        out = target.batched(stacked, x, x_per_task=x_per_task, buffers=stacked_bufs, buffers_per_task=True)
        loop = torch.stack([target(task_params(stacked, t), x[t] if x_per_task else x, buffers=bufs[t])
                            for t in range(T)])
        assert torch.allclose(out, loop, atol=1e-5, rtol=1e-5)
    # gradients through the batched call equal those through the loop
    (g_batched,) = torch.autograd.grad(out.square().sum(), flat)
    (g_loop,) = torch.autograd.grad(loop.square().sum(), flat)
    assert torch.allclose(g_batched, g_loop, atol=1e-5, rtol=1e-4)
    for n in stacked_bufs:
        for t in range(T):  # each task's statistics were updated exactly as its own loop call updated them
            assert torch.allclose(stacked_bufs[n][t], bufs[t][n], atol=1e-6, rtol=1e-5), n
        if n.endswith("num_batches_tracked"):
            assert stacked_bufs[n].tolist() == [2] * T
        else:
            assert not torch.equal(stacked_bufs[n], start[n]), n  # they moved
    rm = "bn1.running_mean"
    assert not torch.allclose(stacked_bufs[rm][0], stacked_bufs[rm][1])  # and stayed different per task
    for n, v in target.init_buffers().items():  # the module's own buffers were never touched
        assert torch.equal(v, own_before[n])


def test_bn_train_needs_per_task_buffers_under_vmap():
    """vmap cannot update one shared set of running statistics from T batched inputs (documented in docs/cifar.md)."""
    target = tiny_target(train=True)
    stacked = target.unflatten(torch.randn(T, target.num_params) * 0.1)
    with pytest.raises(RuntimeError):
        target.batched(stacked, torch.randn(4, 3, 8, 8))
    target.eval()  # in eval mode, shared (unbatched) statistics are fine
    assert target.batched(stacked, torch.randn(4, 3, 8, 8)).shape == (T, 4, 3)
