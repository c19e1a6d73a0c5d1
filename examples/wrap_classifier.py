"""Wrap an existing classifier and train it through a hypernetwork — three lines of user code.

    python examples/wrap_classifier.py            # synthetic data, a few seconds on a CPU

The classifier below is an ordinary nn.Module; none of its code knows about hypernetworks. `hypercl.wrap` makes it a
functional target, the LSTM hypernetwork generates all its weights from a task embedding, and the learner trains the
hypernetwork (never the classifier's own parameters).
"""

import torch
from torch import nn

import hypercl


class Classifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(20, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU())
        self.head = nn.Linear(64, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def make_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Four Gaussian classes in 20 dimensions."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(4, 20, generator=torch.Generator().manual_seed(0)) * 1.5
    y = torch.randint(0, 4, (n,), generator=g)
    return centres[y] + torch.randn(n, 20, generator=g), y


if __name__ == "__main__":
    torch.manual_seed(0)
    model = Classifier()
    train, test = make_data(2000, seed=1), make_data(1000, seed=2)

    # --- the three lines ---
    hnet = hypercl.HyperNetwork(hypercl.wrap(model), generator="lstm")
    learner = hypercl.ContinualLearner(hnet, strategy="iwr")
    learner.fit_task(0, train, iterations=300)
    # -----------------------

    acc = learner.evaluate([test])["cl1"]["accuracy"][0]
    print(f"target: {hnet.target.num_params} weights, hypernetwork: {hnet.num_params} parameters "
          f"(compression ratio {hnet.compression_ratio:.2f}), {hnet.plan.n_chunks} chunks of {hnet.plan.chunk_size}")
    print(f"test accuracy after training through the hypernetwork: {100 * acc:.1f}% (chance: 25.0%)")
