"""hypercl.avalanche.HyperCLStrategy under the real Avalanche 0.6 (no mocks): tiny Gaussian-blob streams."""

import importlib
import sys

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

pytest.importorskip("avalanche", reason='Avalanche is not installed: pip install "hypercl[avalanche]"')

from avalanche.benchmarks import nc_benchmark
from avalanche.core import SupervisedPlugin
from avalanche.evaluation.metrics import accuracy_metrics, loss_metrics
from avalanche.logging import CSVLogger, TextLogger
from avalanche.training import Naive
from avalanche.training.plugins import EvaluationPlugin

from hypercl.avalanche import METHODS, HyperCLStrategy
from hypercl.checkpoint import CheckpointError

D = 8
ACC = "Top1_Acc_Exp/eval_phase/test_stream/Task{t:03d}/Exp{e:03d}"


def blobs(n: int, seed: int) -> TensorDataset:
    centers = torch.randn(4, D, generator=torch.Generator().manual_seed(123)) * 3
    y = torch.arange(4).repeat_interleave(n)
    x = centers[y] + torch.randn(len(y), D, generator=torch.Generator().manual_seed(seed))
    ds = TensorDataset(x, y)
    ds.targets = y
    return ds


def stream(task_labels: bool):
    return nc_benchmark(blobs(50, 0), blobs(20, 1), n_experiences=2, task_labels=task_labels, seed=0,
                        fixed_class_order=[0, 1, 2, 3])


def target(out: int = 2) -> nn.Module:
    return nn.Sequential(nn.Linear(D, 16), nn.ReLU(), nn.Linear(16, out))


def quiet() -> EvaluationPlugin:
    return EvaluationPlugin(accuracy_metrics(experience=True, stream=True), loggers=[])


def hyper(method: str = "hnet", iters: int = 60, **kw) -> HyperCLStrategy:
    small = {"hidden_size": 8} if method.startswith("hnet") else {"hidden_size": 16}
    return HyperCLStrategy(model=target(), method=method, train_mb_size=32, train_iterations=iters,
                           hnet_kwargs=small, evaluator=kw.pop("evaluator", quiet()), **kw)


class Predictions(SupervisedPlugin):
    """Every eval minibatch's predicted global class, and the task labels the minibatch carried."""

    def __init__(self):
        super().__init__()
        self.pred, self.labels = [], []

    def after_eval_forward(self, strategy, **kwargs):
        self.pred.append(strategy.mb_output.argmax(1))


def test_keeps_task0_where_naive_forgets():
    bench = stream(task_labels=True)
    net = target(4)  # Naive: one head over the stream's 4 classes, the same 60 steps per experience
    ours = hyper("hnet")
    naive = Naive(model=net, optimizer=torch.optim.Adam(net.parameters(), lr=1e-2), train_mb_size=32,
                  train_epochs=15, evaluator=quiet())
    acc = {}
    for name, s in (("ours", ours), ("naive", naive)):
        s.train(bench.train_stream[0])
        first = s.eval(bench.test_stream[:1])[ACC.format(t=0, e=0)]
        s.train(bench.train_stream[1])
        acc[name] = (first, s.eval(bench.test_stream)[ACC.format(t=0, e=0)])
    assert acc["ours"][0] >= 0.9 and acc["naive"][0] >= 0.9  # both learned task 0
    assert acc["ours"][1] >= acc["ours"][0] - 0.05  # the hypernetwork keeps it
    assert acc["naive"][1] <= acc["naive"][0] - 0.3  # Naive's head drifts to task 1's classes: forgotten
    assert acc["ours"][1] >= acc["naive"][1] + 0.3


def test_avalanche_accuracy_equals_the_learners_own_cl1():
    """Avalanche's metric on mb_output (global classes) equals hypercl's evaluate() on local labels."""
    bench = stream(task_labels=True)
    s = hyper("hnet", iters=30)
    s.train(bench.train_stream)
    res = s.eval(bench.test_stream)
    test = blobs(20, 1)
    sets = {t: (test.tensors[0][torch.isin(test.targets, c)], test.targets[torch.isin(test.targets, c)] - 2 * t)
            for t, c in enumerate([torch.tensor([0, 1]), torch.tensor([2, 3])])}
    own = s.learner.evaluate(sets, scenarios=["cl1", "cl3"], record=False)
    for t in (0, 1):
        assert res[ACC.format(t=t, e=t)] == pytest.approx(own["cl1"]["accuracy"][t])


def test_class_incremental_stream_never_reads_test_task_labels():
    cls_inc = stream(task_labels=False)
    s = hyper("hnet")
    s.train(cls_inc.train_stream)
    assert s.model.task_aware is False  # task label 0 repeated: class-incremental
    runs = {}
    for name, test_stream in (("no labels", cls_inc.test_stream), ("true labels", stream(True).test_stream)):
        p = Predictions()
        s.plugins.append(p)
        res = s.eval(test_stream)
        s.plugins.remove(p)
        runs[name] = (torch.cat(p.pred), res)
    assert torch.equal(runs["no labels"][0], runs["true labels"][0])
    # the same predictions as hypercl's CL3 (per-sample entropy task inference) computed directly
    test = blobs(20, 1)
    sets = {t: (test.tensors[0][test.targets // 2 == t], test.targets[test.targets // 2 == t] % 2) for t in (0, 1)}
    own = s.learner.evaluate(sets, scenarios=["cl3"], record=False)["cl3"]["accuracy"]
    res = runs["no labels"][1]
    for t in (0, 1):
        assert res[ACC.format(t=0, e=t)] == pytest.approx(own[t])
    # positive control: were the labels read (task-aware with the tasks swapped), the predictions would change
    s.model.task_aware, s.model.task_of_label = True, {0: 1, 1: 0}
    p = Predictions()
    s.plugins.append(p)
    s.eval(stream(True).test_stream)
    assert not torch.equal(torch.cat(p.pred), runs["no labels"][0])


@pytest.mark.parametrize("method", METHODS)
def test_every_method_trains_and_protects_through_avalanche(method):
    bench = stream(task_labels=True)
    s = hyper(method, iters=40)
    s.train(bench.train_stream[0])
    before = s.eval(bench.test_stream[:1])[ACC.format(t=0, e=0)]
    s.train(bench.train_stream[1])
    after = s.eval(bench.test_stream)[ACC.format(t=0, e=0)]
    assert before >= 0.8 and after >= before - 0.1


class Calls(SupervisedPlugin):
    def __init__(self):
        super().__init__()
        self.n: dict = {}

    def __getattribute__(self, name):
        if name.startswith(("before_", "after_")):
            def count(strategy, **kwargs):
                self.n[name] = self.n.get(name, 0) + 1
            return count
        return super().__getattribute__(name)


def test_every_callback_fires_and_avalanche_loggers_write(tmp_path):
    calls = Calls()
    text = tmp_path / "log.txt"
    handle = open(text, "w")  # noqa: SIM115 (the TextLogger writes to it until the end)
    ev = EvaluationPlugin(accuracy_metrics(experience=True, stream=True), loss_metrics(minibatch=True, epoch=True),
                          loggers=[TextLogger(handle), CSVLogger(str(tmp_path / "csv"))])
    s = hyper("hnet", iters=7, evaluator=ev, plugins=[calls])
    bench = stream(task_labels=True)
    for e in bench.train_stream:
        s.train(e)
        s.eval(bench.test_stream)
    n = calls.n
    for name in ("before_training_iteration", "before_forward", "after_forward", "before_backward", "after_backward",
                 "before_update", "after_update", "after_training_iteration"):
        assert n[name] == 14, name
    assert n["before_training_exp"] == n["after_training_exp"] == 2
    assert n["before_eval_exp"] == n["after_eval_exp"] == 4
    assert n["before_eval_iteration"] == n["after_eval_forward"] > 0
    handle.close()
    assert "Top1_Acc_Stream/eval_phase/test_stream" in text.read_text()
    csv = (tmp_path / "csv" / "eval_results.csv").read_text().splitlines()
    assert len(csv) == 1 + 4  # header + one row per evaluated experience per eval call


def test_checkpoint_round_trip_and_corruption(tmp_path):
    bench = stream(task_labels=False)
    s = hyper("lstm_net_iwr", iters=20)
    s.train(bench.train_stream)
    path = tmp_path / "s.pt"
    s.save(path)
    assert set(torch.load(path, weights_only=True)["avalanche"]) >= {"classes", "task_aware", "method"}
    back = HyperCLStrategy.load(path, model=target(), evaluator=quiet())
    x = blobs(20, 1).tensors[0]
    s.model.eval(), back.model.eval()
    with torch.no_grad():
        assert torch.equal(s.model(x), back.model(x))
    assert back.model.task_aware is False and back.method == "lstm_net_iwr"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError):
        HyperCLStrategy.load(path, model=target(), evaluator=quiet())


def test_repeated_task_label_with_task_labels_true_is_one_clear_error():
    s = hyper("hnet", iters=2, task_labels=True)
    bench = stream(task_labels=False)
    s.train(bench.train_stream[0])
    with pytest.raises(ValueError, match="task_labels=False"):
        s.train(bench.train_stream[1])


def test_missing_avalanche_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "avalanche.training.templates", None)
    monkeypatch.delitem(sys.modules, "hypercl.avalanche")
    with pytest.raises(ImportError, match=r'pip install "hypercl\[avalanche\]"') as err:
        importlib.import_module("hypercl.avalanche")
    assert "\n" not in str(err.value)


def test_avalanche_dataloader_workers_and_model_state_dict():
    """Avalanche's own dataloader kwargs pass through; strategy.model.state_dict() is the hypernetwork's."""
    bench = stream(task_labels=True)
    s = hyper("hnet", iters=5)
    s.train(bench.train_stream[0], num_workers=2)
    s.eval(bench.test_stream[:1], num_workers=2)
    sd = s.model.state_dict()
    assert set(sd) == {f"hnet.{k}" for k in s.learner.hnet.state_dict()}
    twin = hyper("hnet", iters=5)
    twin.train(bench.train_stream[0])  # the same number of tasks: the state dict fits
    twin.model.load_state_dict(sd)
    x = blobs(5, 2).tensors[0]
    s.model.eval(), twin.model.eval()
    with torch.no_grad():
        assert torch.equal(s.model(x, torch.zeros(len(x), dtype=torch.long)),
                           twin.model(x, torch.zeros(len(x), dtype=torch.long)))
