"""Temperature calibration for task inference: fit_temperature recovers a known temperature; the per-task fit reads
only the validation data it is given, never the test data."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import hypercl
from hypercl.calibration import fit_temperature, task_temperature


@pytest.mark.parametrize("t0", [0.5, 1.0, 3.0])
def test_fit_temperature_recovers_a_known_temperature(t0: float) -> None:
    g = torch.Generator().manual_seed(0)
    z = 3 * torch.randn(20000, 5, generator=g)
    y = torch.multinomial(torch.softmax(z / t0, dim=1), 1, generator=g).squeeze(1)
    t = fit_temperature(z, y)
    assert abs(t / t0 - 1) < 0.05
    # it is the minimiser of the NLL: nudging T either way raises it
    nll = lambda tt: nn.functional.cross_entropy(z / tt, y).item()  # noqa: E731
    assert nll(t) <= min(nll(t * 1.05), nll(t / 1.05))


def test_fit_temperature_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match="needs \\(N, K\\) logits"):
        fit_temperature(torch.zeros(3, 2), torch.zeros(4, dtype=torch.long))


def _two_task_learner() -> tuple[hypercl.ContinualLearner, list]:
    torch.manual_seed(0)
    target = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2))
    learner = hypercl.ContinualLearner(hypercl.HyperNetwork(target, generator="lstm", hidden_size=16, chunk_size=128),
                                       strategy="grow", batch_size=32, progress=False)
    tasks = []
    for t in range(2):
        g = torch.Generator().manual_seed(t)
        x = torch.randn(600, 8, generator=g) + 3 * t
        y = (x[:, t] > 3 * t).long()
        tasks.append(((x[:400], y[:400]), (x[400:500], y[400:500]), (x[500:], y[500:])))  # train, val, test
    return learner, tasks


def test_task_temperature_uses_only_the_validation_data(monkeypatch) -> None:
    learner, tasks = _two_task_learner()
    temps = []
    seen: list[int] = []
    real = hypercl.calibration.task_logits

    def spy(learner_, task_id, x, batch_size=1000):  # records which inputs calibration reads
        seen.append(id(x))
        return real(learner_, task_id, x, batch_size)

    monkeypatch.setattr(hypercl.calibration, "task_logits", spy)
    for t, (train, val, test) in enumerate(tasks):
        learner.fit_task(t, train, iterations=60, num_classes=2)
        temps.append(task_temperature(learner, t, val))
    assert seen == [id(tasks[0][1][0]), id(tasks[1][1][0])]  # the val inputs, nothing else
    assert all(id(tk[2][0]) not in seen and id(tk[0][0]) not in seen for tk in tasks)
    assert all(0.018 < t < 55 for t in temps)
    test_sets = [tk[2] for tk in tasks]
    plain = learner.evaluate(test_sets, scenarios=["cl3"], record=False)
    same = learner.evaluate(test_sets, scenarios=["cl3"], record=False, temperatures=[1.0, 1.0])
    assert plain["cl3"]["accuracy"] == same["cl3"]["accuracy"]
    calibrated = learner.evaluate(test_sets, scenarios=["cl3"], record=False, temperatures=temps)
    assert set(calibrated["cl3"]["accuracy"]) == {0, 1}


def test_temperature_fit_changes_with_the_validation_labels() -> None:
    """Calibration is a function of the validation data: flipping its labels makes the network look overconfident
    and wrong, so the fitted temperature must grow."""
    learner, tasks = _two_task_learner()
    train, val, _ = tasks[0]
    learner.fit_task(0, train, iterations=60, num_classes=2)
    t_clean = task_temperature(learner, 0, val)
    t_flipped = task_temperature(learner, 0, (val[0], 1 - val[1]))
    assert t_flipped > 2 * t_clean


class _TaskWithVal:
    """A benchmark task: ``.val`` carved from training data; reading its TEST tensors fails the test."""

    def __init__(self, train, val, test):
        self.x_train, self.y_train = train
        self.val = val
        self._test = test

    @property
    def x_test(self):
        raise AssertionError("calibration read the test data")

    y_test = x_test


def test_task_temperatures_read_task_val_never_its_test_data() -> None:
    learner, tasks = _two_task_learner()
    objs = [_TaskWithVal(*tk) for tk in tasks]
    for t, (train, _, _) in enumerate(tasks):
        learner.fit_task(t, train, iterations=40, num_classes=2)
    temps = hypercl.calibration.task_temperatures(learner, objs)  # would raise had it touched x_test / y_test
    assert temps == [task_temperature(learner, t, tasks[t][1]) for t in range(2)]
    res = learner.evaluate([tk[2] for tk in tasks], scenarios=["cl2", "cl3"], record=False, temperatures=temps)
    assert set(res["cl3"]["accuracy"]) == {0, 1}
    with pytest.raises(ValueError, match="validation pair"):
        task_temperature(learner, 0, tasks[0][1][0])
