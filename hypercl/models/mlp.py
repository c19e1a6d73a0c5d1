"""Fully connected classifiers (the seed paper's MNIST targets, section 4.1)."""

from __future__ import annotations

from typing import Sequence, cast

from torch import nn

from ..activations import make_activation
from .registry import build_model, register_model

__all__ = ["mlp", "MLP"]


class MLP(nn.Sequential):
    """``in → hidden… → out`` with an activation between layers (no activation on the output)."""

    def __init__(self, in_features: int, hidden: Sequence[int], out_features: int, activation: str = "relu") -> None:
        layers: list[nn.Module] = []
        d = int(in_features)
        for h in hidden:
            layers += [nn.Linear(d, int(h)), make_activation(activation)]
            d = int(h)
        layers.append(nn.Linear(d, int(out_features)))
        super().__init__(*layers)


@register_model("mlp")
def _mlp(in_features: int, hidden: Sequence[int], out_features: int, activation: str = "relu") -> MLP:
    return MLP(in_features, list(hidden), out_features, activation)


def mlp(in_features: int, hidden: Sequence[int], out_features: int, activation: str = "relu") -> MLP:
    """An :class:`MLP` tagged for checkpoints, e.g. ``mlp(784, [400, 400], 10)`` for Split MNIST."""
    return cast(
        MLP,
        build_model(
            "mlp", in_features=in_features, hidden=list(hidden), out_features=out_features, activation=activation
        ),
    )
