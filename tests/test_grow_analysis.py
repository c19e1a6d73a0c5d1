"""scripts/grow_analysis.py: the task-inference confusion matrix and the CL3 error split of a tiny GROW run equal
the ones computed directly from its predictions (each task's network run on its own, entropies by their formula), and
the learner's own evaluation (task-inference and CL3 accuracy per task)."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch
from helpers import tiny_hnet, tiny_mlp

import hypercl
from hypercl.scenarios import confusion_matrix

_SPEC = importlib.util.spec_from_file_location("grow_analysis", Path(__file__).parents[1] / "scripts" / "grow_analysis.py")
grow_analysis = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(grow_analysis)


def _tasks(seed: int, n: int = 120, d: int = 10) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Three binary tasks whose inputs overlap (shifted means), so task inference makes errors."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for t in range(3):
        x = torch.randn(n, d, generator=g) + 0.6 * t
        out.append((x, (x[:, t] > 0.6 * t).long()))
    return out


@pytest.fixture(scope="module")
def run() -> tuple[hypercl.ContinualLearner, list, list]:
    torch.manual_seed(0)
    learner = hypercl.ContinualLearner(tiny_hnet(tiny_mlp(d_out=6)), strategy="grow", output_layout="per_task",
                                       batch_size=32, progress=False)
    train, test = _tasks(0), _tasks(1)
    for t, data in enumerate(train):
        learner.fit_task(t, data, iterations=15, num_classes=2)
    return learner, train, test


def _direct(learner: hypercl.ContinualLearner, test: list) -> tuple[list[list[int]], list[int], list[int]]:
    """Confusion counts, wrong-task and right-task-wrong-class errors per task, from per-sample loops."""
    T = len(test)
    conf = [[0] * T for _ in range(T)]
    wrong_task, wrong_class = [0] * T, [0] * T
    with torch.no_grad():
        outs = [learner.target(learner.hnet(j), torch.cat([x for x, _ in test])) for j in range(T)]
    offsets = [0]
    for x, _ in test:
        offsets.append(offsets[-1] + len(x))
    for i, (x, y) in enumerate(test):
        for k in range(len(y)):
            ents, preds = [], []
            for j in range(T):
                own = outs[j][offsets[i] + k, 2 * j:2 * j + 2]  # task j's own units (per_task layout)
                p = torch.softmax(own, -1).tolist()
                ents.append(-sum(q * math.log(q) for q in p if q > 0))
                preds.append(int(own.argmax()))
            j = min(range(T), key=lambda r: ents[r])
            conf[i][j] += 1
            if j != i:
                wrong_task[i] += 1
            elif preds[i] != int(y[k]):
                wrong_class[i] += 1
    return conf, wrong_task, wrong_class


def test_confusion_matrix_matches_one_computed_from_the_predictions(run) -> None:
    learner, _, test = run
    res = grow_analysis.analyse(learner, test)
    conf, wrong_task, wrong_class = _direct(learner, test)
    assert res["confusion"] == conf
    assert sum(conf[i][j] for i in range(3) for j in range(3) if i != j) > 0  # the rule errs: the check has teeth
    assert res["per_task"]["wrong_task_errors"] == wrong_task
    assert res["per_task"]["right_task_wrong_class_errors"] == wrong_class
    # and the learner's own CL3 evaluation agrees exactly
    ev = learner.evaluate(dict(enumerate(test)), scenarios=["cl3"], record=False)["cl3"]
    assert res["per_task"]["cl3_accuracy"] == [ev["accuracy"][t] for t in range(3)]
    assert res["per_task"]["task_inference"] == [ev["task_inference"][t] for t in range(3)]
    assert [sum(r) for r in res["confusion"]] == [len(y) for _, y in test]


def test_confusion_matrix_counts_pairs() -> None:
    true = torch.tensor([0, 0, 1, 1, 1, 2])
    inferred = torch.tensor([0, 2, 1, 0, 0, 2])
    assert confusion_matrix(true, inferred, 3).tolist() == [[1, 0, 1], [2, 1, 0], [0, 0, 1]]
    with pytest.raises(ValueError, match="differ in shape"):
        confusion_matrix(true, inferred[:3], 3)


def test_auroc_of_separated_and_identical_entropies() -> None:
    assert grow_analysis.auroc(torch.tensor([0.0, 0.1]), torch.tensor([0.5, 0.6, 0.7])) == 1.0
    assert grow_analysis.auroc(torch.tensor([0.5, 0.6]), torch.tensor([0.0, 0.1])) == 0.0
    assert grow_analysis.auroc(torch.tensor([0.3, 0.3]), torch.tensor([0.3])) == 0.5


def test_spearman() -> None:
    assert grow_analysis.spearman([1.0, 2.0, 3.0], [10.0, 20.0, 30.0]) == pytest.approx(1.0)
    assert grow_analysis.spearman([1e-18, 3e-6, 3e-13], [0.97, 0.32, 0.68]) == pytest.approx(-1.0)
    assert grow_analysis.spearman([1.0, 2.0, 3.0, 4.0], [1.0, 3.0, 2.0, 4.0]) == pytest.approx(0.8)
