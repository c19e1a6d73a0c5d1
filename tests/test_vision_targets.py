"""torchvision and timm models as hypernetwork targets (real packages, no pretrained weights, tiny images)."""

import pytest
import torch
from torch.func import functional_call

import hypercl

tv_models = pytest.importorskip("torchvision.models", reason="torchvision is missing: pip install hypercl[vision]")
timm = pytest.importorskip("timm", reason='timm is not installed: pip install "hypercl[vision]"')

METHODS = {"hnet": ("chunked_mlp", "hnet"), "hnet_iwr": ("chunked_mlp", "iwr"), "lstm_net": ("lstm", "hnet"),
           "lstm_net_iwr": ("lstm", "iwr"), "lstm_net_grow": ("lstm", "grow")}


def tiny_vit(num_classes: int = 2):
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=num_classes, img_size=16,
                             patch_size=8, embed_dim=32, depth=2, num_heads=2)


def tasks(size: int, n: int = 12):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, size, size, generator=g)
    y = torch.arange(n) % 2
    return [(x + 2.0 * y.view(-1, 1, 1, 1), y), (x * 0.5 + 4.0 - 2.0 * y.view(-1, 1, 1, 1), y)]  # other statistics


def learner_for(model, method, **kw):
    generator, strategy = METHODS[method]
    skw = {"fisher_samples": 4, "fisher_batch_size": 4} if strategy == "iwr" else {}
    hnet = hypercl.HyperNetwork(model, generator=generator, chunk_size=kw.pop("chunk_size", None))
    return hypercl.ContinualLearner(hnet, strategy=strategy, strategy_kwargs=skw, batch_size=4, eval_batch_size=6)


def test_resnet18_keeps_batchnorm_statistics_per_task():
    model = tv_models.resnet18(num_classes=2)
    own_before = {n: b.clone() for n, b in model.named_buffers()}
    learner = learner_for(model, "lstm_net_grow")
    data = tasks(32)
    learner.fit_task(0, data[0], iterations=2)
    after_task0 = {n: b.clone() for n, b in learner.task_buffers[0].items()}
    learner.fit_task(1, data[1], iterations=2)
    # task 0's statistics are untouched by task 1's training, and the two tasks' statistics differ
    for n, b in learner.task_buffers[0].items():
        assert torch.equal(b, after_task0[n]), n
    assert int(learner.task_buffers[0]["bn1.num_batches_tracked"]) == 2
    assert int(learner.task_buffers[1]["bn1.num_batches_tracked"]) == 2
    assert not torch.allclose(learner.task_buffers[0]["bn1.running_mean"], learner.task_buffers[1]["bn1.running_mean"])
    # the module's own buffers are only the template of a new task's statistics
    for n, b in model.named_buffers():
        assert torch.equal(b, own_before[n]), n
    # evaluation: each task's generated weights with ITS statistics, in eval mode, all tasks in one vmap call
    x = data[0][0][:6]
    model.eval()
    with torch.no_grad():
        batched = learner.batched_logits(learner.task_weights([0, 1]), x)
        for t in (0, 1):
            direct = functional_call(model, {**learner.hnet(t), **learner.task_buffers[t]}, (x,))
            assert torch.allclose(batched[t], direct, atol=1e-5), t
        swapped = functional_call(model, {**learner.hnet(0), **learner.task_buffers[1]}, (x,))
        assert not torch.allclose(batched[0], swapped, atol=1e-3)


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("arch", ["mobilenet_v3_small", "vit"])
def test_vision_models_train_and_evaluate_through_every_method_and_scenario(arch, method):
    model = tv_models.mobilenet_v3_small(num_classes=2) if arch == "mobilenet_v3_small" else tiny_vit()
    size = 32 if arch == "mobilenet_v3_small" else 16
    learner = learner_for(model, method)
    data = tasks(size)
    for t, d in enumerate(data):
        log = learner.fit_task(t, d, iterations=2)
        assert torch.isfinite(torch.tensor(log["final_loss"]))
        if t == 0:
            with torch.no_grad():
                task0 = learner.hnet.generate_flat([0]).clone()
    if method == "lstm_net_grow":  # GROW freezes task 0's weights: they are generated exactly as before
        with torch.no_grad():
            assert torch.equal(learner.hnet.generate_flat([0]), task0)
    res = learner.evaluate(data, scenarios=["cl1", "cl2", "cl3"])
    for s in ("cl1", "cl2", "cl3"):
        assert set(res[s]["accuracy"]) == {0, 1}
        assert all(0.0 <= a <= 1.0 for a in res[s]["accuracy"].values())
    if arch == "mobilenet_v3_small":  # BatchNorm: one statistics set per task
        assert set(learner.task_buffers) == {0, 1}


@pytest.mark.slow
@pytest.mark.parametrize("method", list(METHODS))
def test_resnet18_through_every_method(method):
    learner = learner_for(tv_models.resnet18(num_classes=2), method)
    data = tasks(32)
    for t, d in enumerate(data):
        learner.fit_task(t, d, iterations=2)
    res = learner.evaluate(data, scenarios=["cl1", "cl2", "cl3"])
    assert set(res["cl3"]["accuracy"]) == {0, 1}


@pytest.mark.parametrize("strategy", ["finetune", "ewc", "si"])
@pytest.mark.parametrize("arch", ["mobilenet_v3_small", "vit"])
def test_vision_models_under_the_baselines(arch, strategy):
    """The plain-network baselines (one shared weight set) on the same models, every scenario."""
    size = 32 if arch == "mobilenet_v3_small" else 16
    data = tasks(size)
    for scenario in ("cl1", "cl3"):
        model = tv_models.mobilenet_v3_small(num_classes=4) if arch == "mobilenet_v3_small" else tiny_vit(4)
        skw = {"fisher_samples": 4} if strategy == "ewc" else {}
        learner = hypercl.ContinualLearner(hypercl.DirectWeights(model), strategy=strategy, strategy_kwargs=skw,
                                           scenario=scenario, batch_size=4, eval_batch_size=6)
        for t, d in enumerate(data):
            learner.fit_task(t, d, iterations=2)
        res = learner.evaluate(data)
        assert set(res[scenario]["accuracy"]) == {0, 1}
