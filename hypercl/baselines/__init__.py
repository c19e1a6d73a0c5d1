"""Weight-regularisation baselines for a plain network (:class:`~hypercl.DirectWeights`): fine-tuning, EWC, Online
EWC and SI (the baselines of the seed paper's Table 1).

Importing this package registers them as strategies ``"finetune"``, ``"ewc"``, ``"online_ewc"`` and ``"si"``::

    import hypercl, hypercl.baselines
    learner = hypercl.ContinualLearner(hypercl.DirectWeights(model), strategy="ewc", scenario="cl1",
                                       strategy_kwargs={"lambda_": 5000})

(import it before :meth:`ContinualLearner.load` of a checkpoint that used one of them, so the name resolves).
"""

from __future__ import annotations

from ..strategies import register_strategy
from .ewc import EWC, OnlineEWC
from .finetune import Finetune
from .si import SI

__all__ = ["Finetune", "EWC", "OnlineEWC", "SI", "BASELINES", "PAPER_HYPERPARAMETERS", "paper_hyperparameters"]

BASELINES = {cls.name: cls for cls in (Finetune, EWC, OnlineEWC, SI)}
for _cls in BASELINES.values():
    register_strategy(_cls)

# Per-benchmark, per-scenario strategy kwargs of the reference implementation behind the seed paper's Table 1 baseline
# rows (van de Ven & Tolias 2019, "Three scenarios for continual learning", arXiv:1904.07734).
#
# Source: GitHub GMvandeVen/continual-learning, file param_values.py, function set_default_values, at commit
# f0b1461e666fa2842283de288c6b328234a1d5c2 (the 2019 version with --o-lambda/--gamma; later versions of that file
# hold different values for a later paper). Mapping of its names: experiment splitMNIST/permMNIST -> split_mnist/
# permuted_mnist (hypercl's benchmark names); scenario task/domain/class -> cl1/cl2/cl3;
# ewc_lambda -> EWC lambda_; o_lambda -> OnlineEWC lambda_; gamma -> OnlineEWC gamma; si_c -> SI c.
# Not set per scenario there, taken from the defaults of that commit's main.py / continual_learner.py:
# --epsilon 0.1 -> SI xi; --fisher-n None (a full pass over the task's training set) -> fisher_samples None;
# --emp-fi off (the Fisher uses the model's predicted labels) -> fisher_labels "predicted".
# The same file sets the training setup they were tuned with: splitMNIST 5 tasks, 2000 iterations/task, Adam lr 1e-3,
# 2 hidden layers of 400 units; permMNIST 10 tasks, 5000 iterations/task, Adam lr 1e-4, 2 hidden layers of 1000
# units; batch 128 (main.py default). See docs/baselines.md for the remaining differences to that code.
_FISHER = {"fisher_samples": None, "fisher_labels": "predicted"}
PAPER_HYPERPARAMETERS: dict[str, dict[str, dict[str, dict]]] = {
    "split_mnist": {
        "ewc": {
            "cl1": {"lambda_": 1e7, **_FISHER},
            "cl2": {"lambda_": 1e6, **_FISHER},
            "cl3": {"lambda_": 1e8, **_FISHER},
        },
        "online_ewc": {
            "cl1": {"lambda_": 1e8, "gamma": 0.8, **_FISHER},
            "cl2": {"lambda_": 1e8, "gamma": 0.7, **_FISHER},
            "cl3": {"lambda_": 1e9, "gamma": 0.8, **_FISHER},
        },
        "si": {
            "cl1": {"c": 50.0, "xi": 0.1},
            "cl2": {"c": 500.0, "xi": 0.1},
            "cl3": {"c": 0.5, "xi": 0.1},
        },
    },
    "permuted_mnist": {
        "ewc": {
            "cl1": {"lambda_": 500.0, **_FISHER},
            "cl2": {"lambda_": 500.0, **_FISHER},
            "cl3": {"lambda_": 1.0, **_FISHER},
        },
        "online_ewc": {
            "cl1": {"lambda_": 500.0, "gamma": 0.8, **_FISHER},
            "cl2": {"lambda_": 1000.0, "gamma": 0.9, **_FISHER},
            "cl3": {"lambda_": 5.0, "gamma": 1.0, **_FISHER},
        },
        "si": {
            "cl1": {"c": 5.0, "xi": 0.1},
            "cl2": {"c": 5.0, "xi": 0.1},
            "cl3": {"c": 0.1, "xi": 0.1},
        },
    },
}
del _FISHER, _cls


def paper_hyperparameters(benchmark: str, method: str, scenario: str) -> dict:
    """A copy of ``PAPER_HYPERPARAMETERS[benchmark][method][scenario]`` (strategy kwargs), with a clear error."""
    try:
        return dict(PAPER_HYPERPARAMETERS[benchmark][method][scenario])
    except KeyError:
        raise ValueError(
            f"no reference hyperparameters for ({benchmark!r}, {method!r}, {scenario!r}); benchmarks: "
            f"{sorted(PAPER_HYPERPARAMETERS)}, methods: {sorted(PAPER_HYPERPARAMETERS['split_mnist'])}, "
            "scenarios: ['cl1', 'cl2', 'cl3']"
        ) from None
