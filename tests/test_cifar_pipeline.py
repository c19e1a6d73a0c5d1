"""Split CIFAR end to end on tiny hand-made CIFAR files (real pickle format), and IndependentWeights ("scratch")."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import hypercl
from hypercl.experiments.cifar import TaskAugment, make_train_transform
from hypercl.experiments.configs import method_config
from hypercl.independent import IndependentWeights
from hypercl.models import cifar_resnet

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=2)


def _batch(labels, key: str, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    out = {b"batch_label": b"tiny", key.encode(): [int(v) for v in labels],
           b"data": rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8),
           b"filenames": [f"{i}.png".encode() for i in range(len(labels))]}
    if key == "fine_labels":
        out[b"coarse_labels"] = [int(v) // 5 for v in labels]
    return out


@pytest.fixture(scope="module")
def tiny_cifar(tmp_path_factory) -> Path:
    """CIFAR-10 (5 x 8 train, 10 test) and CIFAR-100 (2 per fine class train, 1 test) in the original layout."""
    root = tmp_path_factory.mktemp("cifar")
    rng = np.random.default_rng(0)
    for i in range(5):
        _write(root / "cifar-10-batches-py" / f"data_batch_{i + 1}", _batch(rng.integers(0, 10, 8), "labels", i))
    _write(root / "cifar-10-batches-py" / "test_batch", _batch(rng.integers(0, 10, 10), "labels", 9))
    _write(root / "cifar-100-python" / "train", _batch(np.repeat(np.arange(100), 2), "fine_labels", 20))
    _write(root / "cifar-100-python" / "test", _batch(np.arange(100), "fine_labels", 21))
    return root


TINY = ["--no-verify", "--resnet-depth", "8", "--resnet-widths", "4,4,4", "--no-progress"]


@pytest.mark.parametrize("method", ["lstm_net_grow", "scratch"])
def test_cli_split_cifar_one_epoch(tiny_cifar, tmp_path, capsys, method):
    from hypercl.cli import main

    out = tmp_path / "res"
    rc = main(["run", "--benchmark", "split_cifar", "--method", method, "--epochs", "1", "--data-root",
               str(tiny_cifar), "--num-tasks", "3", "--max-train-per-task", "20", "--max-test-per-task", "10",
               "--chunk-size", "256", "--out", str(out), *TINY])
    assert rc == 0
    data = json.loads(next(out.glob(f"split_cifar_{method}_" + "?" * 16 + ".json")).read_text())  # name has the run fingerprint
    assert data["benchmark"] == "split_cifar" and data["method"] == method
    cfg = data["config"]
    assert cfg["train"]["epochs"] == 1 and "iterations" not in cfg["train"] and cfg["train"]["batch_size"] == 32
    assert cfg["target"] == {"model": "resnet", "depth": 8, "widths": [4, 4, 4]}
    assert cfg["augment"]["kind"] == "random_crop_flip" and cfg["output_layout"] == "shared"
    res = data["runs"][0]["scenarios"]["cl1"]
    assert res["tasks"] == [0, 1, 2] and len(res["matrix"]) == 3 and len(res["during"]) == 3
    assert all(0.0 <= v <= 1.0 for v in res["matrix"][-1])
    assert data["runs"][0]["train_log"]["cl1"]["0"]["steps"] == 1  # 20 / 32
    if method == "scratch":
        assert data["params"]["compression_ratio"] == pytest.approx(3.0)  # three independent networks
    assert next(out.glob(f"split_cifar_{method}_*.png")).read_bytes()[:8] == PNG_MAGIC
    printed = capsys.readouterr().out
    assert "Table 3 layout" in printed and "during" in printed and "C-10" in printed and "S2" in printed


def test_cli_cifar_cl1_only(tiny_cifar, tmp_path, capsys):
    from hypercl.cli import main

    rc = main(["run", "--benchmark", "split_cifar", "--method", "scratch", "--scenario", "cl1,cl3", "--epochs", "1",
               "--data-root", str(tiny_cifar), "--out", str(tmp_path), *TINY])
    assert rc == 2 and "CL1 only" in capsys.readouterr().err


def test_cifar_config_matches_paper_and_von_oswald():
    hnet = method_config("split_cifar", "hnet")
    assert hnet["hypernetwork"] == {"generator": "chunked_mlp", "hidden_size": [], "activation": "relu",
                                    "chunk_size": 7000, "task_emb_dim": 32, "chunk_emb_dim": 32,
                                    "init": "von_oswald"}  # von Oswald et al.'s own init (configs.HNET_INIT)
    assert hnet["strategy"]["kwargs"]["beta"] == 0.05
    lstm = method_config("split_cifar", "lstm_net_iwr")
    assert lstm["hypernetwork"]["hidden_size"] == 128 and lstm["hypernetwork"]["task_emb_dim"] == 96
    assert lstm["train"] == {"epochs": 200, "batch_size": 32, "lr": 1e-3, "optimizer": "adam", "eval_batch_size": 500}
    from hypercl.experiments.ablations import generator_param_count

    n = 466906  # resnet32(10)
    counts = {m: generator_param_count(n, method_config("split_cifar", m)["hypernetwork"]["generator"],
                                       **{k: v for k, v in method_config("split_cifar", m)["hypernetwork"].items()
                                          if k in ("chunk_size", "task_emb_dim", "chunk_emb_dim")},
                                       hidden=method_config("split_cifar", m)["hypernetwork"]["hidden_size"],
                                       num_tasks=6)
              for m in ("hnet", "lstm_net")}
    assert counts["lstm_net"] <= counts["hnet"] < n


def test_augment_per_task_fill_and_seed():
    class B:
        num_tasks = 2

        def pad_fill(self, t):
            return torch.full((3,), float(t + 1))

    aug = make_train_transform({"kind": "random_crop_flip", "padding": 4, "fill": "black"}, B(), seed=3, device="cpu")
    assert isinstance(aug, TaskAugment)
    x = torch.zeros(64, 3, 8, 8)
    aug.set_task(1)
    y = aug(x)
    assert y.shape == x.shape and set(torch.unique(y).tolist()) <= {0.0, 2.0} and (y == 2.0).any()
    again = make_train_transform({"padding": 4}, B(), seed=3, device="cpu")
    again.set_task(1)
    assert torch.equal(again(x), y)


# ------------------------------------------------------------------------------------------ IndependentWeights
def _tiny_resnet():
    return cifar_resnet(8, 4, widths=(2, 2, 2))


def _data(seed, n=8):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=g), torch.randint(0, 4, (n,), generator=g)


def test_independent_weights_fresh_and_frozen():
    iw = IndependentWeights(_tiny_resnet(), seed=0)
    learner = hypercl.ContinualLearner(iw, strategy="none", batch_size=4, output_layout="shared")
    assert learner.task_conditioned and iw.kind == "independent"
    learner.fit_task(0, _data(0), iterations=2, num_classes=4)
    w0 = iw.task_weights[0].detach().clone()
    learner.fit_task(1, _data(1), iterations=2, num_classes=4)
    assert torch.equal(iw.task_weights[0], w0)  # the older task is untouched
    assert not iw.task_weights[0].requires_grad
    assert not torch.allclose(iw.task_weights[0], iw.task_weights[1])  # independent draws
    assert iw.num_params == 2 * iw.target.num_params and iw.compression_ratio == pytest.approx(2.0)
    # the fresh vectors come from the module's OWN init (He-normal convs, BN weight 1 / bias 0) and are seeded
    again = IndependentWeights(_tiny_resnet(), seed=0)
    again.add_task()
    again.add_task()
    trained = iw.generate([1])
    params = again.generate([0, 1])
    bn_w = [n for n in params if n.endswith("bn1.weight")][0]
    assert torch.equal(params[bn_w][1], torch.ones_like(params[bn_w][1]))
    assert not torch.equal(params["conv1.weight"][0], params["conv1.weight"][1])
    other = IndependentWeights(_tiny_resnet(), seed=1)
    other.add_task()
    assert not torch.equal(other.task_weights[0], again.task_weights[0])
    assert trained["conv1.weight"].shape[0] == 1
    # CL1 evaluation uses each task's own weights and BN statistics
    res = learner.evaluate({0: _data(0), 1: _data(1)})
    assert set(res["cl1"]["accuracy"]) == {0, 1}


def test_independent_weights_checkpoint_roundtrip(tmp_path):
    iw = IndependentWeights(_tiny_resnet(), seed=5)
    learner = hypercl.ContinualLearner(iw, strategy="none", batch_size=4, output_layout="shared")
    for t in range(2):
        learner.fit_task(t, _data(t), iterations=2, num_classes=4)
    before = learner.evaluate({0: _data(0), 1: _data(1)})
    learner.save(tmp_path / "ckpt.pt")
    loaded = hypercl.ContinualLearner.load(tmp_path / "ckpt.pt")
    assert isinstance(loaded.hnet, IndependentWeights) and loaded.hnet.seed == 5
    for a, b in zip(loaded.hnet.task_weights, iw.task_weights):
        assert torch.equal(a, b) and not a.requires_grad
    for t in (0, 1):
        for n, b in learner.task_buffers[t].items():
            assert torch.equal(loaded.task_buffers[t][n], b)
    after = loaded.evaluate({0: _data(0), 1: _data(1)})
    assert after["cl1"]["accuracy"] == before["cl1"]["accuracy"]
    # training goes on with a fresh third network; the loaded ones stay frozen
    loaded.fit_task(2, _data(2), iterations=1, num_classes=4)
    assert torch.equal(loaded.hnet.task_weights[0], iw.task_weights[0])
    assert loaded.hnet.num_tasks == 3
