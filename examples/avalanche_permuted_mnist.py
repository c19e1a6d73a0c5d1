"""Avalanche's PermutedMNIST through HyperCLStrategy: every experience is task 0 with classes 0-9, so the strategy runs
class-incremental (task inferred per sample by entropy, classes shared by the tasks).

    python examples/avalanche_permuted_mnist.py
"""
import time

import torch
from avalanche.benchmarks import PermutedMNIST
from avalanche.evaluation.metrics import accuracy_metrics
from avalanche.training.plugins import EvaluationPlugin
from torch import nn

from hypercl.avalanche import HyperCLStrategy
from hypercl.data import torchvision_mnist_root

torch.set_num_threads(1)
t0 = time.time()
bench = PermutedMNIST(n_experiences=2, seed=0, dataset_root=str(torchvision_mnist_root()))
e = bench.train_stream[0]
print("classes", e.classes_in_this_experience, "task labels", e.task_labels[:1], len(e.dataset), flush=True)
mlp = nn.Sequential(nn.Flatten(), nn.Linear(784, 100), nn.ReLU(), nn.Linear(100, 10))
s = HyperCLStrategy(model=mlp, method="lstm_net_grow", train_mb_size=128, train_iterations=30, eval_mb_size=1000,
                    evaluator=EvaluationPlugin(accuracy_metrics(experience=True), loggers=[]))
for exp in bench.train_stream:
    s.train(exp)
print("task aware", s.model.task_aware, flush=True)
r = s.eval([x for x in bench.test_stream])
print({k: round(v, 3) for k, v in r.items()}, f"{time.time()-t0:.0f} s")
